// Command manyqueues measures a broker with many deep queues: it declares
// -queues queues, publishes -messages messages of -size bytes to each
// through one connection (round-robin over the queues, with publisher
// confirms, so every message is known to be accepted), then consumes every
// queue and checks that each message arrives once and in order. It samples
// the broker's resident memory from /proc/<pid>/status (-pid) and reports
// rates, the peak RSS of each phase and how long publishers were blocked
// (connection.blocked).
//
//	go run ./integration/bench/manyqueues -url amqp://guest:guest@127.0.0.1:5672/ \
//	    -queues 1000 -messages 25000 -size 100 -pid $(pidof warren)
//
// It connects to 127.0.0.1 only and stops after -timeout.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// rss reads VmRSS and VmHWM (the peak) of pid in bytes.
func rss(pid int) (cur, peak uint64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		n, _ := strconv.ParseUint(fs[1], 10, 64)
		switch fs[0] {
		case "VmRSS:":
			cur = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return cur, peak
}

// sampler keeps the highest RSS seen since the last reset; VmHWM cannot be
// reset without privileges, so phases use their own samples.
type sampler struct {
	pid  int
	peak atomic.Uint64
	cur  atomic.Uint64
}

func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		c, _ := rss(s.pid)
		s.cur.Store(c)
		for {
			p := s.peak.Load()
			if c <= p || s.peak.CompareAndSwap(p, c) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func mb(b uint64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

func main() {
	addr := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker URL (127.0.0.1 only)")
	queues := flag.Int("queues", 1000, "queues")
	per := flag.Int("messages", 25000, "messages per queue")
	size := flag.Int("size", 100, "body bytes (at least 8)")
	pid := flag.Int("pid", 0, "broker pid, for RSS samples")
	prefix := flag.String("prefix", "mq", "queue name prefix")
	durable := flag.Bool("durable", false, "durable queues and persistent messages")
	window := flag.Int("confirm-window", 5000, "unconfirmed publishes in flight")
	prefetch := flag.Int("prefetch", 200, "consumer prefetch")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	skipDrain := flag.Bool("no-drain", false, "publish only")
	keep := flag.Bool("keep", false, "leave the queues in place")
	flag.Parse()
	if u, err := url.Parse(*addr); err != nil || u.Hostname() != "127.0.0.1" {
		log.Fatalf("-url must point at 127.0.0.1")
	}
	if *size < 8 {
		*size = 8
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	smp := &sampler{pid: *pid}
	if *pid > 0 {
		_, _ = rss(*pid)
		go smp.run(ctx)
	}
	names := make([]string, *queues)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", *prefix, i)
	}

	// Publish: one connection, one channel, round-robin.
	conn, err := amqp.Dial(*addr)
	if err != nil {
		log.Fatal(err)
	}
	var blockedFor atomic.Int64
	blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 16))
	go func() {
		var since time.Time
		for b := range blocked {
			if b.Active {
				since = time.Now()
			} else if !since.IsZero() {
				blockedFor.Add(int64(time.Since(since)))
			}
		}
	}()
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	for _, n := range names {
		if _, err := ch.QueueDeclare(n, *durable, false, false, false, nil); err != nil {
			log.Fatal(err)
		}
		if _, err := ch.QueuePurge(n, false); err != nil {
			log.Fatal(err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		log.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, *window+16))
	mode := amqp.Transient
	if *durable {
		mode = amqp.Persistent
	}
	body := make([]byte, *size)
	total := *queues * *per
	var nacked, pending int
	wait := func() bool {
		select {
		case c, ok := <-confirms:
			if !ok {
				log.Fatal("channel closed while waiting for confirms")
			}
			if !c.Ack {
				nacked++
			}
			pending--
			return true
		case <-ctx.Done():
			return false
		}
	}
	pubStart := time.Now()
	sent := 0
	lastReport := time.Now()
publish:
	for i := 0; i < *per; i++ {
		binary.BigEndian.PutUint64(body, uint64(i))
		for _, n := range names {
			if err := ch.PublishWithContext(ctx, "", n, false, false, amqp.Publishing{DeliveryMode: mode, Body: body}); err != nil {
				log.Printf("publish: %v", err)
				break publish
			}
			sent++
			pending++
			for pending >= *window {
				if !wait() {
					break publish
				}
			}
		}
		if time.Since(lastReport) > 10*time.Second {
			lastReport = time.Now()
			cur := smp.cur.Load()
			log.Printf("published %d/%d (%.0f msg/s), broker RSS %s", sent, total, float64(sent)/time.Since(pubStart).Seconds(), mb(cur))
		}
	}
	for pending > 0 && wait() {
	}
	pubDur := time.Since(pubStart)
	pubPeak := smp.peak.Load()
	_, hwm := rss(*pid)
	fmt.Printf("publish: %d of %d messages confirmed (%d nacked, %d unconfirmed) in %v: %.0f msg/s; broker peak RSS %s (VmHWM %s); publishers blocked for %v\n",
		sent-pending-nacked, total, nacked, pending, pubDur.Round(time.Millisecond), float64(sent-pending)/pubDur.Seconds(), mb(pubPeak), mb(hwm), time.Duration(blockedFor.Load()).Round(time.Millisecond))
	if sent != total || pending != 0 || nacked != 0 {
		fmt.Println("NOT every message was accepted")
	}
	if *skipDrain {
		conn.Close()
		return
	}

	// Drain: a consumer on every queue, one channel each, spread over
	// connections of at most 1,000 channels.
	smp.peak.Store(smp.cur.Load())
	var got atomic.Int64
	var disorder atomic.Int64
	drainStart := time.Now()
	var wg sync.WaitGroup
	var conns []*amqp.Connection
	for lo := 0; lo < len(names); lo += 1000 {
		c, err := amqp.Dial(*addr)
		if err != nil {
			log.Fatal(err)
		}
		conns = append(conns, c)
		for _, n := range names[lo:min(lo+1000, len(names))] {
			cch, err := c.Channel()
			if err != nil {
				log.Fatal(err)
			}
			if err := cch.Qos(*prefetch, 0, false); err != nil {
				log.Fatal(err)
			}
			ds, err := cch.Consume(n, "", false, false, false, false, nil)
			if err != nil {
				log.Fatal(err)
			}
			wg.Add(1)
			go func(n string, cch *amqp.Channel, ds <-chan amqp.Delivery) {
				defer wg.Done()
				next := uint64(0)
				for next < uint64(*per) {
					select {
					case d, ok := <-ds:
						if !ok {
							log.Printf("%s: consumer closed after %d", n, next)
							return
						}
						if len(d.Body) < 8 || binary.BigEndian.Uint64(d.Body) != next || d.Redelivered {
							disorder.Add(1)
						}
						next++
						got.Add(1)
						if next%uint64(max(*prefetch/2, 1)) == 0 || next == uint64(*per) {
							d.Ack(true)
						}
					case <-ctx.Done():
						return
					}
				}
				cch.Close()
			}(n, cch, ds)
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	tick := time.NewTicker(10 * time.Second)
drain:
	for {
		select {
		case <-done:
			break drain
		case <-tick.C:
			log.Printf("delivered %d/%d, broker RSS %s", got.Load(), total, mb(smp.cur.Load()))
		case <-ctx.Done():
			break drain
		}
	}
	drainDur := time.Since(drainStart)
	fmt.Printf("drain: %d of %d messages delivered (%d out of order or redelivered) in %v: %.0f msg/s; broker peak RSS %s\n",
		got.Load(), total, disorder.Load(), drainDur.Round(time.Millisecond), float64(got.Load())/drainDur.Seconds(), mb(smp.peak.Load()))
	if got.Load() != int64(total) || disorder.Load() != 0 {
		fmt.Println("NOT every message was delivered in order")
	}
	for _, c := range conns {
		c.Close()
	}
	if !*keep {
		for _, n := range names {
			ch.QueueDelete(n, false, false, false)
		}
	}
	conn.Close()
}
