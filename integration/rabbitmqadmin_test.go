package integration

import (
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// rabbitmqadmin runs Debian's stock rabbitmqadmin (package rabbitmq-server,
// installed by make client-deps) against the API at base.
func rabbitmqadmin(t *testing.T, base, vhost string, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("rabbitmqadmin")
	require.NoError(t, err, "rabbitmqadmin not found (run `make client-deps`)")
	u, err := url.Parse(base)
	require.NoError(t, err)
	full := append([]string{"-H", u.Hostname(), "-P", u.Port(), "-u", "guest", "-p", "guest", "-V", vhost}, args...)
	out, err := exec.Command(bin, full...).CombinedOutput()
	require.NoError(t, err, "rabbitmqadmin %s: %s", strings.Join(args, " "), out)
	// rabbitmqadmin exits 0 after printing "*** <reason>" for some refusals.
	require.NotContains(t, string(out), "***", "rabbitmqadmin %s", strings.Join(args, " "))
	return string(out)
}

// tableRows reads rabbitmqadmin's table output as rows of cells joined by
// "|", without padding.
func tableRows(out string) []string {
	var rows []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, strings.Join(cells, "|"))
	}
	return rows
}

// TestRabbitmqadmin drives the management API with the tool RabbitMQ users
// already have: it sends booleans and numbers as strings ("durable":
// "true", "count": "1"), as RabbitMQ accepts.
func TestRabbitmqadmin(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	ra := func(args ...string) string { return rabbitmqadmin(t, api.base, b.vhost, args...) }

	require.Contains(t, ra("declare", "exchange", "name=ra.x", "type=topic", "durable=true"), "exchange declared")
	require.Contains(t, ra("declare", "queue", "name=ra.q", "durable=true", `arguments={"x-max-length":10}`), "queue declared")
	require.Contains(t, ra("declare", "queue", "name=ra.t", "durable=false", "auto_delete=true"), "queue declared")
	require.Contains(t, ra("declare", "binding", "source=ra.x", "destination=ra.q", "routing_key=a.*"), "binding declared")
	require.Contains(t, ra("publish", "exchange=ra.x", "routing_key=a.b", "payload=hello",
		`properties={"content_type":"text/plain","headers":{"h":1}}`), "Message published")

	q := api.expect(200, "GET", "/api/queues/{vhost}/ra.q", nil).obj(t)
	require.Equal(t, true, q["durable"])
	require.Equal(t, map[string]any{"x-max-length": float64(10)}, q["arguments"])
	tq := api.expect(200, "GET", "/api/queues/{vhost}/ra.t", nil).obj(t)
	require.Equal(t, false, tq["durable"])
	require.Equal(t, true, tq["auto_delete"])

	got := ra("-f", "raw_json", "get", "queue=ra.q", "ackmode=ack_requeue_true", "count=1")
	var msgs []map[string]any
	require.NoError(t, json.Unmarshal([]byte(got), &msgs), got)
	require.Len(t, msgs, 1)
	require.Equal(t, "hello", msgs[0]["payload"])
	require.Equal(t, "a.b", msgs[0]["routing_key"])

	require.Contains(t, tableRows(ra("list", "queues", "name", "durable")), "ra.q|True")
	require.Contains(t, tableRows(ra("list", "exchanges", "name", "type")), "ra.x|topic")
	require.Contains(t, tableRows(ra("list", "bindings", "source", "destination", "routing_key")), "ra.x|ra.q|a.*")

	file := t.TempDir() + "/defs.json"
	require.Contains(t, ra("export", file), "Exported definitions")
	raw, err := os.ReadFile(file)
	require.NoError(t, err)
	var defs map[string]any
	require.NoError(t, json.Unmarshal(raw, &defs))
	// rabbitmqadmin -V exports the one vhost (no users, vhosts or global
	// parameters).
	for _, k := range []string{"rabbit_version", "queues", "exchanges", "bindings", "policies", "parameters"} {
		require.Contains(t, defs, k)
	}
	require.Contains(t, string(raw), `"ra.q"`)

	require.Contains(t, ra("delete", "binding", "source=ra.x", "destination_type=queue", "destination=ra.q", "properties_key=a.*"), "binding deleted")
	require.Contains(t, ra("delete", "queue", "name=ra.q"), "queue deleted")
	require.Contains(t, ra("delete", "exchange", "name=ra.x"), "exchange deleted")
	api.expect(404, "GET", "/api/queues/{vhost}/ra.q", nil)
	api.expect(404, "GET", "/api/exchanges/{vhost}/ra.x", nil)

	// Definitions exported by rabbitmqadmin import back (queues, exchanges
	// and bindings return).
	require.Contains(t, ra("import", file), "Uploaded definitions")
	api.expect(200, "GET", "/api/queues/{vhost}/ra.q", nil)
	api.expect(200, "GET", "/api/bindings/{vhost}/e/ra.x/q/ra.q", nil)

	// Users, permissions, policies and vhosts.
	rv, ru := b.name("ra.v"), b.name("ra.u")
	ra("declare", "vhost", "name="+rv)
	ra("declare", "user", "name="+ru, "password=p", "tags=management")
	ra("declare", "permission", "vhost="+rv, "user="+ru, "configure=.*", "write=.*", "read=.*")
	ra("declare", "policy", "name=ra.p", "pattern=^ra", `definition={"max-length":5}`, "priority=1", "apply-to=queues")
	require.Contains(t, tableRows(ra("list", "policies", "name", "priority", "apply-to")), "ra.p|1|queues")
	require.Contains(t, tableRows(ra("list", "permissions", "vhost", "user")), rv+"|"+ru)
	ra("delete", "policy", "name=ra.p")
	ra("delete", "user", "name="+ru)
	ra("delete", "vhost", "name="+rv)
	api.expect(404, "GET", "/api/vhosts/"+rv, nil)
}

