package integration

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

// TestPluginTypesInAPIDefinitionsAndWarrenctl: the overview lists the
// exchange types in RabbitMQ's shape; definitions carry consistent-hash,
// deduplicating and consumer-timeout objects both ways; warrenctl declares
// them, and a bad weight comes back as the plugin's reason.
func TestPluginTypesInAPIDefinitionsAndWarrenctl(t *testing.T) {
	warrenOnly(t, "drives warrenctl and Warren's built-in exchange types")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	types := map[string]bool{}
	for _, x := range api.expect(200, http.MethodGet, "/api/overview", nil).obj(t)["exchange_types"].([]any) {
		m := x.(map[string]any)
		require.Equal(t, true, m["enabled"])
		require.NotEmpty(t, m["description"])
		types[m["name"].(string)] = true
	}
	for _, k := range []string{"direct", "fanout", "topic", "headers", "x-consistent-hash", "x-modulus-hash", "x-random", "x-delayed-message"} {
		require.True(t, types[k], k)
	}

	defs := `{"exchanges":[
	  {"name":"shards","vhost":"/","type":"x-consistent-hash","durable":true,"auto_delete":false,"internal":false,"arguments":{"hash-header":"user"}},
	  {"name":"once","vhost":"/","type":"fanout","durable":true,"auto_delete":false,"internal":false,"arguments":{"x-message-deduplication":true,"x-cache-size":1000}},
	  {"name":"any","vhost":"/","type":"x-random","durable":true,"auto_delete":false,"internal":false,"arguments":{}}],
	 "queues":[{"name":"s1","vhost":"/","durable":true,"auto_delete":false,"arguments":{"x-consumer-timeout":60000,"x-message-deduplication":true}}],
	 "bindings":[{"source":"shards","vhost":"/","destination":"s1","destination_type":"queue","routing_key":"3","arguments":{}}]}`
	api.expect(204, http.MethodPost, "/api/definitions", defs)
	bad := `{"bindings":[{"source":"shards","vhost":"/","destination":"s1","destination_type":"queue","routing_key":"heavy","arguments":{}}]}`
	r := api.do(http.MethodPost, "/api/definitions", bad)
	require.Equal(t, 400, r.status, string(r.raw))
	require.Contains(t, string(r.raw), "The binding key must be an integer")
	out := string(api.expect(200, http.MethodGet, "/api/definitions", nil).raw)
	for _, s := range []string{`"x-consistent-hash"`, `"hash-header":"user"`, `"x-message-deduplication":true`, `"x-consumer-timeout":60000`, `"routing_key":"3"`, `"x-random"`} {
		require.Contains(t, out, s)
	}

	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)
	c := &ctl{t: t, bin: buildCtl(t), url: hs.URL, amqpURL: b.url}
	c.ok("declare", "exchange", "--type", "x-consistent-hash", "--arg", "hash-property=message_id", "ring")
	c.ok("declare", "exchange", "--arg", "x-message-deduplication=true", "--arg", "x-cache-size=10", "dd")
	c.ok("declare", "queue", "--arg", "x-consumer-timeout=0", "q")
	c.fails(1, "The binding key must be greater than 0", "declare", "binding", "--source", "ring", "--destination", "q", "--routing-key", "0")
	c.ok("declare", "binding", "--source", "ring", "--destination", "q", "--routing-key", "5")
	require.Contains(t, c.ok("--format", "json", "list", "exchanges"), `"x-cache-size": 10`)
}
