package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/shovel"
)

// startShovels gives an in-process broker its shovel manager (cmd/warren
// makes one for every broker); RabbitMQ runs its own (make test-oracle
// enables rabbitmq_shovel).
func startShovels(t *testing.T, b *broker) {
	t.Helper()
	if b.Server == nil {
		return
	}
	m := shovel.New(b.Server, shovel.Options{Logger: zaptest.NewLogger(t, zaptest.Level(zapWarn))})
	m.Start()
	t.Cleanup(m.Close) // before the broker's own cleanup (cleanups run last first)
}

// awaitShovel polls /api/shovels/{vhost} until shovel name's key holds
// want, and returns the shovel.
func awaitShovel(t *testing.T, api *apiClient, name, key string, want any) map[string]any {
	t.Helper()
	var found map[string]any
	eventually(t, func() bool {
		for _, s := range api.expect(200, http.MethodGet, "/api/shovels/{vhost}", nil).list(t) {
			if m := s.(map[string]any); m["name"] == name && m[key] == want {
				found = m
				return true
			}
		}
		return false
	}, fmt.Sprintf("shovel %s: %s is %v", name, key, want))
	return found
}

// localURI is RabbitMQ's URI of the broker the shovel runs in, on vhost.
func localURI(vhost string) string { return "amqp:///" + url.PathEscape(vhost) }

// queueLength reads a queue's ready count with a passive declare on a
// channel of its own (-1 when the queue does not exist).
func queueLength(t *testing.T, c *amqp.Connection, q string) int {
	t.Helper()
	ch, err := c.Channel()
	require.NoError(t, err)
	defer ch.Close()
	qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return qi.Messages
}

func TestShovelMovesAQueueWithinABroker(t *testing.T) {
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	c, ch := b.channel(t)
	src, dst := b.name("shovel-src"), b.name("shovel-dst")
	_, err := ch.QueueDeclare(src, true, false, false, false, nil)
	require.NoError(t, err)
	const n = 500
	for i := range n {
		publish(t, ch, "", src, amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(strconv.Itoa(i)),
			Headers: amqp.Table{"h": "v"}, MessageId: "m" + strconv.Itoa(i)})
	}
	api.expect(201, http.MethodPut, "/api/parameters/shovel/{vhost}/mover", map[string]any{"value": map[string]any{
		"src-uri": localURI(b.vhost), "src-queue": src, "dest-uri": localURI(b.vhost), "dest-queue": dst,
		"dest-add-forward-headers": true, "dest-publish-properties": map[string]any{"priority": 3},
	}})
	eventually(t, func() bool { return queueLength(t, c, dst) == n }, "every message moved")
	require.Equal(t, 0, queueLength(t, c, src))
	st := awaitShovel(t, api, "mover", "state", "running")
	require.Equal(t, "dynamic", st["type"])
	require.Equal(t, localURI(b.vhost), st["src_uri"])
	require.Equal(t, src, st["src_queue"])
	require.Equal(t, dst, st["dest_queue"])
	require.Equal(t, "amqp091", st["src_protocol"])
	list := api.expect(200, http.MethodGet, "/api/shovels/{vhost}", nil).list(t)
	require.Len(t, list, 1)
	// RabbitMQ 3.10 answers the one-shovel path with the vhost's list.
	require.Equal(t, list, api.expect(200, http.MethodGet, "/api/shovels/vhost/{vhost}/mover", nil).list(t))
	api.expect(404, http.MethodGet, "/api/shovels/vhost/{vhost}/nothere", nil)
	api.expect(204, http.MethodDelete, "/api/shovels/vhost/{vhost}/mover/restart", nil)
	api.expect(404, http.MethodDelete, "/api/shovels/vhost/{vhost}/nothere/restart", nil)
	awaitShovel(t, api, "mover", "state", "running")

	d, ok, err := ch.Get(dst, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "0", string(d.Body), "order kept")
	require.Equal(t, "m0", d.MessageId)
	require.Equal(t, uint8(3), d.Priority, "dest-publish-properties")
	require.Equal(t, amqp.Persistent, d.DeliveryMode)
	require.Equal(t, "v", d.Headers["h"])
	hops, _ := d.Headers["x-shovelled"].([]any)
	require.Len(t, hops, 1, "%v", d.Headers)
	hop := hops[0].(amqp.Table)
	require.Equal(t, "mover", hop["shovel-name"])
	require.Equal(t, "dynamic", hop["shovel-type"])
	require.Equal(t, b.vhost, hop["shovel-vhost"])
	require.Equal(t, src, hop["src-queue"])
	require.Equal(t, dst, hop["dest-queue"])

	// The parameter is listed, exported, and its deletion stops the shovel.
	p := api.expect(200, http.MethodGet, "/api/parameters/shovel/{vhost}/mover", nil).obj(t)
	require.Equal(t, "shovel", p["component"])
	defs := api.expect(200, http.MethodGet, "/api/definitions/{vhost}", nil).obj(t)
	found := false
	for _, it := range defs["parameters"].([]any) {
		found = found || it.(map[string]any)["component"] == "shovel"
	}
	require.True(t, found, "shovel in definitions: %v", defs["parameters"])
	api.expect(204, http.MethodDelete, "/api/parameters/shovel/{vhost}/mover", nil)
	eventually(t, func() bool {
		return len(api.expect(200, http.MethodGet, "/api/shovels/{vhost}", nil).list(t)) == 0
	}, "shovel gone")
	publish(t, ch, "", src, body("after"))
	time.Sleep(200 * time.Millisecond)
	require.Equal(t, 1, queueLength(t, c, src), "a deleted shovel moves nothing")
}

