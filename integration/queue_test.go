package integration

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestQueueDeclareServerNamedAndPassive(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(q.Name, "amq.gen-"), q.Name)
	publish(t, ch, "", q.Name, body("a"))
	// RabbitMQ's queue may answer the count ahead of the publish.
	eventually(t, func() bool {
		p, err := ch.QueueDeclarePassive(q.Name, false, false, true, false, nil)
		require.NoError(t, err)
		return p.Messages == 1
	}, "one message counted")

	// Redeclaring your own amq.gen- queue by name is still 403.
	amqpErr(t, func() error { _, err := ch.QueueDeclare(q.Name, false, false, true, false, nil); return err }(), amqp.AccessRefused)
	ch, _ = conn.Channel()
	_, err = ch.QueueDeclarePassive("missing", false, false, false, false, nil)
	amqpErr(t, err, amqp.NotFound)
}

func TestQueueDeclareEquivalenceAndArguments(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	_, err := ch.QueueDeclare("q", false, false, false, false, amqp.Table{"x-max-length": int32(5000), "unknown": "ignored"})
	require.NoError(t, err)
	// int64 5000 equals int32 5000; unknown arguments are not compared.
	_, err = ch.QueueDeclare("q", false, false, false, false, amqp.Table{"x-max-length": int64(5000)})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("q", true, false, false, false, amqp.Table{"x-max-length": int64(5000)})
	ae := amqpErr(t, err, amqp.PreconditionFailed)
	require.Contains(t, ae.Reason, "inequivalent arg 'durable'")

	for _, args := range []amqp.Table{
		{"x-message-ttl": int32(-1)},
		{"x-message-ttl": "100"},
		{"x-expires": int32(0)},
		{"x-max-length": int32(-1)},
		{"x-overflow": "explode"},
		{"x-max-priority": int32(256)},
		{"x-dead-letter-routing-key": "k"},
	} {
		ch, _ = conn.Channel()
		_, err = ch.QueueDeclare("bad", false, false, false, false, args)
		amqpErr(t, err, amqp.PreconditionFailed)
	}
}

func TestExclusiveQueues(t *testing.T) {
	b := startBroker(t, server.Config{})
	owner, ch := b.channel(t)
	_, err := ch.QueueDeclare("mine", false, false, true, false, nil)
	require.NoError(t, err)

	other, och := b.channel(t)
	_, err = och.QueueDeclarePassive("mine", false, false, true, false, nil)
	amqpErr(t, err, amqp.ResourceLocked)
	och, _ = other.Channel()
	_, err = och.Consume("mine", "", true, false, false, false, nil)
	amqpErr(t, err, amqp.ResourceLocked)
	// Publishing to it from elsewhere is allowed.
	och, _ = other.Channel()
	publish(t, och, "", "mine", body("hi"))
	eventually(t, func() bool { return getBody(t, ch, "mine") == "hi" }, "published from another connection")

	require.NoError(t, owner.Close())
	och, _ = other.Channel()
	eventually(t, func() bool {
		_, err := och.QueueDeclarePassive("mine", false, false, true, false, nil)
		if err != nil {
			och, _ = other.Channel()
			return true
		}
		return false
	}, "exclusive queue dies with its connection")
}

func TestAutoDeleteQueueGoesWithLastConsumer(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("ad", false, true, false, false, nil)
	require.NoError(t, err)
	_, err = ch.Consume("ad", "c1", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.Consume("ad", "c2", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Cancel("c1", false))
	_, err = ch.QueueDeclarePassive("ad", false, true, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Cancel("c2", false))
	_, err = ch.QueueDeclarePassive("ad", false, true, false, false, nil)
	amqpErr(t, err, amqp.NotFound)
}

func TestPurgeAndDeleteConditions(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	_, err := ch.QueueDeclare("q", false, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		publish(t, ch, "", "q", body("x"))
	}
	eventually(t, func() bool {
		q, _ := ch.QueueDeclarePassive("q", false, false, false, false, nil)
		return q.Messages == 3
	}, "3 ready")
	_, err = ch.QueueDelete("q", false, true, false)
	amqpErr(t, err, amqp.PreconditionFailed)
	ch, _ = conn.Channel()
	n, err := ch.QueuePurge("q", false)
	require.NoError(t, err)
	require.Equal(t, 3, n)
	_, err = ch.Consume("q", "c", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDelete("q", true, false, false)
	amqpErr(t, err, amqp.PreconditionFailed)
	ch, _ = conn.Channel()
	publish(t, ch, "", "q", body("y"))
	_, err = ch.QueueDelete("q", false, false, false)
	require.NoError(t, err)
	n, err = ch.QueueDelete("q", false, false, false)
	require.NoError(t, err, "deleting a missing queue succeeds")
	require.Equal(t, 0, n)
}

func TestEmptyQueueNameMeansLastDeclared(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	_, err := ch.Consume("", "", true, false, false, false, nil)
	ae := amqpErr(t, err, amqp.NotFound)
	require.Contains(t, ae.Reason, "no previously declared queue")
	ch, _ = conn.Channel()
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("", "k", "amq.direct", false, nil))
	publish(t, ch, "amq.direct", "k", body("via-last"))
	require.Equal(t, "via-last", getBody(t, ch, q.Name))
}

func TestQueueDeleteCancelsConsumers(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("doomed", false, false, false, false, nil)
	require.NoError(t, err)
	cancels := ch.NotifyCancel(make(chan string, 1))
	_, err = ch.Consume("doomed", "ctag", true, false, false, false, nil)
	require.NoError(t, err)
	_, ch2 := b.channel(t)
	_, err = ch2.QueueDelete("doomed", false, false, false)
	require.NoError(t, err)
	select {
	case tag := <-cancels:
		require.Equal(t, "ctag", tag)
	case <-timeout():
		t.Fatal("no basic.cancel from the broker")
	}
}
