package integration

import (
	"context"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	wire "github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

func TestPredeclaredExchanges(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	for _, x := range []string{"amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"} {
		require.NoError(t, ch.ExchangeDeclarePassive(x, "ignored", false, false, false, false, nil), x)
	}
	// Redeclaring an amq.* exchange with its own properties is allowed.
	require.NoError(t, ch.ExchangeDeclare("amq.direct", "direct", true, false, false, false, nil))
}

func TestExchangeDeclareErrors(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("e1", "direct", false, false, false, false, nil))
	amqpErr(t, ch.ExchangeDeclare("e1", "fanout", false, false, false, false, nil), amqp.PreconditionFailed)

	ch, _ = conn.Channel()
	amqpErr(t, ch.ExchangeDeclarePassive("missing", "direct", false, false, false, false, nil), amqp.NotFound)
	ch, _ = conn.Channel()
	amqpErr(t, ch.ExchangeDeclare("amq.mine", "direct", false, false, false, false, nil), amqp.AccessRefused)
	ch, _ = conn.Channel()
	amqpErr(t, ch.ExchangeDeclare("", "direct", false, false, false, false, nil), amqp.AccessRefused)
	ch, _ = conn.Channel()
	amqpErr(t, ch.ExchangeDelete("amq.direct", false, false), amqp.AccessRefused)
	ch, _ = conn.Channel()
	require.NoError(t, ch.ExchangeDelete("never-declared", false, false), "deleting a missing exchange succeeds")

	// An unknown type closes the whole connection with 503.
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	err := ch.ExchangeDeclare("e2", "no-such-type", false, false, false, false, nil)
	amqpErr(t, err, amqp.CommandInvalid)
	select {
	case e := <-closed:
		require.Equal(t, amqp.CommandInvalid, e.Code)
	case <-time.After(5 * time.Second):
		t.Fatal("connection not closed")
	}
}

func TestExchangeDeleteIfUnused(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("x", "fanout", false, false, false, false, nil))
	q, _ := ch.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, ch.QueueBind(q.Name, "", "x", false, nil))
	amqpErr(t, ch.ExchangeDelete("x", true, false), amqp.PreconditionFailed)
	ch, _ = conn.Channel()
	require.NoError(t, ch.ExchangeDelete("x", false, false))
	amqpErr(t, ch.ExchangeDeclarePassive("x", "fanout", false, false, false, false, nil), amqp.NotFound)
}

func TestDirectTopicFanoutHeadersRouting(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	declare := func(name, kind string) {
		require.NoError(t, ch.ExchangeDeclare(name, kind, false, false, false, false, nil))
	}
	q := func(name string) string {
		_, err := ch.QueueDeclare(name, false, false, false, false, nil)
		require.NoError(t, err)
		return name
	}
	declare("d", "direct")
	declare("t", "topic")
	declare("f", "fanout")
	declare("h", "headers")
	require.NoError(t, ch.QueueBind(q("qd"), "k", "d", false, nil))
	require.NoError(t, ch.QueueBind(q("qt1"), "a.*.c", "t", false, nil))
	require.NoError(t, ch.QueueBind(q("qt2"), "a.#", "t", false, nil))
	require.NoError(t, ch.QueueBind("qt2", "#.c", "t", false, nil)) // overlaps: one copy
	require.NoError(t, ch.QueueBind(q("qf1"), "", "f", false, nil))
	require.NoError(t, ch.QueueBind(q("qf2"), "ignored", "f", false, nil))
	require.NoError(t, ch.QueueBind(q("qh"), "", "h", false, amqp.Table{"x-match": "any", "a": "1", "b": int32(2)}))

	publish(t, ch, "d", "k", body("direct"))
	publish(t, ch, "d", "K", body("nowhere"))
	publish(t, ch, "t", "a.b.c", body("topic"))
	publish(t, ch, "t", "a..c", body("empty-word"))
	publish(t, ch, "f", "x", body("fan"))
	publish(t, ch, "h", "", amqp.Publishing{Headers: amqp.Table{"b": int64(2)}, Body: []byte("hdr")})
	publish(t, ch, "h", "", amqp.Publishing{Headers: amqp.Table{"b": "2"}, Body: []byte("no-hdr")})
	publish(t, ch, "", "qd", body("default"))

	require.Equal(t, "direct", getBody(t, ch, "qd"))
	require.Equal(t, "default", getBody(t, ch, "qd"))
	require.Equal(t, "", getBody(t, ch, "qd"))
	require.Equal(t, "topic", getBody(t, ch, "qt1"))
	require.Equal(t, "empty-word", getBody(t, ch, "qt1"))
	require.Equal(t, "topic", getBody(t, ch, "qt2"))
	require.Equal(t, "empty-word", getBody(t, ch, "qt2"))
	require.Equal(t, "", getBody(t, ch, "qt2"), "overlapping bindings deliver one copy")
	require.Equal(t, "fan", getBody(t, ch, "qf1"))
	require.Equal(t, "fan", getBody(t, ch, "qf2"))
	require.Equal(t, "hdr", getBody(t, ch, "qh"))
	require.Equal(t, "", getBody(t, ch, "qh"))
}

