package integration

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestPublisherConfirms(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	require.NoError(t, ch.Confirm(false))
	require.NoError(t, ch.Confirm(false), "confirm.select twice is fine")
	const n = 500
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := 0; i < n; i++ {
		publish(t, ch, "", q, body("m"))
	}
	for i := 1; i <= n; i++ {
		c := <-confirms
		require.True(t, c.Ack)
		require.Equal(t, uint64(i), c.DeliveryTag)
	}
}

func TestRejectPublishNacks(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("full", false, false, false, false, amqp.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	publish(t, ch, "", "full", body("1"))
	publish(t, ch, "", "full", body("2"))
	require.True(t, (<-confirms).Ack)
	c := <-confirms
	require.False(t, c.Ack)
	require.Equal(t, uint64(2), c.DeliveryTag)
}

func TestTransactions(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	require.NoError(t, ch.Tx())
	publish(t, ch, "", q, body("tx"))
	require.Equal(t, "", getBody(t, ch, q), "invisible before commit")
	require.NoError(t, ch.TxCommit())
	d, ok, err := ch.Get(q, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Ack(false))
	require.NoError(t, ch.TxRollback())
	// The rolled-back ack leaves the message unacked, not requeued.
	p, _ := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	require.Equal(t, 0, p.Messages)
	publish(t, ch, "", q, body("gone"))
	require.NoError(t, ch.TxRollback())
	require.NoError(t, ch.TxCommit())
	p, _ = ch.QueueDeclarePassive(q, false, false, false, false, nil)
	require.Equal(t, 0, p.Messages)

	amqpErr(t, ch.Confirm(false), amqp.PreconditionFailed)
	ch, _ = conn.Channel()
	amqpErr(t, ch.TxCommit(), amqp.PreconditionFailed)
	ch, _ = conn.Channel()
	require.NoError(t, ch.Confirm(false))
	amqpErr(t, ch.Tx(), amqp.PreconditionFailed)
}

func TestTxMandatoryReturnAtCommit(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	require.NoError(t, ch.Tx())
	require.NoError(t, ch.PublishWithContext(context.Background(), "amq.direct", "none", true, false, body("r")))
	select {
	case <-returns:
		t.Fatal("returned before commit")
	default:
	}
	require.NoError(t, ch.TxCommit())
	select {
	case r := <-returns:
		require.Equal(t, "r", string(r.Body))
	case <-timeout():
		t.Fatal("no return at commit")
	}
}

func TestDeadLetterOnRejectWithXDeath(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", false, false, false, false, nil))
	declareQ(t, ch, "dead")
	require.NoError(t, ch.QueueBind("dead", "", "dlx", false, nil))
	_, err := ch.QueueDeclare("work", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	publish(t, ch, "", "work", body("poison"))
	d, ok, err := ch.Get("work", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Reject(false))
	var dd amqp.Delivery
	eventually(t, func() bool { dd, ok, _ = ch.Get("dead", true); return ok }, "dead-lettered")
	deaths := dd.Headers["x-death"].([]any)
	require.Len(t, deaths, 1)
	e := deaths[0].(amqp.Table)
	require.Equal(t, int64(1), e["count"])
	require.Equal(t, "rejected", e["reason"])
	require.Equal(t, "work", e["queue"])
	require.Equal(t, "", e["exchange"])
	require.Equal(t, []any{"work"}, e["routing-keys"])
	require.Equal(t, "work", dd.Headers["x-first-death-queue"])
	require.Equal(t, "rejected", dd.Headers["x-first-death-reason"])
}

func TestMessageTTLExpiresAndDeadLetters(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", false, false, false, false, nil))
	declareQ(t, ch, "expired")
	require.NoError(t, ch.QueueBind("expired", "", "dlx", false, nil))
	_, err := ch.QueueDeclare("ttl", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "dlx", "x-message-ttl": int32(50)})
	require.NoError(t, err)
	publish(t, ch, "", "ttl", amqp.Publishing{Expiration: "10", Body: []byte("short")})
	var d amqp.Delivery
	var ok bool
	eventually(t, func() bool { d, ok, _ = ch.Get("expired", true); return ok }, "expired and dead-lettered")
	require.Equal(t, "", d.Expiration, "expiration removed")
	e := d.Headers["x-death"].([]any)[0].(amqp.Table)
	require.Equal(t, "expired", e["reason"])
	require.Equal(t, "10", e["original-expiration"])

	conn := b.dial(t)
	for _, exp := range []string{"abc", "-1", "1.5"} {
		bad, _ := conn.Channel()
		closed := bad.NotifyClose(make(chan *amqp.Error, 1))
		publish(t, bad, "", "ttl", amqp.Publishing{Expiration: exp, Body: []byte("x")})
		select {
		case e := <-closed:
			require.Equal(t, amqp.PreconditionFailed, e.Code, exp)
			require.Contains(t, e.Reason, "invalid expiration")
		case <-timeout():
			t.Fatalf("expiration %q accepted", exp)
		}
	}
}
