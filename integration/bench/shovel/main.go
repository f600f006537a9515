// Command shovel measures one shovel's throughput: it fills a durable
// queue at the source with -messages persistent messages (with confirms),
// creates a shovel through the management API of the broker that runs it
// (src-delete-after queue-length, so it moves exactly those), and reports
// the time from the PUT to the last message counted in the destination
// queue. integration/bench/shovel/run.sh (make bench-shovel) runs it for
// Warren and RabbitMQ 3.10.8 shovels.
//
//	go run ./integration/bench/shovel -name rmq-to-warren \
//	  -src-amqp amqp://guest:guest@127.0.0.1:5741/%2F -dest-amqp amqp://guest:guest@127.0.0.1:5743/%2F \
//	  -api http://127.0.0.1:15743 -src-uri amqp://guest:guest@127.0.0.1:5741/%2F -dest-uri amqp://
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	name := flag.String("name", "bench", "scenario name (and the shovel's)")
	srcAMQP := flag.String("src-amqp", "", "AMQP URL of the source broker (to fill the queue)")
	destAMQP := flag.String("dest-amqp", "", "AMQP URL of the destination broker (to count)")
	api := flag.String("api", "", "management API of the broker that runs the shovel")
	srcURI := flag.String("src-uri", "", "the shovel's src-uri")
	destURI := flag.String("dest-uri", "", "the shovel's dest-uri")
	n := flag.Int("messages", 100000, "persistent messages to move")
	size := flag.Int("size", 256, "message body bytes")
	prefetch := flag.Int("prefetch", 1000, "src-prefetch-count")
	ackMode := flag.String("ack-mode", "on-confirm", "ack-mode")
	flag.Parse()
	srcQ, destQ := "bench-shovel-src", "bench-shovel-dst"

	// A fresh destination queue, and the source filled.
	dc := dial(*destAMQP)
	dch := channel(dc)
	dch.QueueDelete(destQ, false, false, false) // absent the first time: not an error worth a stop
	dch = channel(dc)
	must(dch.QueueDeclare(destQ, true, false, false, false, nil))
	sc := dial(*srcAMQP)
	sch := channel(sc)
	sch.QueueDelete(srcQ, false, false, false)
	sch = channel(sc)
	must(sch.QueueDeclare(srcQ, true, false, false, false, nil))
	check(sch.Confirm(false))
	confirms := sch.NotifyPublish(make(chan amqp.Confirmation, *n))
	body := bytes.Repeat([]byte("x"), *size)
	for range *n {
		check(sch.PublishWithContext(context.Background(), "", srcQ, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}))
	}
	for range *n {
		if !(<-confirms).Ack {
			log.Fatal("a publish was nacked")
		}
	}

	value := map[string]any{"src-uri": *srcURI, "src-queue": srcQ, "dest-uri": *destURI, "dest-queue": destQ,
		"src-delete-after": "queue-length", "src-prefetch-count": *prefetch, "ack-mode": *ackMode}
	start := time.Now()
	put(*api+"/api/parameters/shovel/%2F/"+*name, map[string]any{"value": value})
	for {
		q, err := dch.QueueDeclarePassive(destQ, true, false, false, false, nil)
		check(err)
		if q.Messages >= *n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			log.Fatalf("only %d of %d moved in 10 minutes", q.Messages, *n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)
	out, _ := json.Marshal(map[string]any{"scenario": *name, "messages": *n, "size": *size, "seconds": took.Seconds(),
		"msg_per_s": float64(*n) / took.Seconds()})
	fmt.Println(string(out))
	sc.Close()
	dc.Close()
}

func dial(url string) *amqp.Connection {
	c, err := amqp.Dial(url)
	check(err)
	return c
}

func channel(c *amqp.Connection) *amqp.Channel {
	ch, err := c.Channel()
	check(err)
	return ch
}

func put(url string, body any) {
	data, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(data))
	check(err)
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	check(err)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		log.Fatalf("PUT %s: %s", url, resp.Status)
	}
}

func must[T any](_ T, err error) { check(err) }

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
