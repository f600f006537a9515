package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterQuorumFlowControl: a publisher without confirms that outruns
// a quorum queue's log is held back (its connection shows RabbitMQ's state
// "flow") instead of making the leader buffer its publishes without bound;
// here the log cannot commit at all while both followers are paused, so
// the gate must close. Once they resume, everything published arrives,
// in order.
func TestClusterQuorumFlowControl(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("flowq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	checkFlowControl(t, nodes, ch1, "flowq", nil)
}

// checkFlowControl runs a flow control test on queue, a quorum queue or a
// stream that node 1 of nodes declared on ch1: once node 1 leads it with
// its three members online, a publisher without confirms on ch1 sends 1 KB
// messages, and nodes 2 and 3 are paused after the first thousand (the
// group cannot commit). Node 1 must show the publishing connection in flow
// before the publisher is done; once they resume, the publisher finishes
// and a consumer on node 3 (with consumeArgs) gets every message, each
// first seen in publish order (publishes caught in the pause's change of
// leader may come again: at least once).
func checkFlowControl(t *testing.T, nodes []*clusterNode, ch1 *amqp.Channel, queue string, consumeArgs amqp.Table) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s led by node 1 with three members online", queue), func() bool {
		qi, ok := nodes[0].quorumInfo(queue)
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	})

	// 1 KB messages, so that the socket buffers between the client and
	// the broker hold far fewer than the publisher sends.
	const n = 60000
	pad := make([]byte, 1000)
	var published atomic.Int64
	paused := make(chan struct{})
	pubErr := make(chan error, 1)
	go func() {
		for i := range n {
			if i == 1000 {
				<-paused
			}
			err := ch1.PublishWithContext(context.Background(), "", queue, false, false,
				amqp.Publishing{Body: append(fmt.Appendf(nil, "m-%d ", i), pad...), DeliveryMode: amqp.Persistent})
			if err != nil {
				pubErr <- err
				return
			}
			published.Add(1)
		}
		pubErr <- nil
	}()

	for published.Load() < 1000 {
		time.Sleep(5 * time.Millisecond)
	}
	nodes[1].signal(syscall.SIGSTOP)
	nodes[2].signal(syscall.SIGSTOP)
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			nodes[1].signal(syscall.SIGCONT)
			nodes[2].signal(syscall.SIGCONT)
		}
	}
	defer resume()
	close(paused)
	waitFor(t, "node 1 shows the publishing connection in flow", func() bool {
		code, raw := nodes[0].api("GET", "/api/connections", "")
		if code != 200 {
			return false
		}
		var conns []struct {
			State string `json:"state"`
		}
		require.NoError(t, json.Unmarshal(raw, &conns))
		for _, c := range conns {
			if c.State == "flow" {
				return true
			}
		}
		return false
	})
	held := published.Load()
	require.Less(t, held, int64(n), "the publisher was not held back")
	t.Logf("publisher held after %d of %d messages", held, n)
	resume()

	select {
	case err := <-pubErr:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("publisher stuck after %d of %d messages", published.Load(), n)
	}

	ch3 := nodes[2].channel()
	require.NoError(t, ch3.Qos(1000, 0, false))
	msgs, err := ch3.Consume(queue, "", false, false, false, false, consumeArgs)
	require.NoError(t, err)
	seen := make(map[string]bool, n)
	next, dups := 0, 0
	deadline := time.After(90 * time.Second)
	for next < n {
		select {
		case d := <-msgs:
			b, _, _ := strings.Cut(string(d.Body), " ")
			if seen[b] {
				dups++
			} else {
				require.Equal(t, fmt.Sprintf("m-%d", next), b, "out of order")
				seen[b] = true
				next++
			}
			require.NoError(t, d.Ack(false))
		case <-deadline:
			t.Fatalf("received %d of %d", next, n)
		}
	}
	t.Logf("all %d received, %d twice", n, dups)
}

// TestClusterForwardWaitsForSlowNode: copies for a classic queue on another
// node wait in the cluster connection's buffer to that node; when that node
// stalls (paused here for 3 s) a publisher on this node is held back once
// 16 MiB wait, instead of its publishes failing on the full buffer and,
// without confirms, being lost. Everything arrives, in order.
func TestClusterForwardWaitsForSlowNode(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 2, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("slowhome", false, false, false, false, nil)
	require.NoError(t, err)
	ch2 := nodes[1].channel()
	waitFor(t, "node 2 knows the queue", func() bool {
		_, err := ch2.QueueDeclarePassive("slowhome", false, false, false, false, nil)
		if err != nil {
			ch2 = nodes[1].channel()
		}
		return err == nil
	})

	const n, size = 150, 1 << 20 // 150 MB: more than the 64 MiB buffer
	var published atomic.Int64
	pubErr := make(chan error, 1)
	go func() {
		body := make([]byte, size)
		for i := range n {
			copy(body, fmt.Sprintf("%06d", i))
			if err := ch2.PublishWithContext(context.Background(), "", "slowhome", false, false, amqp.Publishing{Body: body}); err != nil {
				pubErr <- err
				return
			}
			published.Add(1)
		}
		pubErr <- nil
	}()
	for published.Load() < 10 {
		time.Sleep(5 * time.Millisecond)
	}
	nodes[0].signal(syscall.SIGSTOP)
	time.Sleep(3 * time.Second)
	nodes[0].signal(syscall.SIGCONT)
	select {
	case err := <-pubErr:
		require.NoError(t, err)
	case <-time.After(60 * time.Second):
		t.Fatalf("publisher stuck after %d of %d messages", published.Load(), n)
	}

	ds, err := ch1.Consume("slowhome", "", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range n {
		select {
		case d := <-ds:
			require.Equal(t, fmt.Sprintf("%06d", i), string(d.Body[:6]))
		case <-time.After(30 * time.Second):
			t.Fatalf("received %d of %d", i, n)
		}
	}
}
