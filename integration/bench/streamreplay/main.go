// Command streamreplay measures a stream queue over AMQP 0-9-1: it fills a
// stream with -messages messages of -size bytes (publisher confirms, a
// window of -window per producer), then replays it from x-stream-offset
// first with -consumers consumers at once (prefetch -prefetch, acks with
// multiple every -ack-every), and reports the fill and replay rates and,
// with -pid, the broker's CPU seconds per 100k messages and its RSS.
//
//	go run ./integration/bench/streamreplay -url amqp://guest:guest@127.0.0.1:5672/ -messages 10000000 -consumers 1,10 -pid PID
//
// The same stream is replayed once per entry of -consumers; -keep leaves it
// in place (and -reuse replays one already filled).
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	name := flag.String("queue", "streamreplay", "stream name")
	messages := flag.Int("messages", 1_000_000, "messages to fill the stream with")
	size := flag.Int("size", 16, "body bytes (at least 8)")
	producers := flag.Int("producers", 2, "publishing connections")
	window := flag.Int("window", 5000, "unconfirmed messages per producer")
	consumersList := flag.String("consumers", "1,10", "consumer counts to replay with, one replay each")
	prefetch := flag.Int("prefetch", 1000, "basic.qos per consumer")
	ackEvery := flag.Int("ack-every", 100, "ack with multiple=true every N deliveries")
	pid := flag.Int("pid", 0, "broker pid: CPU and RSS from /proc")
	keep := flag.Bool("keep", false, "leave the stream")
	reuse := flag.Bool("reuse", false, "replay the stream as it is (no fill)")
	flag.Parse()
	if *size < 8 {
		*size = 8
	}

	conn, err := amqp.Dial(*url)
	if err != nil {
		log.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		log.Fatal(err)
	}
	if !*reuse {
		ch.QueueDelete(*name, false, false, false)
	}
	if _, err := ch.QueueDeclare(*name, true, false, false, false, amqp.Table{"x-queue-type": "stream"}); err != nil {
		log.Fatal(err)
	}
	if !*keep {
		defer ch.QueueDelete(*name, false, false, false)
	}

	if !*reuse {
		cpu0, _ := procCPU(*pid)
		start := time.Now()
		fill(*url, *name, *messages, *size, *producers, *window)
		d := time.Since(start)
		cpu1, _ := procCPU(*pid)
		rss, _ := procRSS(*pid)
		fmt.Printf("fill    %d messages of %d bytes, %d producers: %.0f msg/s over %.1fs; broker cpu %.3f s per 100k; rss %d MB\n",
			*messages, *size, *producers, float64(*messages)/d.Seconds(), d.Seconds(), per100k(cpu1-cpu0, *messages), rss/1024)
	}
	for _, s := range strings.Split(*consumersList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bad -consumers %q", s)
		}
		replay(*url, *name, *messages, n, *prefetch, *ackEvery, *pid)
	}
}

func per100k(cpu float64, n int) float64 { return cpu / float64(n) * 100_000 }

// fill publishes n messages with confirms from producers connections.
func fill(url, q string, n, size, producers, window int) {
	var wg sync.WaitGroup
	per := n / producers
	for p := 0; p < producers; p++ {
		count := per
		if p == producers-1 {
			count = n - per*(producers-1)
		}
		wg.Add(1)
		go func(p, count int) {
			defer wg.Done()
			conn, err := amqp.Dial(url)
			if err != nil {
				log.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				log.Fatal(err)
			}
			if err := ch.Confirm(false); err != nil {
				log.Fatal(err)
			}
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, window+1))
			sem := make(chan struct{}, window)
			done := make(chan struct{})
			go func() {
				for i := 0; i < count; i++ {
					c := <-confirms
					if !c.Ack {
						log.Fatalf("nacked %d", c.DeliveryTag)
					}
					<-sem
				}
				close(done)
			}()
			body := make([]byte, size)
			for i := 0; i < count; i++ {
				sem <- struct{}{}
				binary.BigEndian.PutUint64(body, uint64(p)<<48|uint64(i))
				if err := ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: body}); err != nil {
					log.Fatal(err)
				}
			}
			<-done
		}(p, count)
	}
	wg.Wait()
}

// replay reads the whole stream with n consumers at once, each on a
// connection of its own, and reports when the last one is done.
func replay(url, q string, total, n, prefetch, ackEvery, pid int) {
	cpu0, _ := procCPU(pid)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() { // sample RSS
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r, err := procRSS(pid); err == nil && r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < n; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := amqp.Dial(url)
			if err != nil {
				log.Fatal(err)
			}
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				log.Fatal(err)
			}
			if err := ch.Qos(prefetch, 0, false); err != nil {
				log.Fatal(err)
			}
			ds, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
			if err != nil {
				log.Fatal(err)
			}
			got := 0
			for d := range ds {
				got++
				if got%ackEvery == 0 || got == total {
					d.Ack(true)
				}
				if got == total {
					return
				}
			}
			log.Fatalf("deliveries ended after %d", got)
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(stop)
	cpu1, _ := procCPU(pid)
	rss, _ := procRSS(pid)
	if rss > peak.Load() {
		peak.Store(rss)
	}
	all := total * n
	fmt.Printf("replay  %d consumers from first: %.0f msg/s in all (%.0f per consumer) over %.1fs; broker cpu %.3f s per 100k; rss peak %d MB\n",
		n, float64(all)/d.Seconds(), float64(total)/d.Seconds(), d.Seconds(), per100k(cpu1-cpu0, all), peak.Load()/1024)
}

// procCPU is the process's user+system CPU seconds.
func procCPU(pid int) (float64, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	fs := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(fs[11], 64)
	st, _ := strconv.ParseFloat(fs[12], 64)
	return (ut + st) / 100, nil // USER_HZ
}

// procRSS is VmRSS in kB.
func procRSS(pid int) (int64, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line[len("VmRSS:"):])
			n, _ := strconv.ParseInt(f[0], 10, 64)
			return n, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS")
}
