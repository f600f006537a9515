package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func declareDelayed(t *testing.T, ch *amqp.Channel, name, kind string, durable bool) {
	t.Helper()
	require.NoError(t, ch.ExchangeDeclare(name, "x-delayed-message", durable, false, false, false, amqp.Table{"x-delayed-type": kind}))
}

func publishDelayed(t *testing.T, ch *amqp.Channel, ex, key, body string, delay any, persistent bool) {
	t.Helper()
	p := amqp.Publishing{Body: []byte(body)}
	if delay != nil {
		p.Headers = amqp.Table{"x-delay": delay}
	}
	if persistent {
		p.DeliveryMode = amqp.Persistent
	}
	require.NoError(t, ch.PublishWithContext(context.Background(), ex, key, false, false, p))
}

func TestDelayedExchangeDeclare(t *testing.T) {
	warrenOnly(t, "the x-delayed-message exchange is built into Warren (a plugin RabbitMQ does not enable here)")
	b := startBroker(t, server.Config{})
	c, ch := b.channel(t)
	err := ch.ExchangeDeclare("d", "x-delayed-message", true, false, false, false, nil)
	ae := amqpErr(t, err, 406)
	require.Equal(t, "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type", ae.Reason)
	ch, _ = c.Channel()
	err = ch.ExchangeDeclare("d", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "x-delayed-message"})
	amqpErr(t, err, 406)
	ch, _ = c.Channel()
	declareDelayed(t, ch, "d", "topic", true)
	declareDelayed(t, ch, "d", "topic", true)
	err = ch.ExchangeDeclare("d", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "direct"})
	ae = amqpErr(t, err, 406)
	require.Contains(t, ae.Reason, "inequivalent arg 'x-delayed-type'")
	ch, _ = c.Channel()
	err = ch.ExchangeDeclare("d2", "x-delayed-message", true, false, false, false, amqp.Table{"x-delayed-type": "no-such-type"})
	ae = amqpErr(t, err, 503)
	require.Equal(t, "COMMAND_INVALID - unknown exchange type 'no-such-type'", ae.Reason)
	require.True(t, c.IsClosed(), "an unknown type closes the connection")
}

func TestDelayedExchangeHoldsAndOrders(t *testing.T) {
	warrenOnly(t, "the x-delayed-message exchange is built into Warren (a plugin RabbitMQ does not enable here)")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	declareDelayed(t, ch, "later", "direct", false)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "k", "later", false, nil))
	ds, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))

	start := time.Now()
	delays := map[string]time.Duration{"d300": 300 * time.Millisecond, "d100": 100 * time.Millisecond,
		"s200": 200 * time.Millisecond, "f250": 250 * time.Millisecond}
	publishDelayed(t, ch, "later", "k", "in-a-minute", int32(60000), false)
	publishDelayed(t, ch, "later", "k", "d300", int32(300), false)
	publishDelayed(t, ch, "later", "k", "d100", int64(100), false)
	publishDelayed(t, ch, "later", "k", "s200", "200", false)    // a string, as the plugin takes it
	publishDelayed(t, ch, "later", "k", "f250", 250.7, false)    // a float
	publishDelayed(t, ch, "later", "k", "now", nil, false)       // no header: at once
	publishDelayed(t, ch, "later", "k", "zero", int32(0), false) // 0: at once
	// Confirms do not wait for the delay (one is a minute away).
	for range 7 {
		select {
		case cf := <-confirms:
			require.True(t, cf.Ack)
		case <-time.After(10 * time.Second):
			t.Fatal("confirm waited for the delay")
		}
	}
	x := api.expect(200, http.MethodGet, "/api/exchanges/{vhost}/later", nil).obj(t)
	require.LessOrEqual(t, x["messages_delayed"], 5.0)
	require.GreaterOrEqual(t, x["messages_delayed"], 1.0)
	require.Equal(t, "x-delayed-message", x["type"])

	var got []string
	for range 6 {
		d := recv(t, ds)
		got = append(got, string(d.Body))
		if want, ok := delays[string(d.Body)]; ok {
			require.GreaterOrEqual(t, time.Since(start), want, "%s came early", d.Body)
			require.Contains(t, d.Headers, "x-delay", "the header is delivered unchanged")
		}
	}
	require.Equal(t, []string{"now", "zero", "d100", "s200", "f250", "d300"}, got)
	eventually(t, func() bool {
		return api.expect(200, http.MethodGet, "/api/exchanges/{vhost}/later", nil).obj(t)["messages_delayed"] == 1.0
	}, "only the minute-long one pending")
}

func TestDelayedExchangeRoutesWithBindingsAtDueTime(t *testing.T) {
	warrenOnly(t, "the x-delayed-message exchange is built into Warren (a plugin RabbitMQ does not enable here)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	declareDelayed(t, ch, "fan", "fanout", false)
	// Published with no binding at all, mandatory: not returned (it has not
	// failed to route yet), and routed by the bindings made before it is due.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	require.NoError(t, ch.PublishWithContext(context.Background(), "fan", "", true, false,
		amqp.Publishing{Body: []byte("x"), Headers: amqp.Table{"x-delay": int32(200)}}))
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "", "fan", false, nil))
	ds, err := ch.Consume(q.Name, "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "x", string(recv(t, ds).Body))
	select {
	case r := <-returns:
		t.Fatalf("returned: %v", r)
	default:
	}
}