func TestShovelDeleteAfterQueueLength(t *testing.T) {
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	c, ch := b.channel(t)
	src, dst := b.name("drain-src"), b.name("drain-dst")
	_, err := ch.QueueDeclare(src, true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 50 {
		publish(t, ch, "", src, body(strconv.Itoa(i)))
	}
	// queue-length is what the queue holds when the shovel starts.
	eventually(t, func() bool { return queueLength(t, c, src) == 50 }, "published")
	api.expect(201, http.MethodPut, "/api/parameters/shovel/{vhost}/drain", map[string]any{"value": map[string]any{
		"src-uri": localURI(b.vhost), "src-queue": src, "dest-uri": []any{localURI(b.vhost)}, "dest-queue": dst,
		"src-delete-after": "queue-length", "src-prefetch-count": 7,
	}})
	eventually(t, func() bool {
		return api.do(http.MethodGet, "/api/parameters/shovel/{vhost}/drain", nil).status == 404
	}, "the shovel deletes itself once it moved the queue's length")
	require.Equal(t, 50, queueLength(t, c, dst))
	require.Equal(t, 0, queueLength(t, c, src))
}

func TestShovelFromAnExchangeWithANumericDeleteAfter(t *testing.T) {
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	c, ch := b.channel(t)
	x, dst := b.name("shovel-x"), b.name("from-x")
	require.NoError(t, ch.ExchangeDeclare(x, "direct", true, false, false, false, nil))
	_, err := ch.QueueDeclare(dst, true, false, false, false, nil)
	require.NoError(t, err)
	api.expect(201, http.MethodPut, "/api/parameters/shovel/{vhost}/fromx", map[string]any{"value": map[string]any{
		"src-uri": localURI(b.vhost), "src-exchange": x, "src-exchange-key": "k",
		"dest-uri": localURI(b.vhost), "dest-exchange": "amq.direct", "dest-exchange-key": "to",
		"src-delete-after": 3, "ack-mode": "on-publish",
	}})
	require.NoError(t, ch.QueueBind(dst, "to", "amq.direct", false, nil))
	st := awaitShovel(t, api, "fromx", "state", "running")
	require.Equal(t, x, st["src_exchange"])
	require.Equal(t, "k", st["src_exchange_key"])
	require.Equal(t, "amq.direct", st["dest_exchange"])
	require.Equal(t, "to", st["dest_exchange_key"])
	for i := range 5 {
		publish(t, ch, x, "k", body(strconv.Itoa(i)))
	}
	eventually(t, func() bool {
		return api.do(http.MethodGet, "/api/parameters/shovel/{vhost}/fromx", nil).status == 404
	}, "deleted after 3")
	// on-publish: the last publish may still be on its way.
	eventually(t, func() bool { return queueLength(t, c, dst) == 3 }, "3 moved")
	time.Sleep(100 * time.Millisecond)
	require.Equal(t, 3, queueLength(t, c, dst), "no more than 3")
}

func TestShovelValidation(t *testing.T) {
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	ok := map[string]any{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-queue": "b"}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		return map[string]any{"value": m}
	}
	for _, c := range []struct {
		body   map[string]any
		reason string
	}{
		{with("src-queue", nil), "Must specify 'src-exchange' or 'src-queue'"},
		{with("src-exchange", "x"), "Cannot specify 'src-exchange' and 'src-queue'"},
		{with("dest-exchange", "x"), "Cannot specify 'dest-exchange' and 'dest-queue'"},
		{with("src-uri", nil), `Key "src-uri" not found in s`},
		{with("src-uri", "foo://x"), `"foo://x" not a valid URI: {{unexpected_uri_scheme,"foo"},"foo://x"}`},
		{with("ack-mode", "bogus"), `ack-mode should be one of [&lt;&lt;"no-ack"&gt;&gt;,&lt;&lt;"on-publish"&gt;&gt;,&lt;&lt;"on-confirm"&gt;&gt;], actually was &lt;&lt;"bogus"&gt;&gt;`},
		{with("src-delete-after", "sometimes"), `src-delete-after should be a number greater than or equal to 0, "never" or "queue-length", actually was &lt;&lt;"sometimes"&gt;&gt;`},
		{with("src-prefetch-count", "x"), `src-prefetch-count should be a number, actually was &lt;&lt;"x"&gt;&gt;`},
		{with("bogus-key", 1), `Unrecognised terms [{&lt;&lt;"bogus-key"&gt;&gt;,1}] in s`},
		{with("ack-mode", "no-ack", "src-delete-after", 5), "Cannot specify 'no-ack' and numerical 'delete-after'"},
		{with("dest-add-forward-headers", "yes"), `dest-add-forward-headers should be boolean, actually was &lt;&lt;"yes"&gt;&gt;`},
	} {
		r := api.expect(400, http.MethodPut, "/api/parameters/shovel/{vhost}/s", c.body)
		require.Equal(t, "Validation failed\n\n"+c.reason+"\n", r.obj(t)["reason"], "%v", c.body)
	}
	api.expect(404, http.MethodGet, "/api/parameters/shovel/{vhost}/s", nil)
	api.expect(404, http.MethodDelete, "/api/parameters/shovel/{vhost}/s", nil)
}

// TestShovelReportsTerminatedAndRetries points a shovel at a port nothing
// listens on: it reports terminated with a reason and keeps retrying.
func TestShovelReportsTerminatedAndRetries(t *testing.T) {
	warrenOnly(t, "RabbitMQ 3.10 reports a shovel that cannot connect as starting until it gives up")
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	api.expect(201, http.MethodPut, "/api/parameters/shovel/{vhost}/nowhere", map[string]any{"value": map[string]any{
		"src-uri": localURI(b.vhost), "src-queue": b.name("q"), "dest-uri": []any{"amqp://guest:guest@127.0.0.1:1", "amqp://guest:guest@127.0.0.1:2"},
		"dest-queue": "x", "reconnect-delay": 0.2,
	}})
	st := awaitShovel(t, api, "nowhere", "state", "terminated")
	require.Contains(t, st["reason"], "destination: failed_to_connect_using_provided_uris")
	require.Contains(t, st["reason"], "127.0.0.1:2")
	require.NotContains(t, st["reason"], "guest:guest", "no credentials in the reason")
	// It keeps retrying: each attempt sets its status again (starting, for
	// the millisecond a refused connection takes, then terminated), so a
	// later status shows a later timestamp (second-grained, as RabbitMQ's).
	first := st["timestamp"]
	require.NotEmpty(t, first)
	eventually(t, func() bool {
		for _, s := range api.expect(200, http.MethodGet, "/api/shovels/{vhost}", nil).list(t) {
			if m := s.(map[string]any); m["name"] == "nowhere" && m["timestamp"] != first {
				return true
			}
		}
		return false
	}, "the shovel retries")
}

func TestWarrenctlShovel(t *testing.T) {
	warrenOnly(t, "drives warrenctl, Warren's own CLI, against an in-process Warren's management handler")
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	c := &ctl{t: t, bin: buildCtl(t), url: b.api(t), amqpURL: b.url}
	conn, ch := b.channel(t)
	_, err := ch.QueueDeclare("ctl-src", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 10 {
		publish(t, ch, "", "ctl-src", body(strconv.Itoa(i)))
	}
	require.Contains(t, c.ok("shovel", "add", "--src-uri", "amqp://", "--src-queue", "ctl-src", "--dest-uri", "amqp://",
		"--dest-queue", "ctl-dst", "mover"), "shovel mover added")
	eventually(t, func() bool { return queueLength(t, conn, "ctl-dst") == 10 }, "moved")
	require.Regexp(t, `(?m)^/\s+mover\s+running\s+amqp:// queue ctl-src\s+amqp:// queue ctl-dst`, c.ok("shovel", "list"))
	require.Contains(t, c.ok("--format", "json", "shovel", "list", "--all-vhosts"), `"state": "running"`)
	c.fails(1, "Cannot specify 'src-exchange' and 'src-queue'", "shovel", "add", "--src-uri", "amqp://", "--src-queue", "a",
		"--src-exchange", "x", "--dest-uri", "amqp://", "bad")
	require.Contains(t, c.ok("shovel", "delete", "mover"), "shovel mover deleted")
	require.NotContains(t, c.ok("shovel", "list"), "mover")
}

// TestShovelFromImportedDefinitions: a definitions document with a shovel
// among its parameters starts it once imported; its queue comes from the
// document (a quorum queue), not from the shovel's own declaration.
func TestShovelFromImportedDefinitions(t *testing.T) {
	warrenOnly(t, "imports a whole definitions document into the broker")
	b := startBroker(t, server.Config{})
	startShovels(t, b)
	api := startAPI(t, b)
	c, ch := b.channel(t)
	_, err := ch.QueueDeclare("imp-src", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 20 {
		publish(t, ch, "", "imp-src", body(strconv.Itoa(i)))
	}
	api.expect(204, http.MethodPost, "/api/definitions", map[string]any{
		"queues": []any{map[string]any{"name": "imp-dst", "vhost": "/", "durable": true, "auto_delete": false,
			"arguments": map[string]any{"x-max-length": 1000}}},
		"parameters": []any{map[string]any{"vhost": "/", "component": "shovel", "name": "imported", "value": map[string]any{
			"src-uri": "amqp://", "src-queue": "imp-src", "dest-uri": "amqp://", "dest-queue": "imp-dst"}}},
	})
	eventually(t, func() bool { return queueLength(t, c, "imp-dst") == 20 }, "the imported shovel moved the queue")
	q := api.expect(200, http.MethodGet, "/api/queues/%2F/imp-dst", nil).obj(t)
	require.Equal(t, map[string]any{"x-max-length": float64(1000)}, q["arguments"], "the document's queue, not a plain one")
	r := api.expect(400, http.MethodPost, "/api/definitions", map[string]any{
		"parameters": []any{map[string]any{"vhost": "/", "component": "shovel", "name": "bad", "value": map[string]any{"src-uri": "amqp://"}}}})
	require.Contains(t, r.obj(t)["reason"], "Must specify 'src-exchange' or 'src-queue'")
}
