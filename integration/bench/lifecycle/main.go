// Command lifecycle measures the message-lifecycle features on a real
// bin/warren: how long and how much broker CPU it takes to expire a
// million messages by TTL, how late delayed messages come out while many
// others are pending, and the broker's memory with a million pending
// delayed messages.
//
//	go run ./integration/bench/lifecycle -bin bin/warren [-ttl 1000000] [-pending 100000] [-probes 2000] [-held 1000000]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

var listenRe = regexp.MustCompile(`AMQP listening\s+\{"addr": "([^"]+)"\}`)

func start(bin, dir string) (*exec.Cmd, string) {
	cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--data-dir", dir)
	stderr, err := cmd.StderrPipe()
	logf, err := os.Create(dir + ".log")
	must(err)
	must(err)
	must(cmd.Start())
	broker = cmd
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	select {
	case a := <-addrc:
		return cmd, a
	case <-time.After(time.Minute):
		log.Fatal("broker did not start")
	}
	return nil, ""
}

var broker *exec.Cmd

func must(err error) {
	if err != nil {
		if broker != nil {
			broker.Process.Kill()
		}
		log.Fatal(err)
	}
}

// cpu returns the process's user+system CPU time.
func cpu(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	must(err)
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ = 100
}

func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n << 10
		}
	}
	return 0
}

// confirmed is a channel in confirm mode with its one confirm listener
// (amqp091-go blocks when any registered listener is full).
type confirmed struct {
	ch   *amqp.Channel
	acks chan amqp.Confirmation
}

func newConfirmed(conn *amqp.Connection) confirmed {
	ch, err := conn.Channel()
	must(err)
	must(ch.Confirm(false))
	return confirmed{ch, ch.NotifyPublish(make(chan amqp.Confirmation, 2000))}
}

