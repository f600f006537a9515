package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/urfave/cli/v2"
)

// perf is a load generator in the spirit of RabbitMQ's PerfTest: producers
// and consumers on their own connections, one queue or a numbered set,
// live rates every second and a summary with latency percentiles (each
// message carries its send time).

// histogram is a lock-free log-linear latency histogram (microseconds,
// 8 sub-buckets per power of two: about 12% resolution).
type histogram struct{ b [64 * 8]atomic.Uint64 }

func (h *histogram) add(d time.Duration) {
	us := uint64(max(d.Microseconds(), 1))
	e := bits.Len64(us) - 1
	var m uint64
	if e >= 3 {
		m = (us >> (e - 3)) & 7
	} else {
		m = (us << (3 - e)) & 7
	}
	h.b[e*8+int(m)].Add(1)
}

func (h *histogram) count() uint64 {
	var n uint64
	for i := range h.b {
		n += h.b[i].Load()
	}
	return n
}

// quantile returns the upper bound of the bucket holding quantile q.
func (h *histogram) quantile(q float64) time.Duration {
	total := h.count()
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i := range h.b {
		seen += h.b[i].Load()
		if seen >= want {
			e, m := i/8, uint64(i%8)
			var us uint64
			if e >= 3 {
				us = (8 + m + 1) << (e - 3)
			} else {
				us = (8 + m + 1) >> (3 - e)
			}
			return time.Duration(us) * time.Microsecond
		}
	}
	return 0
}

func (h *histogram) reset() {
	for i := range h.b {
		h.b[i].Store(0)
	}
}

func perfCommand() *cli.Command {
	return &cli.Command{
		Name:  "perf",
		Usage: "generate load and report rates and latency (like PerfTest)",
		Description: "Examples:\n   warrenctl perf --duration 10s\n" +
			"   warrenctl perf --producers 4 --consumers 4 --queues 16 --queue-pattern 'perf-%d' --size 1024 --duration 30s\n" +
			"   warrenctl perf --confirm 100 --persistent --rate 1000 --duration 20s",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "producers", Aliases: []string{"x"}, Value: 1},
			&cli.IntFlag{Name: "consumers", Aliases: []string{"y"}, Value: 1},
			&cli.IntFlag{Name: "size", Aliases: []string{"s"}, Value: 16, Usage: "message body bytes (at least 8: the send time)"},
			&cli.IntFlag{Name: "rate", Aliases: []string{"r"}, Usage: "messages per second per producer (0: as fast as possible)"},
			&cli.IntFlag{Name: "confirm", Aliases: []string{"c"}, Usage: "publisher confirms with this many outstanding per producer (0: no confirms)"},
			&cli.BoolFlag{Name: "persistent", Aliases: []string{"f"}, Usage: "persistent messages to durable queues"},
			&cli.IntFlag{Name: "prefetch", Aliases: []string{"q"}, Value: 100, Usage: "consumer prefetch with manual acks (0: auto-ack)"},
			&cli.DurationFlag{Name: "duration", Aliases: []string{"z"}, Value: 10 * time.Second},
			&cli.StringFlag{Name: "queue-pattern", Value: "perf-test-%d", Usage: "queue names; %d is the queue number"},
			&cli.IntFlag{Name: "queues", Value: 1, Usage: "how many queues: producer i publishes round-robin to queues i, i+producers, ...; consumer i consumes queues i, i+consumers, ... (with fewer queues than producers or consumers, i mod queues)"},
		},
		Action: runPerf,
	}
}

