package integration

import (
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterDedup: on a three-node cluster a deduplicating exchange
// remembers an id whichever node the message was published to, and so does
// a deduplicating quorum queue; both keep remembering when the node that
// led their groups is killed, and the node catches up when it returns.
func TestClusterDedup(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	require.NoError(t, ch1.ExchangeDeclare("dx", "fanout", true, false, false, false,
		amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100)}))
	_, err := ch1.QueueDeclare("dq", true, false, false, false,
		amqp.Table{"x-queue-type": "quorum", "x-message-deduplication": true})
	require.NoError(t, err)
	// The exchange's sink is a classic queue on node 2, which stays up.
	ch2 := nodes[1].channel()
	_, err = ch2.QueueDeclare("sink", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch2.QueueBind("sink", "", "dx", false, nil))
	ch3 := nodes[2].channel()
	for _, ch := range []*amqp.Channel{ch1, ch2, ch3} {
		require.NoError(t, ch.Confirm(false))
	}
	persistent := func(s string) amqp.Publishing { return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(s)} }
	depth := func(name string, want int) {
		t.Helper()
		waitFor(t, fmt.Sprintf("%s holds %d", name, want), func() bool { return queueDepth(t, ch2, name) == want })
		require.Equal(t, want, queueDepth(t, ch3, name))
	}

	// The same id through each node: one message.
	for i, ch := range []*amqp.Channel{ch1, ch2, ch3} {
		publishWait(t, ch, "dx", "", false, withID("a", persistent(fmt.Sprintf("a%d", i))))
		publishWait(t, ch, "", "dq", false, withID("q1", persistent(fmt.Sprintf("q%d", i))))
	}
	publishWait(t, ch2, "dx", "", false, withID("b", persistent("b")))
	depth("sink", 2)
	depth("dq", 1)
	// A mandatory duplicate comes back unroutable, as on one node.
	returns := ch3.NotifyReturn(make(chan amqp.Return, 1))
	publishWait(t, ch3, "dx", "", true, withID("b", persistent("b again")))
	r := <-returns
	require.Equal(t, uint16(312), r.ReplyCode)

	// Node 1 declared both, so it led their groups first: kill it.
	nodes[0].kill()
	publishWait(t, ch2, "dx", "", false, withID("a", persistent("a after the kill")))
	publishWait(t, ch3, "dx", "", false, withID("c", persistent("c")))
	publishWait(t, ch3, "", "dq", false, withID("q1", persistent("q1 after the kill")))
	publishWait(t, ch2, "", "dq", false, withID("q2", persistent("q2")))
	depth("sink", 3)
	depth("dq", 2)

	// Node 1 returns and catches up: it knows a, b and c.
	nodes[0].start()
	nodes[0].waitHTTP()
	waitFor(t, "node 1 connected to the others", func() bool {
		for _, n := range nodes[0].status().Nodes {
			if !n.Running {
				return false
			}
		}
		return true
	})
	ch1 = nodes[0].channel()
	require.NoError(t, ch1.Confirm(false))
	for _, id := range []string{"a", "b", "c"} {
		publishWait(t, ch1, "dx", "", false, withID(id, persistent(id+" from node 1")))
	}
	publishWait(t, ch1, "dx", "", false, withID("d", persistent("d")))
	depth("sink", 4)

	// The consumer sees each id once, in order.
	ds, err := ch2.Consume("sink", "", true, false, false, false, nil)
	require.NoError(t, err)
	for _, want := range []string{"a0", "b", "c", "d"} {
		require.Equal(t, want, string(recv(t, ds).Body))
	}
	none(t, ds)
}
