// Command restart measures how fast Warren comes back with a large durable
// backlog: it fills -queues durable queues with -messages persistent
// messages in total (with confirms), stops the broker with SIGTERM or
// SIGKILL, restarts it on the same data directory, and reports the time to
// the first accepted connection and to the first delivered message.
//
//	go run ./integration/bench/restart -bin bin/warren -messages 1000000 -queues 100
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var listenRe = regexp.MustCompile(`AMQP listening\s+\{"addr": "([^"]+)"\}`)

func start(bin, dir string) (*exec.Cmd, string, time.Time) {
	cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--data-dir", dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		log.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	select {
	case a := <-addrc:
		return cmd, a, t0
	case <-time.After(5 * time.Minute):
		log.Fatal("broker did not start")
	}
	return nil, "", t0
}

func main() {
	bin := flag.String("bin", "bin/warren", "broker binary")
	total := flag.Int("messages", 1000000, "persistent messages in all")
	queues := flag.Int("queues", 100, "durable queues")
	kill := flag.Bool("kill", false, "stop with SIGKILL instead of SIGTERM")
	flag.Parse()
	dir, err := os.MkdirTemp("", "warren-restart-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	cmd, addr, _ := start(*bin, dir)
	url := "amqp://guest:guest@" + addr + "/"
	fillStart := time.Now()
	var wg sync.WaitGroup
	per := *total / *queues
	workers := 4
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c, err := amqp.Dial(url)
			if err != nil {
				log.Fatal(err)
			}
			defer c.Close()
			ch, _ := c.Channel()
			ch.Confirm(false)
			confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4096))
			body := make([]byte, 16)
			for q := w; q < *queues; q += workers {
				name := fmt.Sprintf("restart-%d", q)
				if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
					log.Fatal(err)
				}
				pending := 0
				for i := 0; i < per; i++ {
					if err := ch.PublishWithContext(context.Background(), "", name, false, false, amqp.Publishing{DeliveryMode: 2, Body: body}); err != nil {
						log.Fatal(err)
					}
					pending++
					for pending >= 2000 {
						<-confirms
						pending--
					}
				}
				for ; pending > 0; pending-- {
					<-confirms
				}
			}
		}(w)
	}
	wg.Wait()
	fill := time.Since(fillStart)
	sig := syscall.SIGTERM
	if *kill {
		sig = syscall.SIGKILL
	}
	cmd.Process.Signal(sig)
	cmd.Wait()

	cmd, addr, t0 := start(*bin, dir)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	var c *amqp.Connection
	for {
		if c, err = amqp.Dial("amqp://guest:guest@" + addr + "/"); err == nil {
			break
		}
		time.Sleep(time.Millisecond)
	}
	accept := time.Since(t0)
	ch, _ := c.Channel()
	ds, err := ch.Consume("restart-0", "", true, false, false, false, nil)
	if err != nil {
		log.Fatal(err)
	}
	<-ds
	first := time.Since(t0)
	q, _ := ch.QueueDeclarePassive(fmt.Sprintf("restart-%d", *queues-1), true, false, false, false, nil)
	fmt.Printf("filled %d messages in %d queues in %v (%.0f msg/s confirmed)\n", per**queues, *queues, fill.Round(time.Millisecond), float64(per**queues)/fill.Seconds())
	fmt.Printf("restart after %v: accepting connections after %v, first delivery after %v; last queue holds %d\n",
		sig, accept.Round(time.Millisecond), first.Round(time.Millisecond), q.Messages)
	c.Close()
}
