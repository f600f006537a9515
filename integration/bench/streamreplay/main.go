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
//
// -spread N (with -consumers "") instead starts N consumers at once at
// offsets spread evenly over the stream (consumer i at i*messages/N), each
// reading -spread-read messages (default: its messages/N slice) in order
// from there and then staying connected until all are done, and reports
// the broker's RSS before they start, its peak while they read and with
// all N connected at the end: memory with many consumers at different
// positions in a deep stream.
//
//	go run ./integration/bench/streamreplay -messages 1000000 -consumers "" -spread 100 -pid PID
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
	spreadN := flag.Int("spread", 0, "consumers at offsets spread over the stream, all at once (0: none)")
	spreadRead := flag.Int("spread-read", 0, "messages each -spread consumer reads (0: messages/spread)")
	hold := flag.Duration("hold", time.Second, "how long -spread consumers stay connected once done, before RSS is read")
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
	if *spreadN > 0 {
		read := *spreadRead
		if read <= 0 {
			read = *messages / *spreadN
		}
		spread(*url, *name, *messages, *spreadN, read, *prefetch, *ackEvery, *pid, *hold)
	}
	for _, s := range strings.Split(*consumersList, ",") {
		if strings.TrimSpace(s) == "" {
			continue
		}
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

// rssSampler samples pid's RSS every 100 ms until stopped and keeps the
// peak (kB).
type rssSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := procRSS(pid); err == nil && r > s.peak.Load() {
				s.peak.Store(r)
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *rssSampler) end() int64 {
	close(s.stop)
	<-s.done
	return s.peak.Load()
}

// spread starts n consumers at once at offsets spread over the stream of
// total messages, each reading read messages in order (fewer near the
// end), and reports the broker's RSS before, at peak, and with all n
// connected once done.
func spread(url, q string, total, n, read, prefetch, ackEvery, pid int, hold time.Duration) {
	rss0, _ := procRSS(pid)
	cpu0, _ := procCPU(pid)
	sampler := sampleRSS(pid)
	start := time.Now()
	var wg sync.WaitGroup
	var delivered atomic.Int64
	conns := make(chan *amqp.Connection, n)
	for i := 0; i < n; i++ {
		from := int64(i) * int64(total) / int64(n)
		want := int64(read)
		if from+want > int64(total) {
			want = int64(total) - from
		}
		wg.Add(1)
		go func(from, want int64) {
			defer wg.Done()
			conn, err := amqp.Dial(url)
			if err != nil {
				log.Fatal(err)
			}
			conns <- conn
			ch, err := conn.Channel()
			if err != nil {
				log.Fatal(err)
			}
			if err := ch.Qos(prefetch, 0, false); err != nil {
				log.Fatal(err)
			}
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			ds, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": from})
			if err != nil {
				log.Fatal(err)
			}
			for got := int64(0); got < want; got++ {
				d, ok := <-ds
				if !ok {
					log.Fatalf("consumer from %d: deliveries ended after %d: %v", from, got, <-closed)
				}
				if off, _ := d.Headers["x-stream-offset"].(int64); off != from+got {
					log.Fatalf("consumer from %d: delivery %d has offset %d", from, got, off)
				}
				if (got+1)%int64(ackEvery) == 0 || got+1 == want {
					d.Ack(true)
				}
			}
			delivered.Add(want)
		}(from, want)
	}
	wg.Wait()
	d := time.Since(start)
	cpu1, _ := procCPU(pid)
	// All n still connected, done reading: what they hold at rest.
	time.Sleep(hold)
	rssIdle, _ := procRSS(pid)
	peak := max(sampler.end(), rssIdle)
	close(conns)
	for c := range conns {
		c.Close()
	}
	all := int(delivered.Load())
	fmt.Printf("spread  %d consumers at offsets 0, %d, …, %d reading %d each: %d deliveries, %.0f msg/s in all over %.1fs; broker cpu %.3f s per 100k; rss %d MB before, peak %d MB, %d MB with all %d connected after\n",
		n, total/n, (n-1)*(total/n), read, all, float64(all)/d.Seconds(), d.Seconds(), per100k(cpu1-cpu0, all), rss0/1024, peak/1024, rssIdle/1024, n)
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