func runPerf(c *cli.Context) error {
	np, nc, nq := c.Int("producers"), c.Int("consumers"), c.Int("queues")
	size, rate, confirm, prefetch := c.Int("size"), c.Int("rate"), c.Int("confirm"), c.Int("prefetch")
	switch {
	case np < 0 || nc < 0 || np+nc == 0:
		return usagef("perf needs at least one producer or consumer")
	case nq < 1:
		return usagef("--queues must be at least 1")
	case size < 8:
		return usagef("--size must be at least 8 (the body carries the send time)")
	case rate < 0 || confirm < 0 || prefetch < 0:
		return usagef("--rate, --confirm and --prefetch must not be negative")
	case nq > 1 && !strings.Contains(c.String("queue-pattern"), "%d"):
		return usagef("--queue-pattern needs %%d for --queues %d", nq)
	}
	qname := func(i int) string {
		p := c.String("queue-pattern")
		if strings.Contains(p, "%d") {
			return fmt.Sprintf(p, i)
		}
		return p
	}
	persistent := c.Bool("persistent")
	setup, sch, err := dial(c, "warrenctl perf setup")
	if err != nil {
		return err
	}
	defer setup.Close()
	for i := range nq {
		// Transient runs leave nothing behind: the queue goes with its consumer.
		if _, err := sch.QueueDeclare(qname(i), persistent, !persistent && nc > 0, false, false, nil); err != nil {
			return fmt.Errorf("declaring %s: %v", qname(i), err)
		}
	}

	var sent, confirmed, received atomic.Uint64
	var total, second histogram
	ctx, cancel := context.WithTimeout(context.Background(), c.Duration("duration"))
	defer cancel()
	stop := interrupted()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	errc := make(chan error, np+nc)
	var wg sync.WaitGroup
	var conns []*amqp.Connection
	var connsMu sync.Mutex
	open := func(name string) (*amqp.Channel, error) {
		conn, ch, err := dial(c, name)
		if err != nil {
			return nil, err
		}
		connsMu.Lock()
		conns = append(conns, conn)
		connsMu.Unlock()
		return ch, nil
	}
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	for i := range nc {
		ch, err := open(fmt.Sprintf("warrenctl perf consumer %d", i))
		if err != nil {
			return err
		}
		if prefetch > 0 {
			if err := ch.Qos(prefetch, 0, false); err != nil {
				return err
			}
		}
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		ds, err := consumeAll(ch, perfQueues(i, nc, nq, qname), prefetch == 0)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			var maxTag, acked uint64
			for {
				select {
				case d, ok := <-ds:
					if !ok {
						if ctx.Err() == nil {
							errc <- fmt.Errorf("consumer %d stopped: %v", i, <-closed)
						}
						return
					}
					if len(d.Body) >= 8 {
						lat := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(d.Body))))
						total.add(lat)
						second.add(lat)
					}
					received.Add(1)
					if prefetch > 0 {
						// Deliveries from several queues arrive merged, not
						// in tag order: ack (multiple) up to the highest tag
						// seen, which covers every lower one on the channel.
						maxTag = max(maxTag, d.DeliveryTag)
						n++
						if (n >= prefetch/2 || n >= 50) && maxTag > acked {
							ch.Ack(maxTag, true)
							acked, n = maxTag, 0
						}
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for i := range np {
		ch, err := open(fmt.Sprintf("warrenctl perf producer %d", i))
		if err != nil {
			return err
		}
		var acks chan amqp.Confirmation
		if confirm > 0 {
			if err := ch.Confirm(false); err != nil {
				return err
			}
			acks = ch.NotifyPublish(make(chan amqp.Confirmation, confirm*2))
		}
		qs := perfQueues(i, np, nq, qname)
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := make([]byte, size)
			mode := amqp.Transient
			if persistent {
				mode = amqp.Persistent
			}
			var interval time.Duration
			if rate > 0 {
				interval = time.Second / time.Duration(rate)
			}
			next := time.Now()
			outstanding := 0
			for n := 0; ctx.Err() == nil; n++ {
				q := qs[n%len(qs)]
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				for confirm > 0 && outstanding >= confirm {
					select {
					case cf := <-acks:
						outstanding--
						if cf.Ack {
							confirmed.Add(1)
						}
					case <-ctx.Done():
						return
					}
				}
				binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
				if err := ch.PublishWithContext(ctx, "", q, false, false, amqp.Publishing{DeliveryMode: mode, Body: body}); err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("publishing: %v", err)
					}
					return
				}
				sent.Add(1)
				outstanding++
			}
		}()
	}

	start := time.Now()
	fmt.Printf("perf: %d producer(s), %d consumer(s), %d queue(s), %d-byte messages, confirm %d, persistent %v, prefetch %d, for %v\n",
		np, nc, nq, size, confirm, persistent, prefetch, c.Duration("duration"))
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var lastSent, lastRecv uint64
	lastT := start
loop:
	for {
		select {
		case <-ticker.C:
			now := time.Now()
			dt := now.Sub(lastT).Seconds()
			s, r := sent.Load(), received.Load()
			fmt.Printf("time %5.1fs, sent %9.0f msg/s, received %9.0f msg/s, latency p50 %v p99 %v\n",
				now.Sub(start).Seconds(), float64(s-lastSent)/dt, float64(r-lastRecv)/dt,
				second.quantile(0.5), second.quantile(0.99))
			second.reset()
			lastSent, lastRecv, lastT = s, r, now
		case err := <-errc:
			cancel()
			return err
		case <-ctx.Done():
			break loop
		}
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	s, r := sent.Load(), received.Load()
	fmt.Printf("summary: %v, sent %d (%.0f msg/s), received %d (%.0f msg/s)", elapsed.Round(time.Millisecond),
		s, float64(s)/elapsed.Seconds(), r, float64(r)/elapsed.Seconds())
	if confirm > 0 {
		fmt.Printf(", confirmed %d", confirmed.Load())
	}
	fmt.Println()
	if total.count() > 0 {
		fmt.Printf("latency: p50 %v, p75 %v, p95 %v, p99 %v, p99.9 %v\n",
			total.quantile(0.5), total.quantile(0.75), total.quantile(0.95), total.quantile(0.99), total.quantile(0.999))
	}
	if s > 0 && r == 0 && nc > 0 {
		fmt.Fprintln(os.Stderr, "warning: nothing was received")
	}
	return nil
}

// perfQueues lists the queues worker i of n uses: i, i+n, i+2n, ... below
// nq, or queue i mod nq when there are fewer queues than workers.
func perfQueues(i, n, nq int, name func(int) string) []string {
	if n >= nq {
		return []string{name(i % nq)}
	}
	var qs []string
	for j := i; j < nq; j += n {
		qs = append(qs, name(j))
	}
	return qs
}

// consumeAll starts one consumer per queue on ch and merges their
// deliveries into one channel, closed when all of them end.
func consumeAll(ch *amqp.Channel, queues []string, autoAck bool) (<-chan amqp.Delivery, error) {
	if len(queues) == 1 {
		return ch.Consume(queues[0], "", autoAck, false, false, false, nil)
	}
	out := make(chan amqp.Delivery, 256)
	var wg sync.WaitGroup
	for _, q := range queues {
		ds, err := ch.Consume(q, "", autoAck, false, false, false, nil)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range ds {
				out <- d
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out, nil
}
