package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterQuorumConsumerAttachedOnce: a consumer on a node that is not
// the queue's leader, started right after the declare (before that node's
// member has heard from the leader), keeps its one attachment when its node
// then learns who leads. Attaching it again took back its unacked
// deliveries and delivered them a second time, redelivered, although no
// leader had changed.
func TestClusterQuorumConsumerAttachedOnce(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	require.NoError(t, ch1.Confirm(false))
	const prefetch = 20

	for i := range 10 {
		name := fmt.Sprintf("attach-%d", i)
		_, err := ch1.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		require.NoError(t, err)
		var ds <-chan amqp.Delivery
		waitFor(t, "a consumer on node 3", func() bool {
			// The queue may not be known on node 3 for a moment: a refused
			// consume closes its channel.
			c := nodes[2].channel()
			require.NoError(t, c.Qos(prefetch, 0, false))
			if ds, err = c.Consume(name, "", false, false, false, false, nil); err != nil {
				return false
			}
			return true
		})
		for j := range 2 * prefetch {
			dc, err := ch1.PublishWithDeferredConfirmWithContext(context.Background(), "", name, false, false,
				amqp.Publishing{Body: fmt.Appendf(nil, "%d", j), DeliveryMode: amqp.Persistent})
			require.NoError(t, err)
			ok, err := dc.WaitContext(context.Background())
			require.NoError(t, err)
			require.True(t, ok)
		}
		// Held unacked: exactly a prefetch's worth, each once, none
		// redelivered, and then nothing more for as long as a heartbeat
		// or two takes.
		got := map[string]int{}
		take := func(d amqp.Delivery) {
			require.False(t, d.Redelivered, "queue %s: %q delivered again, redelivered (deliveries so far %v)", name, d.Body, got)
			got[string(d.Body)]++
			require.Equal(t, 1, got[string(d.Body)], "queue %s: %q delivered twice", name, d.Body)
		}
		for len(got) < prefetch {
			take(recv(t, ds))
		}
		quiet := time.After(2 * time.Second)
	watch:
		for {
			select {
			case d := <-ds:
				take(d)
			case <-quiet:
				break watch
			}
		}
		require.Len(t, got, prefetch, "queue %s", name)
	}
}