// TestDelayedExchangeThroughExchangeBinding: a message reaching a delayed
// exchange through an exchange-to-exchange binding is held there too (as
// the plugin does), while the source's other bindings route it at once;
// under confirms it is acked (durable: after the store has it), and a
// mandatory one is not returned.
func TestDelayedExchangeThroughExchangeBinding(t *testing.T) {
	warrenOnly(t, "the x-delayed-message exchange is built into Warren (a plugin RabbitMQ does not enable here)")
	b := startDurable(t, t.TempDir())
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("src", "fanout", true, false, false, false, nil))
	declareDelayed(t, ch, "later", "fanout", true)
	require.NoError(t, ch.ExchangeBind("later", "", "src", false, nil))
	for _, q := range []string{"now", "late"} {
		_, err := ch.QueueDeclare(q, true, false, false, false, nil)
		require.NoError(t, err)
	}
	require.NoError(t, ch.QueueBind("now", "", "src", false, nil))
	require.NoError(t, ch.QueueBind("late", "", "later", false, nil))
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	returns := ch.NotifyReturn(make(chan amqp.Return, 2))

	start := time.Now()
	require.NoError(t, ch.PublishWithContext(context.Background(), "src", "", true, false, amqp.Publishing{
		Body: []byte("both"), DeliveryMode: amqp.Persistent, Headers: amqp.Table{"x-delay": int32(400)}}))
	require.True(t, (<-confirms).Ack)
	require.Equal(t, "both", getBody(t, ch, "now"), "the source's own binding routes at once")
	require.Equal(t, "", getBody(t, ch, "late"), "held by the delayed exchange")
	ds, err := ch.Consume("late", "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "both", string(recv(t, ds).Body))
	require.GreaterOrEqual(t, time.Since(start), 400*time.Millisecond)

	// Only the delayed exchange on the way: held, confirmed, not returned.
	require.NoError(t, ch.QueueUnbind("now", "", "src", nil))
	require.NoError(t, ch.PublishWithContext(context.Background(), "src", "", true, false, amqp.Publishing{
		Body: []byte("only-late"), Headers: amqp.Table{"x-delay": int32(100)}}))
	require.True(t, (<-confirms).Ack)
	require.Equal(t, "only-late", string(recv(t, ds).Body))
	select {
	case r := <-returns:
		t.Fatalf("returned: %v", r)
	default:
	}
}

func TestDelayedExchangeSurvivesRestartInBoundedMemory(t *testing.T) {
	warrenOnly(t, "the x-delayed-message exchange is built into Warren; restarts it on its data directory")
	dir := t.TempDir()
	// A window of 50 messages in memory: 600 pending means most wait on
	// disk and are read back in due order.
	cfg := server.Config{DelayWindow: 50}
	b := startDurableCfg(t, dir, cfg)
	c, err := amqp.Dial(b.url)
	require.NoError(t, err)
	ch, err := c.Channel()
	require.NoError(t, err)
	declareDelayed(t, ch, "retry", "direct", true)
	declareDelayed(t, ch, "gone", "direct", false)
	_, err = ch.QueueDeclare("retry.q", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("retry.q", "r", "retry", false, nil))
	require.NoError(t, ch.QueueBind("retry.q", "r", "gone", false, nil))
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	rng := rand.New(rand.NewPCG(1, 2))
	due := map[string]time.Time{}
	publishStart := time.Now()
	for i := range 600 {
		d := 3000 + rng.IntN(1000)
		body := fmt.Sprintf("m%03d", i)
		due[body] = time.Now().Add(time.Duration(d) * time.Millisecond)
		publishDelayed(t, ch, "retry", "r", body, int32(d), i%2 == 0)
	}
	publishDelayed(t, ch, "gone", "r", "from-transient-exchange", int32(1500), true)
	for range 601 {
		require.True(t, (<-confirms).Ack)
	}
	// The broker stamps due times on receipt; how far its stamps can trail
	// ours is bounded by how long publishing took.
	jitter := time.Since(publishStart) + 5*time.Millisecond
	t.Logf("published 600 delayed messages in %v", jitter)
	c.Close()
	b.stop()

	b = startDurableCfg(t, dir, cfg)
	api := startAPI(t, b.broker)
	x := api.expect(200, http.MethodGet, "/api/exchanges/{vhost}/retry", nil).obj(t)
	require.Equal(t, 600.0, x["messages_delayed"], "every pending message survived the restart")
	api.expect(404, http.MethodGet, "/api/exchanges/{vhost}/gone", nil)
	_, ch = b.channel(t)
	ds, err := ch.Consume("retry.q", "", true, false, false, false, nil)
	require.NoError(t, err)
	var prev time.Time
	for i := range 600 {
		d := recv(t, ds)
		body := string(d.Body)
		require.Contains(t, due, body)
		require.False(t, time.Now().Before(due[body].Add(-2*time.Millisecond)), "%s came before it was due", body)
		// Due order (the delays spread over a second, in random order).
		require.False(t, due[body].Before(prev.Add(-jitter)), "message %d (%s) out of due order by %v", i, body, prev.Sub(due[body]))
		prev = due[body]
		delete(due, body)
	}
	none(t, ds)
	require.Empty(t, due)
}
