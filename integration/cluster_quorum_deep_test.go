package integration

import (
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// publishNumbered publishes n persistent messages numbered from first on,
// a window of confirms at a time, and fails unless all are confirmed.
func publishNumbered(t *testing.T, ch *amqp.Channel, queue string, first, n int) {
	t.Helper()
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	const window = 500
	for sent := 0; sent < n; {
		k := min(window, n-sent)
		for i := range k {
			require.NoError(t, ch.Publish("", queue, false, false, amqp.Publishing{
				DeliveryMode: amqp.Persistent, Body: []byte(strconv.Itoa(first + sent + i))}))
		}
		for range k {
			select {
			case c := <-confirms:
				require.True(t, c.Ack, "nacked")
			case <-time.After(30 * time.Second):
				t.Fatal("no confirm")
			}
		}
		sent += k
	}
}

// drainNumbered consumes n messages from queue on ch and checks that they
// are 0..n-1, each once, in order.
func drainNumbered(t *testing.T, ch *amqp.Channel, queue string, n int) {
	t.Helper()
	require.NoError(t, ch.Qos(500, 0, false))
	ds, err := ch.Consume(queue, "", false, false, false, false, nil)
	require.NoError(t, err)
	for want := 0; want < n; want++ {
		select {
		case d := <-ds:
			require.Equal(t, strconv.Itoa(want), string(d.Body))
			if want%100 == 99 || want == n-1 {
				require.NoError(t, d.Ack(true))
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message %d did not come", want)
		}
	}
	select {
	case d := <-ds:
		t.Fatalf("one more message: %s", d.Body)
	case <-time.After(200 * time.Millisecond):
	}
}

// nodeMemory is the node's memory budget use in /api/nodes.
func (nd *clusterNode) nodeMemory() (ram, paged int) {
	code, raw := nd.api("GET", "/api/nodes/"+nd.name, "")
	require.Equal(nd.t, 200, code, string(raw))
	var n struct {
		RAM   int `json:"messages_ram"`
		Paged int `json:"messages_paged_out"`
	}
	require.NoError(nd.t, json.Unmarshal(raw, &n))
	return n.RAM, n.Paged
}

// TestClusterQuorumQueueDeep: a deep quorum queue pages like a classic one
// (its leader keeps a head within the memory budget, every member keeps
// the messages in its store), a member that was down while the log moved
// past it catches up from a snapshot made on demand and can then serve the
// queue alone, and a restart with the backlog serves at once; every
// message comes out once, in order.
func TestClusterQuorumQueueDeep(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	const n = 30000
	nodes := startTestCluster(t, 3, 0, "--memory-budget", "1MB")
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("deep", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	waitFor(t, "the queue led by node 1 with three members online", func() bool {
		qi, ok := nodes[0].quorumInfo("deep")
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	})
	// Node 3 misses the backlog: the leader's log is trimmed past it.
	nodes[2].kill()
	publishNumbered(t, ch1, "deep", 0, n)
	ram, paged := nodes[0].nodeMemory()
	t.Logf("leader: %d messages in memory, %d paged out", ram, paged)
	require.Equal(t, n, ram+paged)
	require.Greater(t, paged, n/2, "the budget keeps most of the backlog on disk")

	nodes[2].start()
	nodes[2].waitHTTP()
	waitFor(t, "node 3 online", func() bool {
		qi, ok := nodes[0].quorumInfo("deep")
		return ok && len(qi.Online) == 3
	})
	// The leader's node killed: node 2 or node 3 (whose state came with
	// the snapshot) leads, with the backlog paged.
	nodes[0].kill()
	var lead *clusterNode
	waitFor(t, "a new leader serving the backlog", func() bool {
		qi, ok := nodes[2].quorumInfo("deep")
		if !ok || qi.Messages != n {
			return false
		}
		for _, nd := range nodes[1:] {
			if nd.name == qi.Leader {
				lead = nd
			}
		}
		return lead != nil
	}, func() string {
		qi, _ := nodes[2].quorumInfo("deep")
		return fmt.Sprintf("%+v\nnode 3 log:\n%s", qi, nodes[2].logText())
	})
	t.Logf("new leader %s", lead.name)
	if ram, paged := lead.nodeMemory(); paged == 0 {
		t.Fatalf("the new leader holds the whole backlog in memory: %d", ram)
	}
	nodes[0].start()
	nodes[0].waitHTTP()
	waitFor(t, "node 1 online", func() bool {
		qi, ok := nodes[0].quorumInfo("deep")
		return ok && len(qi.Online) == 3
	})

	// The leader restarted with the backlog: the queue is served again
	// within seconds, by it or another member.
	lead.kill()
	began := time.Now()
	lead.start()
	lead.waitHTTP()
	waitFor(t, "the queue served again", func() bool {
		qi, ok := lead.quorumInfo("deep")
		return ok && qi.Leader != "" && qi.Messages == n && len(qi.Online) == 3
	})
	t.Logf("%s restarted with %d messages: serving after %v", lead.name, n, time.Since(began))
	require.Less(t, time.Since(began), 15*time.Second)
	// The drain checks exactly once, in order: it starts once every node
	// names the same leader for a second (a leader that changes under a
	// consumer gives its unsettled messages again, flagged redelivered).
	settled, last := 0, ""
	waitFor(t, "one leader for a second", func() bool {
		names := map[string]bool{}
		for _, nd := range nodes {
			qi, ok := nd.quorumInfo("deep")
			if !ok || qi.Leader == "" {
				return false
			}
			names[qi.Leader] = true
		}
		var now string
		for name := range names {
			now = name
		}
		if len(names) != 1 || now != last {
			settled, last = 0, now
			return false
		}
		settled++
		return settled >= 20
	})
	drainNumbered(t, lead.channel(), "deep", n)
}
