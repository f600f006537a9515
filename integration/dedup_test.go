package integration

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func withID(id any, p amqp.Publishing) amqp.Publishing {
	if p.Headers == nil {
		p.Headers = amqp.Table{}
	}
	p.Headers["x-deduplication-header"] = id
	return p
}

// publishWait publishes with a confirm and waits for it.
func publishWait(t *testing.T, ch *amqp.Channel, x, key string, mandatory bool, p amqp.Publishing) {
	t.Helper()
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), x, key, mandatory, false, p)
	require.NoError(t, err)
	ok, err := dc.WaitContext(context.Background())
	require.NoError(t, err)
	require.True(t, ok, "acked")
}

func queueDepth(t *testing.T, ch *amqp.Channel, q string) int {
	t.Helper()
	i, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	require.NoError(t, err)
	return i.Messages
}

func TestDedupExchange(t *testing.T) {
	warrenOnly(t, "message deduplication is a community plugin RabbitMQ 3.10.8 does not ship")
	b := startBroker(t, server.Config{})
	c, ch := b.channel(t)
	err := ch.ExchangeDeclare("d", "direct", false, false, false, false, amqp.Table{"x-message-deduplication": true})
	require.Equal(t, "PRECONDITION_FAILED - Missing or invalid argument, 'x-cache-size' must be an integer greater than 0", amqpErr(t, err, 406).Reason)
	ch, err = c.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("d", "direct", false, false, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(2)}))
	_, err = ch.QueueDeclare("dq", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("dq", "k", "d", false, nil))
	require.NoError(t, ch.Confirm(false))
	returns := ch.NotifyReturn(make(chan amqp.Return, 4))

	publishWait(t, ch, "d", "k", true, withID("a", body("1")))
	publishWait(t, ch, "d", "k", true, withID("a", body("2"))) // a duplicate: unroutable, returned
	select {
	case r := <-returns:
		require.Equal(t, uint16(312), r.ReplyCode)
		require.Equal(t, "2", string(r.Body))
	case <-time.After(5 * time.Second):
		t.Fatal("a mandatory duplicate is returned")
	}
	publishWait(t, ch, "d", "k", false, body("no id"))
	publishWait(t, ch, "d", "k", false, body("no id"))
	require.Equal(t, 3, queueDepth(t, ch, "dq"))

	// x-cache-size 2: b and c push a out, so a is new again; c is not.
	publishWait(t, ch, "d", "k", false, withID("b", body("b")))
	publishWait(t, ch, "d", "k", false, withID("c", body("c")))
	publishWait(t, ch, "d", "k", false, withID("c", body("c again")))
	publishWait(t, ch, "d", "k", false, withID("a", body("a again")))
	require.Equal(t, 6, queueDepth(t, ch, "dq"))

	// A message's own x-cache-ttl: the id is forgotten once it passes.
	p := withID("t", body("t"))
	p.Headers["x-cache-ttl"] = int32(50)
	publishWait(t, ch, "d", "k", false, p)
	eventually(t, func() bool {
		publishWait(t, ch, "d", "k", false, p)
		return queueDepth(t, ch, "dq") == 8
	}, "after its ttl the id is new again")
}

func TestDedupQueue(t *testing.T) {
	warrenOnly(t, "message deduplication is a community plugin RabbitMQ 3.10.8 does not ship")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("uq", false, false, false, false, amqp.Table{"x-message-deduplication": true})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publishWait(t, ch, "", "uq", false, withID("a", body("1")))
	publishWait(t, ch, "", "uq", false, withID("a", body("2")))
	publishWait(t, ch, "", "uq", false, withID("b", body("3")))
	require.Equal(t, 2, queueDepth(t, ch, "uq"))

	ds, err := ch.Consume("uq", "", false, false, false, false, nil)
	require.NoError(t, err)
	d := recv(t, ds)
	require.Equal(t, "1", string(d.Body))
	publishWait(t, ch, "", "uq", false, withID("a", body("while unacked")))
	require.NoError(t, d.Ack(false))
	recv(t, ds).Ack(false) // b
	none(t, ds)
	publishWait(t, ch, "", "uq", false, withID("a", body("after ack")))
	require.Equal(t, "after ack", string(recv(t, ds).Body))
}

// TestDedupSurvivesRestart: a durable exchange's cache and a durable
// queue's ids (its persistent messages) come back after a restart.
func TestDedupSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	setup := func() (*durableBroker, *amqp.Channel) {
		b := startDurable(t, dir)
		_, ch := b.channel(t)
		require.NoError(t, ch.ExchangeDeclare("dx", "fanout", true, false, false, false, amqp.Table{"x-message-deduplication": true, "x-cache-size": int32(100)}))
		_, err := ch.QueueDeclare("sink", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind("sink", "", "dx", false, nil))
		_, err = ch.QueueDeclare("dq", true, false, false, false, amqp.Table{"x-message-deduplication": true})
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		return b, ch
	}
	b, ch := setup()
	persistent := func(s string) amqp.Publishing { return amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(s)} }
	publishWait(t, ch, "dx", "", false, withID("x1", persistent("1")))
	publishWait(t, ch, "", "dq", false, withID("q1", persistent("1")))
	require.Equal(t, 1, queueDepth(t, ch, "sink"))
	require.Equal(t, 1, queueDepth(t, ch, "dq"))
	b.stop()

	_, ch = setup()
	publishWait(t, ch, "dx", "", false, withID("x1", persistent("2")))
	publishWait(t, ch, "dx", "", false, withID("x2", persistent("3")))
	publishWait(t, ch, "", "dq", false, withID("q1", persistent("2")))
	require.Equal(t, 2, queueDepth(t, ch, "sink"), "x1 remembered across the restart")
	require.Equal(t, 1, queueDepth(t, ch, "dq"), "q1 still in the queue")
}