// TestAPIBodiesTakeStringsAsRabbitMQ: booleans and integers in request
// bodies may be strings; anything else is RabbitMQ's 400 with the reason
// ["not_boolean", value] or ["not_integer", value].
func TestAPIBodiesTakeStringsAsRabbitMQ(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	api.expect(201, "PUT", "/api/queues/{vhost}/s1", `{"durable":"false","auto_delete":"true"}`)
	q := api.expect(200, "GET", "/api/queues/{vhost}/s1", nil).obj(t)
	require.Equal(t, false, q["durable"])
	require.Equal(t, true, q["auto_delete"])
	api.expect(201, "PUT", "/api/exchanges/{vhost}/s1", `{"type":"direct","durable":"true","internal":"false"}`)

	r := api.expect(400, "PUT", "/api/queues/{vhost}/s2", `{"durable":"yes"}`)
	require.Equal(t, []any{"not_boolean", "yes"}, r.obj(t)["reason"])
	r = api.expect(400, "PUT", "/api/queues/{vhost}/s2", `{"durable":1}`)
	require.Equal(t, []any{"not_boolean", float64(1)}, r.obj(t)["reason"])
	api.expect(404, "GET", "/api/queues/{vhost}/s2", nil)

	api.expect(200, "POST", "/api/exchanges/{vhost}/amq.default/publish", `{"properties":{},"routing_key":"s1","payload":"x","payload_encoding":"string"}`)
	got := api.expect(200, "POST", "/api/queues/{vhost}/s1/get", `{"count":"1","ackmode":"ack_requeue_true","encoding":"auto","truncate":"50000"}`).list(t)
	require.Len(t, got, 1)
	r = api.expect(400, "POST", "/api/queues/{vhost}/s1/get", `{"count":"x","ackmode":"ack_requeue_true","encoding":"auto"}`)
	require.Equal(t, []any{"not_integer", "x"}, r.obj(t)["reason"])
}

