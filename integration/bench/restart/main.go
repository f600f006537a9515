// Command restart measures how fast Warren comes back with a large durable
// backlog: it fills -queues durable queues with -messages persistent
// messages in total (with confirms), stops the broker with SIGTERM or
// SIGKILL, restarts it on the same data directory, and reports the time to
// the first accepted connection and to the first delivered message.
//
//	go run ./integration/bench/restart -bin bin/warren -messages 1000000 -queues 100
//
// With -rabbitmq PORT it does the same to a RabbitMQ node started by
// ../shared/tools/rabbitmq-oracle.sh on that port (its data directory under
// /tmp is wiped first), signalling the node's OS process.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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

// broker is the process under test.
type broker interface {
	// start starts it and returns its AMQP address and when it was asked
	// to start; the address may not accept connections yet.
	start() (addr string, t0 time.Time)
	signal(syscall.Signal) // and wait for it to exit
}

type warren struct {
	bin, dir string
	cmd      *exec.Cmd
}

func (w *warren) start() (string, time.Time) {
	cmd, addr, t0 := start(w.bin, w.dir)
	w.cmd = cmd
	return addr, t0
}

func (w *warren) signal(sig syscall.Signal) {
	w.cmd.Process.Signal(sig)
	w.cmd.Wait()
}

// rabbit is a RabbitMQ node of rabbitmq-oracle.sh.
type rabbit struct {
	script string
	port   int
}

func (r *rabbit) run(args ...string) {
	out, err := exec.Command(r.script, append(args, strconv.Itoa(r.port))...).CombinedOutput()
	if err != nil {
		log.Fatalf("%s %v: %v\n%s", r.script, args, err, out)
	}
}

func (r *rabbit) start() (string, time.Time) {
	t0 := time.Now()
	go r.run("start") // returns once the node is up; the caller dials meanwhile
	return "127.0.0.1:" + strconv.Itoa(r.port), t0
}

func (r *rabbit) signal(sig syscall.Signal) {
	out, err := exec.Command(r.script, "pid", strconv.Itoa(r.port)).Output()
	pid, perr := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || perr != nil {
		log.Fatalf("rabbitmq pid: %v %v", err, perr)
	}
	syscall.Kill(pid, sig)
	for syscall.Kill(pid, 0) == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// dial connects to addr, retrying until it accepts.
func dial(addr string) *amqp.Connection {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		c, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
		if err == nil {
			return c
		}
		if time.Now().After(deadline) {
			log.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}

func main() {
	bin := flag.String("bin", "bin/warren", "broker binary")
	total := flag.Int("messages", 1000000, "persistent messages in all")
	queues := flag.Int("queues", 100, "durable queues")
	kill := flag.Bool("kill", false, "stop with SIGKILL instead of SIGTERM")
	rabbitPort := flag.Int("rabbitmq", 0, "measure a RabbitMQ node of rabbitmq-oracle.sh on this AMQP port instead")
	script := flag.String("oracle", "../shared/tools/rabbitmq-oracle.sh", "rabbitmq-oracle.sh, for -rabbitmq")
	flag.Parse()
	var b broker
	if *rabbitPort != 0 {
		r := &rabbit{script: *script, port: *rabbitPort}
		base := filepath.Join("/tmp", "rabbitmq-oracle-"+strconv.Itoa(r.port))
		if _, err := os.Stat(filepath.Join(base, "pid")); err == nil {
			exec.Command(r.script, "stop", strconv.Itoa(r.port)).Run()
		}
		os.RemoveAll(base)
		b = r
	} else {
		dir, err := os.MkdirTemp("", "warren-restart-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		b = &warren{bin: *bin, dir: dir}
	}

	addr, _ := b.start()
	dial(addr).Close()
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
	b.signal(sig)

	addr, t0 := b.start()
	defer b.signal(syscall.SIGTERM)
	c := dial(addr)
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