// publishConfirmed publishes n messages made by mk with confirms, 1000 in flight.
func publishConfirmed(c confirmed, n int, ex, key string, mk func(i int) amqp.Publishing) {
	ch, acks := c.ch, c.acks
	inflight := 0
	for i := range n {
		must(ch.PublishWithContext(context.Background(), ex, key, false, false, mk(i)))
		inflight++
		for inflight >= 1000 {
			<-acks
			inflight--
		}
	}
	for ; inflight > 0; inflight-- {
		<-acks
	}
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func main() {
	bin := flag.String("bin", "bin/warren", "broker binary")
	ttlN := flag.Int("ttl", 1000000, "messages to expire by TTL")
	ttlMs := flag.Int("ttl-ms", 20000, "their TTL: long enough that all are in before the first expires")
	pendingN := flag.Int("pending", 100000, "delayed messages kept pending during the lateness probe")
	probes := flag.Int("probes", 2000, "probe messages for delayed lateness")
	heldN := flag.Int("held", 1000000, "delayed messages held for the memory figure")
	flag.Parse()

	dir, err := os.MkdirTemp("", "warren-lifecycle-")
	must(err)
	defer os.RemoveAll(dir)
	cmd, addr := start(*bin, dir)
	defer cmd.Process.Kill()
	go func() { // a bound on the whole run, so no broker outlives it
		time.Sleep(20 * time.Minute)
		cmd.Process.Kill()
		log.Fatal("timed out")
	}()
	pid := cmd.Process.Pid
	conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
	must(err)
	ch, err := conn.Channel()
	must(err)
	cc := newConfirmed(conn)
	fmt.Printf("broker pid %d, RSS at start %s\n", pid, mib(rss(pid)))

	// 1. TTL: fill a queue whose messages live 2 s, then time the expiry.
	if *ttlN > 0 {
		_, err = ch.QueueDeclare("ttl-bench", false, false, false, false, amqp.Table{"x-message-ttl": int32(*ttlMs)})
		must(err)
		body := make([]byte, 16)
		t0 := time.Now()
		publishConfirmed(cc, *ttlN, "", "ttl-bench", func(int) amqp.Publishing { return amqp.Publishing{Body: body} })
		fill := time.Since(t0)
		// Wait for the first expiry, then time until empty.
		if fill > time.Duration(*ttlMs)*time.Millisecond {
			log.Fatalf("filling took %v, longer than the TTL: raise -ttl-ms", fill)
		}
		time.Sleep(time.Duration(*ttlMs)*time.Millisecond - fill)
		c0, e0 := cpu(pid), time.Now()
		for {
			q, err := ch.QueueDeclarePassive("ttl-bench", false, false, false, false, nil)
			must(err)
			if q.Messages == 0 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		wall, used := time.Since(e0), cpu(pid)-c0
		fmt.Printf("TTL: %d messages filled in %v; expired %v after the first was due, broker CPU %v (%.2f µs/message)\n",
			*ttlN, fill.Round(time.Millisecond), wall.Round(time.Millisecond), used, float64(used.Microseconds())/float64(*ttlN))
		_, err = ch.QueueDelete("ttl-bench", false, false, false)
		must(err)
	}

	// 2. Lateness with many pending: pending messages due in 10-20 minutes,
	// probes due in 200 ms carrying their due time.
	must(ch.ExchangeDeclare("delay-bench", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "direct"}))
	_, err = ch.QueueDeclare("probe", false, false, false, false, nil)
	must(err)
	must(ch.QueueBind("probe", "probe", "delay-bench", false, nil))
	if *pendingN > 0 {
		t0 := time.Now()
		publishConfirmed(cc, *pendingN, "delay-bench", "parked", func(i int) amqp.Publishing {
			return amqp.Publishing{DeliveryMode: 2, Body: make([]byte, 16), Headers: amqp.Table{"x-delay": int32(600000 + i%600000)}}
		})
		fmt.Printf("delayed: %d pending published in %v, RSS %s\n", *pendingN, time.Since(t0).Round(time.Millisecond), mib(rss(pid)))
	}
	pc, err := conn.Channel()
	must(err)
	ds, err := pc.Consume("probe", "", true, false, false, false, nil)
	must(err)
	late := make([]time.Duration, 0, *probes)
	done := make(chan struct{})
	go func() {
		for d := range ds {
			due := time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))
			late = append(late, time.Since(due))
			if len(late) == *probes {
				close(done)
				return
			}
		}
	}()
	pub, err := conn.Channel()
	must(err)
	for range *probes {
		body := make([]byte, 8)
		binary.BigEndian.PutUint64(body, uint64(time.Now().Add(200*time.Millisecond).UnixNano()))
		must(pub.PublishWithContext(context.Background(), "delay-bench", "probe", false, false,
			amqp.Publishing{Body: body, Headers: amqp.Table{"x-delay": int32(200)}}))
		time.Sleep(2 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		log.Fatalf("only %d of %d probes arrived", len(late), *probes)
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	pct := func(p float64) time.Duration { return late[int(p*float64(len(late)-1))] }
	fmt.Printf("delayed lateness with %d pending, %d probes: p50 %v, p99 %v, max %v\n", *pendingN, *probes,
		pct(0.5).Round(10*time.Microsecond), pct(0.99).Round(10*time.Microsecond), late[len(late)-1].Round(10*time.Microsecond))

	// 3. Memory with many held.
	if *heldN > *pendingN {
		t0 := time.Now()
		publishConfirmed(cc, *heldN-*pendingN, "delay-bench", "parked", func(i int) amqp.Publishing {
			return amqp.Publishing{DeliveryMode: 2, Body: make([]byte, 16), Headers: amqp.Table{"x-delay": int32(600000 + i%600000)}}
		})
		time.Sleep(3 * time.Second)
		fmt.Printf("delayed: %d pending (published in %v): broker RSS %s\n", *heldN, time.Since(t0).Round(time.Millisecond), mib(rss(pid)))
	}
	conn.Close()
}
