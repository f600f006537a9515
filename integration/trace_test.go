package integration

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// TestFirehoseTracing: with tracing on (PUT /api/vhosts/{vhost}
// {"tracing":true}), every publish is copied to amq.rabbitmq.trace as
// publish.<exchange> and every delivery (consume and get) as
// deliver.<queue>, with RabbitMQ's headers (checked against RabbitMQ 3.10.8).
func TestFirehoseTracing(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	conn, ch := b.channel(t)

	// amq.rabbitmq.trace is one of the seven default exchanges: a durable,
	// internal topic exchange that clients cannot publish to.
	x := api.expect(200, "GET", "/api/exchanges/{vhost}/amq.rabbitmq.trace", nil).obj(t)
	require.Equal(t, "topic", x["type"])
	require.Equal(t, true, x["internal"])
	require.Equal(t, true, x["durable"])

	_, err := ch.QueueDeclare("firehose", false, false, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("firehose", "#", "amq.rabbitmq.trace", false, nil))
	require.NoError(t, ch.ExchangeDeclare("tr.x", "direct", false, true, false, false, nil))
	_, err = ch.QueueDeclare("tr.q", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("tr.q", "k", "tr.x", false, nil))

	// Off: nothing is traced.
	publish(t, ch, "tr.x", "k", body("before"))
	require.Equal(t, "before", getBody(t, ch, "tr.q"))
	require.Equal(t, false, api.expect(200, "GET", "/api/vhosts/{vhost}", nil).obj(t)["tracing"])

	api.expect(204, "PUT", "/api/vhosts/{vhost}", map[string]any{"tracing": true})
	require.Equal(t, true, api.expect(200, "GET", "/api/vhosts/{vhost}", nil).obj(t)["tracing"])

	publish(t, ch, "tr.x", "k", amqp.Publishing{Body: []byte("hi"), ContentType: "text/plain", DeliveryMode: 2, Priority: 3,
		MessageId: "m1", Headers: amqp.Table{"CC": []any{"k2"}, "h": int32(1)}})
	publish(t, ch, "tr.x", "nowhere", body("lost"))
	d, ok, err := ch.Get("tr.q", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Nack(false, true))
	ds, err := ch.Consume("tr.q", "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "hi", string(recv(t, ds).Body))

	traces, err := ch.Consume("firehose", "", true, false, false, false, nil)
	require.NoError(t, err)
	wantProps := amqp.Table{"content_type": "text/plain", "delivery_mode": int32(2), "priority": int32(3), "message_id": "m1",
		"headers": amqp.Table{"CC": []any{"k2"}, "h": int32(1)}}
	node := api.expect(200, "GET", "/api/overview", nil).obj(t)["node"]
	common := func(tr amqp.Delivery) {
		t.Helper()
		require.Equal(t, "amq.rabbitmq.trace", tr.Exchange)
		require.Equal(t, node, tr.Headers["node"])
		require.Equal(t, b.vhost, tr.Headers["vhost"])
		require.Equal(t, "guest", tr.Headers["user"])
		require.Equal(t, int32(1), tr.Headers["channel"])
		require.Equal(t, conn.LocalAddr().String()+" -> "+conn.RemoteAddr().String(), tr.Headers["connection"])
		require.Equal(t, "tr.x", tr.Headers["exchange_name"])
	}

	tr := recv(t, traces)
	common(tr)
	require.Equal(t, "publish.tr.x", tr.RoutingKey)
	require.Equal(t, "hi", string(tr.Body))
	require.Equal(t, []any{"k", "k2"}, tr.Headers["routing_keys"])
	require.Equal(t, []any{"tr.q"}, tr.Headers["routed_queues"])
	require.Equal(t, wantProps, tr.Headers["properties"])
	require.NotContains(t, tr.Headers, "redelivered")

	tr = recv(t, traces)
	common(tr)
	require.Equal(t, "publish.tr.x", tr.RoutingKey)
	require.Equal(t, "lost", string(tr.Body))
	require.Contains(t, tr.Headers, "routed_queues")
	require.Empty(t, tr.Headers["routed_queues"])
	require.Equal(t, amqp.Table{}, tr.Headers["properties"])

	for _, redelivered := range []int32{0, 1} { // the get, then the consume after the nack
		tr = recv(t, traces)
		common(tr)
		require.Equal(t, "deliver.tr.q", tr.RoutingKey)
		require.Equal(t, "hi", string(tr.Body))
		require.Equal(t, redelivered, tr.Headers["redelivered"])
		require.Equal(t, []any{"k", "k2"}, tr.Headers["routing_keys"])
		require.Equal(t, wantProps, tr.Headers["properties"])
		require.NotContains(t, tr.Headers, "routed_queues")
	}
	// Consuming the trace queue is not traced itself.
	none(t, traces)

	// Publishing to the trace exchange is refused, as RabbitMQ does.
	_, ch3 := b.channel(t)
	closed := ch3.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, ch3.PublishWithContext(context.Background(), "amq.rabbitmq.trace", "x", false, false, body("no")))
	e := <-closed
	require.Equal(t, 403, e.Code)
	require.Equal(t, "ACCESS_REFUSED - cannot publish to internal exchange 'amq.rabbitmq.trace' in vhost '"+b.vhost+"'", e.Reason)

	// Off again: nothing more.
	api.expect(204, "PUT", "/api/vhosts/{vhost}", map[string]any{"tracing": "false"})
	publish(t, ch, "tr.x", "k", body("after"))
	require.Equal(t, "after", string(recv(t, ds).Body))
	none(t, traces)
}

// TestTracingAndGlobalParametersSurviveRestart: the vhost's tracing flag,
// its limits and the global parameters are stored.
func TestTracingAndGlobalParametersSurviveRestart(t *testing.T) {
	warrenOnly(t, "restarts Warren on its data directory")
	dir := t.TempDir()
	d := startDurable(t, dir)
	require.NoError(t, d.SetTracing("/", true))
	require.NoError(t, d.SetVhostLimit("/", "max-queues", 7))
	d.PutGlobalParameter("cluster_name", "kept")
	id, _ := d.GlobalParameter("internal_cluster_id")
	d.stop()

	d = startDurable(t, dir)
	require.True(t, d.Tracing("/"))
	l, _ := d.VhostLimits("/")
	require.Equal(t, map[string]int64{"max-queues": 7}, l)
	require.Equal(t, "kept", d.ClusterName())
	id2, _ := d.GlobalParameter("internal_cluster_id")
	require.Equal(t, id, id2)

	// And the restored tracer works.
	_, ch := d.channel(t)
	_, err := ch.QueueDeclare("firehose", false, false, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("firehose", "publish.#", "amq.rabbitmq.trace", false, nil))
	publish(t, ch, "amq.fanout", "", body("x"))
	traces, err := ch.Consume("firehose", "", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "publish.amq.fanout", recv(t, traces).RoutingKey)
}
