// Command hashbench measures routing through a consistent-hash exchange over
// 16 queues, and the cost of exchange deduplication against a plain
// exchange, on any broker: deliveries per second and the broker's CPU
// seconds per 100k messages (from /proc/PID/stat), for docs/benchmarks.md.
//
//	go run ./integration/bench/hashbench -url amqp://guest:guest@127.0.0.1:5682/ -pid $(pgrep -n warren) -mode hash
//	go run ./integration/bench/hashbench -mode dedup|plain ...
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func cpuTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / 100 // USER_HZ
}

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "broker")
	mode := flag.String("mode", "hash", "hash: x-consistent-hash over -queues queues; dedup: a fanout exchange with x-message-deduplication; plain: the same fanout without")
	n := flag.Int("count", 500000, "messages")
	queues := flag.Int("queues", 16, "hash: queues bound with weight 1")
	pid := flag.Int("pid", 0, "broker PID for CPU figures")
	declareURL := flag.String("declare-url", "", "declare the exchange through this broker (another node of a cluster); default -url")
	flag.Parse()

	conn, err := amqp.Dial(*url)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	ch, _ := conn.Channel()
	x := fmt.Sprintf("hashbench-%d", time.Now().UnixNano())
	kind, args, nq := "x-consistent-hash", amqp.Table(nil), *queues
	switch *mode {
	case "dedup":
		kind, args, nq = "fanout", amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100000)}, 1
	case "plain":
		kind, nq = "fanout", 1
	}
	dch := ch
	if *declareURL != "" {
		dconn, err := amqp.Dial(*declareURL)
		if err != nil {
			log.Fatal(err)
		}
		defer dconn.Close()
		dch, _ = dconn.Channel()
	}
	if err := dch.ExchangeDeclare(x, kind, false, true, false, false, args); err != nil {
		log.Fatal(err)
	}
	var got atomic.Int64
	cconn, _ := amqp.Dial(*url)
	defer cconn.Close()
	for i := range nq {
		cch, _ := cconn.Channel()
		q, err := cch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			log.Fatal(err)
		}
		if err := cch.QueueBind(q.Name, "1", x, false, nil); err != nil {
			log.Fatal(err)
		}
		ds, _ := cch.Consume(q.Name, "", true, true, false, false, nil)
		go func() {
			for range ds {
				got.Add(1)
			}
		}()
		_ = i
	}
	ch.Confirm(false)
	acks := ch.NotifyPublish(make(chan amqp.Confirmation, 4096))
	c0, t0 := cpuTicks(*pid), time.Now()
	body := make([]byte, 16)
	outstanding := 0
	for i := range *n {
		p := amqp.Publishing{Body: body}
		if *mode != "hash" {
			p.Headers = amqp.Table{"x-deduplication-header": strconv.Itoa(i)}
		}
		if err := ch.PublishWithContext(context.Background(), x, "key-"+strconv.Itoa(i), false, false, p); err != nil {
			log.Fatal(err)
		}
		outstanding++
		for outstanding >= 1000 {
			<-acks
			outstanding--
		}
	}
	for outstanding > 0 {
		<-acks
		outstanding--
	}
	for got.Load() < int64(*n) {
		time.Sleep(time.Millisecond)
	}
	el, cpu := time.Since(t0), cpuTicks(*pid)-c0
	fmt.Printf("mode=%s queues=%d messages=%d msg/s=%.0f broker_cpu_s_per_100k=%.4f\n", *mode, nq, *n, float64(*n)/el.Seconds(), cpu/float64(*n)*1e5)
}
