// Command snapcatchup publishes -n persistent messages of -size bytes to a
// quorum queue with confirms (a window of -window), or with -declare only
// declares it, or with -count prints its message count. It is the client
// of integration/bench/snapcatchup.sh, which times a follower's catch-up by
// a chunked snapshot.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	url := flag.String("url", "amqp://guest:guest@127.0.0.1:5701/", "")
	queue := flag.String("queue", "bench", "")
	n := flag.Int("n", 1000000, "")
	size := flag.Int("size", 100, "")
	window := flag.Int("window", 2000, "")
	declareOnly := flag.Bool("declare", false, "")
	count := flag.Bool("count", false, "print the queue's message count")
	flag.Parse()
	c, err := amqp.Dial(*url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		log.Fatal(err)
	}
	if *count {
		q, err := ch.QueueDeclarePassive(*queue, true, false, false, false, nil)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(q.Messages)
		return
	}
	if _, err := ch.QueueDeclare(*queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		log.Fatal(err)
	}
	if *declareOnly {
		return
	}
	if err := ch.Confirm(false); err != nil {
		log.Fatal(err)
	}
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, *window))
	body := make([]byte, *size)
	start := time.Now()
	inflight, acked := 0, 0
	for i := 0; i < *n; i++ {
		copy(body, fmt.Sprintf("%d", i))
		if err := ch.Publish("", *queue, false, false, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}); err != nil {
			log.Fatal(err)
		}
		inflight++
		for inflight >= *window {
			cf := <-confirms
			if !cf.Ack {
				log.Fatal("nack")
			}
			inflight--
			acked++
		}
	}
	for inflight > 0 {
		cf := <-confirms
		if !cf.Ack {
			log.Fatal("nack")
		}
		inflight--
		acked++
	}
	d := time.Since(start)
	fmt.Fprintf(os.Stderr, "published and confirmed %d in %v (%.0f msg/s)\n", acked, d, float64(acked)/d.Seconds())
}
