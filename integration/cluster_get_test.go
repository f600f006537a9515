package integration

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterRemoteGetHeldUnacked: a message taken with basic.get on a
// node other than the queue's, and held unacked for a few seconds, is not
// mistaken for one older than the consumer timeout (30 minutes): the
// channel stays open and the ack settles it.
func TestClusterRemoteGetHeldUnacked(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 2, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("held", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch1.PublishWithContext(context.Background(), "", "held", false, false, amqp.Publishing{Body: []byte("m")}))

	ch2 := nodes[1].channel()
	closed := ch2.NotifyClose(make(chan *amqp.Error, 1))
	var d amqp.Delivery
	waitFor(t, "the message got through node 2", func() bool {
		var ok bool
		d, ok, err = ch2.Get("held", false)
		require.NoError(t, err)
		return ok
	})
	require.Equal(t, "m", string(d.Body))
	select {
	case e := <-closed:
		t.Fatalf("channel closed while the message was held: %v", e)
	case <-time.After(3 * time.Second): // three consumer-timeout sweeps
	}
	require.NoError(t, d.Ack(false))
	_, err = ch2.QueueDeclarePassive("held", true, false, false, false, nil)
	require.NoError(t, err, "the channel still works")
	waitFor(t, "the queue empty", func() bool {
		q, err := ch1.QueueDeclarePassive("held", true, false, false, false, nil)
		require.NoError(t, err)
		return q.Messages == 0
	})
}