func TestExchangeToExchangeOneCopyPerQueue(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	for _, x := range []string{"src", "mid1", "mid2"} {
		require.NoError(t, ch.ExchangeDeclare(x, "fanout", false, false, false, false, nil))
	}
	// A diamond and a cycle.
	require.NoError(t, ch.ExchangeBind("mid1", "", "src", false, nil))
	require.NoError(t, ch.ExchangeBind("mid2", "", "src", false, nil))
	require.NoError(t, ch.ExchangeBind("src", "", "mid2", false, nil))
	_, err := ch.QueueDeclare("q", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("q", "", "mid1", false, nil))
	require.NoError(t, ch.QueueBind("q", "", "mid2", false, nil))
	publish(t, ch, "src", "rk", body("once"))
	d, ok, err := ch.Get("q", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "src", d.Exchange, "the delivery names the exchange published to")
	require.Equal(t, "", getBody(t, ch, "q"))

	require.NoError(t, ch.ExchangeUnbind("mid1", "", "src", false, nil))
	require.NoError(t, ch.ExchangeUnbind("mid2", "", "src", false, nil))
	publish(t, ch, "src", "rk", body("gone"))
	require.Equal(t, "", getBody(t, ch, "q"))
}

func TestMandatoryReturnComesBeforeConfirm(t *testing.T) {
	// The order on the wire, which no client library exposes: a raw client.
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	r.openDefault()
	r.send(1, &wire.ChannelOpen{})
	r.next()
	r.send(1, &wire.ConfirmSelect{})
	r.next()
	r.send(1, &wire.BasicPublish{Exchange: "amq.direct", RoutingKey: "nobody", Mandatory: true})
	r.write(wire.AppendContent(nil, 1, wire.AppendContentHeader(nil, 4, &wire.Properties{}), []byte("lost"), 4096))
	ret, ok := r.next().(*wire.BasicReturn)
	require.True(t, ok, "basic.return first")
	require.Equal(t, uint16(312), ret.ReplyCode)
	require.Equal(t, "NO_ROUTE", ret.ReplyText)
	// Its content header and body, then the confirm.
	for i := 0; i < 2; i++ {
		f, err := r.fr.ReadFrame()
		require.NoError(t, err)
		require.NotEqual(t, uint8(wire.FrameMethod), f.Type)
	}
	ack, ok := r.next().(*wire.BasicAck)
	require.True(t, ok, "then basic.ack: unroutable messages are acked")
	require.Equal(t, uint64(1), ack.DeliveryTag)
}

func TestAlternateExchange(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("ae", "fanout", false, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare("main", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "ae"}))
	_, err := ch.QueueDeclare("unrouted", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("unrouted", "", "ae", false, nil))
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	require.NoError(t, ch.PublishWithContext(context.Background(), "main", "nokey", true, false, body("to-ae")))
	eventually(t, func() bool { return getBody(t, ch, "unrouted") == "to-ae" }, "AE delivery")
	select {
	case <-returns:
		t.Fatal("a message the AE delivered must not be returned")
	default:
	}
}

func TestInternalAndAutoDeleteExchanges(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("int", "fanout", false, false, true, false, nil))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, ch, "int", "", body("x"))
	_, err := ch.QueueDeclare("", false, false, true, false, nil) // sync: surfaces the async close
	amqpErr(t, closeReason(t, closed, err), amqp.AccessRefused)

	ch, _ = conn.Channel()
	require.NoError(t, ch.ExchangeDeclare("ad", "fanout", false, true, false, false, nil))
	q, _ := ch.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, ch.QueueBind(q.Name, "", "ad", false, nil))
	require.NoError(t, ch.ExchangeDeclarePassive("ad", "fanout", false, true, false, false, nil))
	require.NoError(t, ch.QueueUnbind(q.Name, "", "ad", nil))
	amqpErr(t, ch.ExchangeDeclarePassive("ad", "fanout", false, true, false, false, nil), amqp.NotFound)
}

func TestPublishToMissingExchangeClosesChannel(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, ch, "nope", "", body("x"))
	select {
	case e := <-closed:
		require.Equal(t, amqp.NotFound, e.Code)
		require.Equal(t, "NOT_FOUND - no exchange 'nope' in vhost '"+b.vhost+"'", e.Reason)
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed")
	}
	// The connection and other channels keep working.
	ch2, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch2.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, err)
}

func TestCCAndBCC(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	for _, q := range []string{"main", "cc", "bcc"} {
		_, err := ch.QueueDeclare(q, false, false, false, false, nil)
		require.NoError(t, err)
	}
	publish(t, ch, "", "main", amqp.Publishing{Headers: amqp.Table{"CC": []any{"cc"}, "BCC": []any{"bcc"}}, Body: []byte("m")})
	for _, q := range []string{"main", "cc", "bcc"} {
		d, ok, err := ch.Get(q, true)
		require.NoError(t, err)
		require.True(t, ok, q)
		require.Equal(t, []any{"cc"}, d.Headers["CC"], "CC stays")
		_, hasBCC := d.Headers["BCC"]
		require.False(t, hasBCC, "BCC is stripped")
	}
}

func TestHeadersBindingBadXMatch(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q, _ := ch.QueueDeclare("", false, false, true, false, nil)
	amqpErr(t, ch.QueueBind(q.Name, "", "amq.headers", false, amqp.Table{"x-match": "some"}), amqp.PreconditionFailed)
}
