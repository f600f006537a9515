package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// vmRSS reads a process's resident memory in KB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return n
		}
	}
	return 0
}

// TestManyConnections holds WARREN_CONNS (default 500; `make conn-test`
// 10,000) connections to bin/warren, each with a channel, an exclusive
// queue and a consumer, delivers one message to every one of them, and
// reports the broker's memory per connection.
func TestManyConnections(t *testing.T) {
	warrenOnly(t, "starts bin/warren and reads its memory")
	n := 500
	if v, err := strconv.Atoi(os.Getenv("WARREN_CONNS")); err == nil && v > 0 {
		n = v
	}
	bin := buildWarren(t)
	cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--data-dir", t.TempDir())
	addr := runWarren(t, cmd)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := "amqp://guest:guest@" + addr + "/"
	before := vmRSS(t, cmd.Process.Pid)

	type client struct {
		c     *amqp.Connection
		queue string
		ds    <-chan amqp.Delivery
	}
	clients := make([]client, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := amqp.DialConfig(url, amqp.Config{Heartbeat: 60 * time.Second})
			if err != nil {
				errs <- err
				return
			}
			ch, err := c.Channel()
			if err == nil {
				var q amqp.Queue
				if q, err = ch.QueueDeclare("", false, true, true, false, nil); err == nil {
					var ds <-chan amqp.Delivery
					if ds, err = ch.Consume(q.Name, "", true, false, false, false, nil); err == nil {
						clients[i] = client{c, q.Name, ds}
						return
					}
				}
			}
			errs <- err
			c.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	opened := time.Since(start)
	t.Cleanup(func() {
		for _, cl := range clients {
			cl.c.Close()
		}
	})
	time.Sleep(500 * time.Millisecond)
	held := vmRSS(t, cmd.Process.Pid)

	pub, err := amqp.Dial(url)
	require.NoError(t, err)
	defer pub.Close()
	pch, err := pub.Channel()
	require.NoError(t, err)
	for _, cl := range clients {
		require.NoError(t, pch.PublishWithContext(context.Background(), "", cl.queue, false, false, amqp.Publishing{Body: []byte(cl.queue)}))
	}
	for _, cl := range clients {
		select {
		case d := <-cl.ds:
			require.Equal(t, cl.queue, string(d.Body))
		case <-time.After(30 * time.Second):
			t.Fatalf("no delivery on %s", cl.queue)
		}
	}
	t.Logf("%d connections (channel, exclusive queue, consumer each) opened in %v; broker RSS %d MB before, %d MB held: %.1f KB per connection",
		n, opened.Round(time.Millisecond), before/1024, held/1024, float64(held-before)/float64(n))
}