// TestAPIParametersAndGlobalParameters: /api/global-parameters and
// /api/parameters as RabbitMQ's, and both in definitions.
func TestAPIParametersAndGlobalParameters(t *testing.T) {
	warrenOnly(t, "sets global parameters and imports into a second, fresh broker")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)

	globals := api.expect(200, "GET", "/api/global-parameters", nil).list(t)
	require.Len(t, globals, 1)
	id := globals[0].(map[string]any)
	require.Equal(t, "internal_cluster_id", id["name"])
	require.Regexp(t, `^rabbitmq-cluster-id-[A-Za-z0-9_-]{22}$`, id["value"])

	api.expect(201, "PUT", "/api/global-parameters/cluster_name", map[string]any{"value": "east"})
	api.expect(204, "PUT", "/api/global-parameters/cluster_name", map[string]any{"value": "west"})
	require.Equal(t, "west", api.expect(200, "GET", "/api/overview", nil).obj(t)["cluster_name"])
	require.Equal(t, map[string]any{"name": "cluster_name", "value": "west"}, api.expect(200, "GET", "/api/global-parameters/cluster_name", nil).obj(t))
	r := api.expect(400, "PUT", "/api/global-parameters/x", map[string]any{"valu": 1})
	require.Equal(t, "[{key_missing,value}]", r.obj(t)["reason"])
	api.expect(201, "PUT", "/api/global-parameters/x", map[string]any{"value": map[string]any{"a": []int{1, 2}}})

	// vhost limits are the vhost-limits component's "limits" parameter.
	api.expect(204, "PUT", "/api/vhost-limits/%2F/max-queues", map[string]any{"value": 10})
	ps := api.expect(200, "GET", "/api/parameters", nil).list(t)
	require.Equal(t, []any{map[string]any{"vhost": "/", "component": "vhost-limits", "name": "limits", "value": map[string]any{"max-queues": float64(10)}}}, ps)
	api.expect(204, "PUT", "/api/parameters/vhost-limits/%2F/limits", map[string]any{"value": map[string]any{"max-connections": 5}})
	lim := api.expect(200, "GET", "/api/vhost-limits/%2F", nil).list(t)
	require.Equal(t, map[string]any{"max-connections": float64(5)}, lim[0].(map[string]any)["value"])
	r = api.expect(400, "PUT", "/api/parameters/federation-upstream/%2F/up", map[string]any{"value": map[string]any{"uri": "amqp://x"}})
	require.Equal(t, "Validation failed\n\ncomponent federation-upstream not found\n", r.obj(t)["reason"])

	defs := api.expect(200, "GET", "/api/definitions", nil).obj(t)
	require.Contains(t, defs["global_parameters"], map[string]any{"name": "cluster_name", "value": "west"})
	require.Len(t, defs["parameters"], 1)

	// Into a fresh broker: the cluster name and limits come along, its own
	// cluster id stays.
	b2 := startBroker(t, server.Config{})
	api2 := startAPI(t, b2)
	ownID := api2.expect(200, "GET", "/api/global-parameters/internal_cluster_id", nil).obj(t)["value"]
	require.NotEqual(t, id["value"], ownID)
	api2.expect(204, "POST", "/api/definitions", defs)
	require.Equal(t, "west", api2.expect(200, "GET", "/api/overview", nil).obj(t)["cluster_name"])
	require.Equal(t, ownID, api2.expect(200, "GET", "/api/global-parameters/internal_cluster_id", nil).obj(t)["value"])
	lim = api2.expect(200, "GET", "/api/vhost-limits/%2F", nil).list(t)
	require.Equal(t, map[string]any{"max-connections": float64(5)}, lim[0].(map[string]any)["value"])

	api.expect(204, "DELETE", "/api/parameters/vhost-limits/%2F/limits", nil)
	require.Empty(t, api.expect(200, "GET", "/api/parameters", nil).list(t))
	api.expect(204, "DELETE", "/api/global-parameters/x", nil)
	api.expect(404, "GET", "/api/global-parameters/x", nil)
}
