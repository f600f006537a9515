package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestSoakWithKills mixes publishing with confirms, acks, nacks with
// requeue, rejects into a dead-letter queue and per-message TTL at a steady
// rate against bin/warren, SIGKILLs and restarts the broker every few
// seconds, and checks that every confirmed message is finally acked (on
// the work queue or, dead-lettered, on the dead queue) and that no message
// whose ack the broker had for a second before a kill comes back.
// WARREN_SOAK (default 15s) and WARREN_SOAK_KILL_EVERY (default 4s) set
// the length; `make soak` runs 30 minutes.
func TestSoakWithKills(t *testing.T) {
	warrenOnly(t, "SIGKILLs and restarts bin/warren")
	total := envDuration("WARREN_SOAK", 15*time.Second)
	killEvery := envDuration("WARREN_SOAK_KILL_EVERY", 4*time.Second)
	bin := buildWarren(t)
	dir := t.TempDir()
	addr := freePort(t)
	url := "amqp://guest:guest@" + addr + "/"

	var cmd *exec.Cmd
	start := func() {
		cmd = exec.Command(bin, "--amqp-listen", addr, "--http-listen", "", "--prometheus-listen", "", "--data-dir", dir, "--log-level", "warn")
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("broker did not come back")
	}
	start()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	// Durable topology: work dead-letters into dead.
	func() {
		c, err := amqp.Dial(url)
		require.NoError(t, err)
		defer c.Close()
		ch, err := c.Channel()
		require.NoError(t, err)
		_, err = ch.QueueDeclare("soak.dead", true, false, false, false, nil)
		require.NoError(t, err)
		_, err = ch.QueueDeclare("soak.work", true, false, false, false, amqp.Table{
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "soak.dead"})
		require.NoError(t, err)
		// No consumer here: everything expires into soak.dead.
		_, err = ch.QueueDeclare("soak.ttl", true, false, false, false, amqp.Table{
			"x-message-ttl": int32(100), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "soak.dead"})
		require.NoError(t, err)
	}()

	type state struct {
		mu        sync.Mutex
		confirmed map[int]bool
		ackedAt   map[string]time.Time // "queue/id" -> when acked
		kills     []time.Time
		bad       []string
	}
	st := &state{confirmed: map[int]bool{}, ackedAt: map[string]time.Time{}}
	var published, delivered, requeued, rejected, expiredish atomic.Int64

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// dialLoop connects, retrying while the broker is down.
	dialLoop := func(ctx context.Context) *amqp.Connection {
		for ctx.Err() == nil {
			if c, err := amqp.Dial(url); err == nil {
				return c
			}
			time.Sleep(50 * time.Millisecond)
		}
		return nil
	}

	// Producer: persistent messages with confirms, ~1,000/s; every tenth
	// goes to soak.ttl, where it expires after 100 ms into soak.dead.
	publishing, stopPublishing := context.WithCancel(ctx)
	producerDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(producerDone)
		next := 0
		for publishing.Err() == nil {
			c := dialLoop(publishing)
			if c == nil {
				return
			}
			ch, err := c.Channel()
			if err != nil || ch.Confirm(false) != nil {
				c.Close()
				continue
			}
			acks := ch.NotifyPublish(make(chan amqp.Confirmation, 256))
			sent := map[uint64]int{}
			var tag uint64
			tick := time.NewTicker(time.Millisecond)
		publish:
			for publishing.Err() == nil {
				select {
				case <-tick.C:
				case <-publishing.Done():
					break publish
				}
				id := next
				next++
				p := amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: strconv.Itoa(id), Body: []byte("soak")}
				queue := "soak.work"
				if id%10 == 0 {
					queue = "soak.ttl"
				}
				if err := ch.PublishWithContext(publishing, "", queue, false, false, p); err != nil {
					break
				}
				tag++
				sent[tag] = id
				published.Add(1)
				for drained := false; !drained; {
					select {
					case cf, ok := <-acks:
						if !ok {
							break publish
						}
						if cf.Ack {
							st.mu.Lock()
							st.confirmed[sent[cf.DeliveryTag]] = true
							st.mu.Unlock()
						}
						delete(sent, cf.DeliveryTag)
					default:
						drained = true
					}
				}
			}
			tick.Stop()
			// Collect the confirms still on their way (the connection may be dead).
			timeout := time.After(2 * time.Second)
		collect:
			for len(sent) > 0 {
				select {
				case cf, ok := <-acks:
					if !ok {
						break collect
					}
					if cf.Ack {
						st.mu.Lock()
						st.confirmed[sent[cf.DeliveryTag]] = true
						st.mu.Unlock()
					}
					delete(sent, cf.DeliveryTag)
				case <-timeout:
					break collect
				}
			}
			c.Close()
		}
	}()

	// Consumers: work (ack 70%, nack+requeue 15% on first delivery, reject
	// 15% into dead) and dead (ack all).
	consume := func(queue string, decide func(d amqp.Delivery) string) {
		defer wg.Done()
		for ctx.Err() == nil {
			c := dialLoop(ctx)
			if c == nil {
				return
			}
			ch, err := c.Channel()
			if err != nil || ch.Qos(50, 0, false) != nil {
				c.Close()
				continue
			}
			ds, err := ch.Consume(queue, "", false, false, false, false, nil)
			if err != nil {
				c.Close()
				continue
			}
		loop:
			for {
				select {
				case d, ok := <-ds:
					if !ok {
						break loop
					}
					delivered.Add(1)
					key := queue + "/" + d.MessageId
					st.mu.Lock()
					if at, acked := st.ackedAt[key]; acked {
						// Came back after its ack: allowed only if a kill
						// followed the ack within a second (ack not yet on disk).
						ok := false
						for _, k := range st.kills {
							if k.After(at) && k.Sub(at) < time.Second {
								ok = true
							}
						}
						if !ok {
							st.bad = append(st.bad, fmt.Sprintf("%s delivered again after its ack at %v (redelivered=%v)", key, at.Format("15:04:05.000"), d.Redelivered))
						}
					}
					st.mu.Unlock()
					switch decide(d) {
					case "ack":
						if d.Ack(false) == nil {
							st.mu.Lock()
							st.ackedAt[key] = time.Now()
							st.mu.Unlock()
						}
					case "requeue":
						requeued.Add(1)
						d.Nack(false, true)
					case "reject":
						rejected.Add(1)
						d.Reject(false)
					}
				case <-ctx.Done():
					break loop
				}
			}
			c.Close()
		}
	}
	wg.Add(2)
	go consume("soak.work", func(d amqp.Delivery) string {
		id, _ := strconv.Atoi(d.MessageId)
		switch {
		case id%20 == 3:
			return "reject"
		case id%20 == 7 && !d.Redelivered:
			return "requeue"
		}
		return "ack"
	})
	go consume("soak.dead", func(d amqp.Delivery) string {
		if reason, ok := d.Headers["x-first-death-reason"].(string); ok && reason == "expired" {
			expiredish.Add(1)
		}
		return "ack"
	})

	// The killer.
	end := time.Now().Add(total)
	kills := 0
	for time.Now().Add(killEvery).Before(end) {
		time.Sleep(killEvery)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		st.mu.Lock()
		st.kills = append(st.kills, time.Now())
		st.mu.Unlock()
		kills++
		start()
	}
	time.Sleep(time.Until(end))
	stopPublishing()
	// The producer collects the confirms still on their way before it
	// returns: a message confirmed after the drain below began would
	// otherwise count as lost with the consumers already stopped.
	<-producerDone

	// Drain: every confirmed message must end up acked somewhere.
	missing := func() []int {
		st.mu.Lock()
		defer st.mu.Unlock()
		var out []int
		for id := range st.confirmed {
			_, w := st.ackedAt["soak.work/"+strconv.Itoa(id)]
			_, d := st.ackedAt["soak.dead/"+strconv.Itoa(id)]
			if !w && !d {
				out = append(out, id)
			}
		}
		return out
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	t.Logf("soak: %v, %d kills, %d published, %d confirmed, %d deliveries, %d requeued, %d rejected, %d expired into the dead queue",
		total, kills, published.Load(), len(st.confirmed), delivered.Load(), requeued.Load(), rejected.Load(), expiredish.Load())
	require.Empty(t, st.bad, "acked messages came back")
	lost := 0
	for id := range st.confirmed {
		_, w := st.ackedAt["soak.work/"+strconv.Itoa(id)]
		_, d := st.ackedAt["soak.dead/"+strconv.Itoa(id)]
		if !w && !d {
			lost++
		}
	}
	require.Zero(t, lost, "confirmed messages never delivered and acked")
	require.Greater(t, len(st.confirmed), 1000, "the soak did work")
	require.Greater(t, expiredish.Load(), int64(0), "some messages expired into the dead queue")
}

func envDuration(name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}
