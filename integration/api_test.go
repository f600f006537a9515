package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// apiClient drives the management API of a broker as one user.
type apiClient struct {
	t          testing.TB
	base       string
	user, pass string
	vhost      string // the test's vhost (see broker.vhost)
	v          string // vhost, escaped for a path
}

type apiResp struct {
	status int
	header http.Header
	raw    []byte
}

func (r apiResp) json(t *testing.T) any {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(r.raw, &v), string(r.raw))
	return v
}

func (r apiResp) obj(t *testing.T) map[string]any {
	t.Helper()
	m, ok := r.json(t).(map[string]any)
	require.True(t, ok, "want an object: %s", r.raw)
	return m
}

func (r apiResp) list(t *testing.T) []any {
	t.Helper()
	l, ok := r.json(t).([]any)
	require.True(t, ok, "want a list: %s", r.raw)
	return l
}

// startAPI is the broker's management API as the broker's user.
func startAPI(t *testing.T, b *broker) *apiClient {
	return &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass, vhost: b.vhost, v: url.PathEscape(b.vhost)}
}

func (c *apiClient) as(user, pass string) *apiClient {
	cc := *c
	cc.user, cc.pass = user, pass
	return &cc
}

// do makes one call; "{vhost}" in path stands for the test's vhost.
func (c *apiClient) do(method, path string, body any) apiResp {
	c.t.Helper()
	path = strings.ReplaceAll(path, "{vhost}", c.v)
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.SetBasicAuth(c.user, c.pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return apiResp{status: resp.StatusCode, header: resp.Header, raw: raw}
}

// await polls GET path until the object's key holds want, and returns
// the object: RabbitMQ applies policies to its queues and exchanges
// asynchronously, and its statistics lag.
func (c *apiClient) await(path, key string, want any) map[string]any {
	c.t.Helper()
	var o map[string]any
	eventually(c.t, func() bool {
		r := c.expect(200, http.MethodGet, path, nil)
		require.NoError(c.t, json.Unmarshal(r.raw, &o), string(r.raw))
		return reflect.DeepEqual(o[key], want)
	}, fmt.Sprintf("%s: %s is %v", path, key, want))
	return o
}

// expect checks the status of a call and returns the response.
func (c *apiClient) expect(status int, method, path string, body any) apiResp {
	c.t.Helper()
	r := c.do(method, path, body)
	require.Equal(c.t, status, r.status, "%s %s: %s", method, path, r.raw)
	return r
}

func TestAPIExchangesQueuesBindingsPublishGet(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	put, get, del, post := http.MethodPut, http.MethodGet, http.MethodDelete, http.MethodPost

	api.expect(201, put, "/api/exchanges/{vhost}/orders", map[string]any{"type": "topic", "durable": true})
	api.expect(204, put, "/api/exchanges/{vhost}/orders", map[string]any{"type": "topic", "durable": true})
	r := api.expect(400, put, "/api/exchanges/{vhost}/orders", map[string]any{"type": "topic", "durable": false})
	require.Equal(t, map[string]any{"error": "bad_request",
		"reason": "inequivalent arg 'durable' for exchange 'orders' in vhost '" + b.vhost + "': received 'false' but current is 'true'"}, r.obj(t))
	api.expect(400, put, "/api/exchanges/{vhost}/bad", map[string]any{"type": "nonsense"})
	api.expect(400, put, "/api/exchanges/{vhost}/bad", `{"type": "direct",`)
	x := api.expect(200, get, "/api/exchanges/{vhost}/orders", nil).obj(t)
	require.Equal(t, "topic", x["type"])
	require.Equal(t, true, x["durable"])
	require.Equal(t, b.vhost, x["vhost"])
	api.expect(404, get, "/api/exchanges/{vhost}/missing", nil)
	require.Equal(t, map[string]any{"error": "Object Not Found", "reason": "Not Found"}, api.expect(404, get, "/api/queues/{vhost}/missing", nil).obj(t))

	api.expect(201, put, "/api/queues/{vhost}/invoices", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}})
	api.expect(204, put, "/api/queues/{vhost}/invoices", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 10}})
	r = api.expect(400, put, "/api/queues/{vhost}/invoices", map[string]any{"durable": true, "arguments": map[string]any{"x-max-length": 11}})
	require.Contains(t, r.obj(t)["reason"], "inequivalent arg 'x-max-length' for queue 'invoices'")
	r = api.expect(400, put, "/api/queues/{vhost}/bad", map[string]any{"arguments": map[string]any{"x-max-length": -1}})
	require.Contains(t, r.obj(t)["reason"], "x-max-length")

	// Bindings: POST answers 201 with a Location naming the properties key,
	// relative to the POST's URL (and escaped once more, as a path segment).
	r = api.expect(201, post, "/api/bindings/{vhost}/e/orders/q/invoices", map[string]any{"routing_key": "order.*"})
	require.Equal(t, "invoices/order.%252A", r.header.Get("Location"))
	api.expect(201, post, "/api/bindings/{vhost}/e/orders/q/invoices", map[string]any{"routing_key": "vip.#", "arguments": map[string]any{"x-tier": "gold"}})
	api.expect(404, post, "/api/bindings/{vhost}/e/nope/q/invoices", map[string]any{"routing_key": "k"})
	bs := api.expect(200, get, "/api/bindings/{vhost}/e/orders/q/invoices", nil).list(t)
	require.Len(t, bs, 2)
	keys := map[string]string{}
	for _, bi := range bs {
		m := bi.(map[string]any)
		keys[m["routing_key"].(string)] = m["properties_key"].(string)
	}
	require.Equal(t, "order.%2A", keys["order.*"])
	require.True(t, strings.HasPrefix(keys["vip.#"], "vip.%23~"), keys["vip.#"])
	qb := api.expect(200, get, "/api/queues/{vhost}/invoices/bindings", nil).list(t)
	require.Len(t, qb, 3, "the default exchange's binding comes too")
	require.Equal(t, "", qb[0].(map[string]any)["source"])
	require.Len(t, api.expect(200, get, "/api/exchanges/{vhost}/orders/bindings/source", nil).list(t), 2)

	// Publish: routed or not; the default exchange is amq.default.
	r = api.expect(200, post, "/api/exchanges/{vhost}/orders/publish", map[string]any{
		"routing_key": "order.created", "payload": "hello", "payload_encoding": "string",
		"properties": map[string]any{"delivery_mode": 2, "headers": map[string]any{"n": 1}, "content_type": "text/plain"}})
	require.Equal(t, map[string]any{"routed": true}, r.obj(t))
	r = api.expect(200, post, "/api/exchanges/{vhost}/orders/publish", map[string]any{"routing_key": "nowhere", "payload": "x", "payload_encoding": "string", "properties": map[string]any{}})
	require.Equal(t, map[string]any{"routed": false}, r.obj(t))
	r = api.expect(400, post, "/api/exchanges/{vhost}/orders/publish", map[string]any{"routing_key": "nowhere", "payload": "x", "properties": map[string]any{}})
	require.Equal(t, map[string]any{"error": "bad_request", "reason": "[{key_missing,payload_encoding}]"}, r.obj(t))
	r = api.expect(200, post, "/api/exchanges/{vhost}/amq.default/publish", map[string]any{
		"routing_key": "invoices", "payload": "/w==", "payload_encoding": "base64", "properties": map[string]any{}})
	require.Equal(t, map[string]any{"routed": true}, r.obj(t))
	api.expect(400, post, "/api/exchanges/{vhost}/orders/publish", map[string]any{"payload": "x"})

	// Get: ackmode and encoding are required; requeue leaves the messages.
	api.expect(400, post, "/api/queues/{vhost}/invoices/get", map[string]any{"count": 1, "encoding": "auto"})
	api.expect(400, post, "/api/queues/{vhost}/invoices/get", map[string]any{"count": 1, "ackmode": "ack_requeue_true"})
	msgs := api.expect(200, post, "/api/queues/{vhost}/invoices/get", map[string]any{"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}).list(t)
	require.Len(t, msgs, 2)
	m0, m1 := msgs[0].(map[string]any), msgs[1].(map[string]any)
	require.Equal(t, "hello", m0["payload"])
	require.Equal(t, "string", m0["payload_encoding"])
	require.Equal(t, "orders", m0["exchange"])
	require.Equal(t, "order.created", m0["routing_key"])
	require.Equal(t, false, m0["redelivered"])
	require.Equal(t, map[string]any{"delivery_mode": 2.0, "headers": map[string]any{"n": 1.0}, "content_type": "text/plain"}, m0["properties"])
	require.Equal(t, "/w==", m1["payload"], "a non-UTF-8 body comes back as base64")
	require.Equal(t, "base64", m1["payload_encoding"])
	msgs = api.expect(200, post, "/api/queues/{vhost}/invoices/get", map[string]any{"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}).list(t)
	require.Len(t, msgs, 1)
	require.Equal(t, true, msgs[0].(map[string]any)["redelivered"], "requeued by the first get")

	q := api.await("/api/queues/{vhost}/invoices", "messages", 1.0)
	require.Equal(t, map[string]any{"x-max-length": 10.0}, q["arguments"])
	require.Equal(t, nil, q["policy"])
	// No policy applies: {} (RabbitMQ leaves the field out until its
	// statistics carry it).
	require.Empty(t, q["effective_policy_definition"])

	// Binding delete by properties key, purge, queue and exchange delete.
	api.expect(204, del, "/api/bindings/{vhost}/e/orders/q/invoices/"+url.PathEscape(keys["vip.#"]), nil)
	api.expect(404, del, "/api/bindings/{vhost}/e/orders/q/invoices/"+url.PathEscape(keys["vip.#"]), nil)
	require.Len(t, api.expect(200, get, "/api/bindings/{vhost}/e/orders/q/invoices", nil).list(t), 1)
	api.expect(204, del, "/api/queues/{vhost}/invoices/contents", nil)
	eventually(t, func() bool {
		return api.expect(200, get, "/api/queues/{vhost}/invoices", nil).obj(t)["messages"] == 0.0
	}, "purged")
	api.expect(204, del, "/api/queues/{vhost}/invoices", nil)
	api.expect(404, del, "/api/queues/{vhost}/invoices", nil)
	api.expect(204, del, "/api/exchanges/{vhost}/orders", nil)
	api.expect(404, get, "/api/exchanges/{vhost}/orders", nil)
	api.expect(404, get, "/api/queues/nope", nil)
}

func TestAPIListsPageFilterSort(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	for i := range 250 {
		_, err := ch.QueueDeclare(fmt.Sprintf("q-%03d", i), false, false, false, false, nil)
		require.NoError(t, err)
	}
	for i := range 3 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "q-007", false, false, amqp.Publishing{Body: []byte{byte(i)}}))
	}
	all := api.expect(200, http.MethodGet, "/api/queues/{vhost}", nil).list(t)
	require.Len(t, all, 250)
	p := api.expect(200, http.MethodGet, "/api/queues/{vhost}?page=2&page_size=100&sort=name&sort_reverse=true", nil).obj(t)
	require.Equal(t, 250.0, p["total_count"])
	require.Equal(t, 250.0, p["filtered_count"])
	require.Equal(t, 100.0, p["item_count"])
	require.Equal(t, 3.0, p["page_count"])
	items := p["items"].([]any)
	require.Equal(t, "q-149", items[0].(map[string]any)["name"])
	// RabbitMQ has a queue's message count once its first statistics came.
	eventually(t, func() bool {
		p = api.expect(200, http.MethodGet, "/api/queues/{vhost}?page=1&name=q-0[01]&use_regex=true&columns=name,messages", nil).obj(t)
		return reflect.DeepEqual(map[string]any{"name": "q-000", "messages": 0.0}, p["items"].([]any)[0])
	}, "q-000 with its count")
	require.Equal(t, 20.0, p["filtered_count"])
	eventually(t, func() bool {
		sorted := api.expect(200, http.MethodGet, "/api/queues/{vhost}?sort=messages&sort_reverse=true&columns=name", nil).list(t)
		return sorted[0].(map[string]any)["name"] == "q-007"
	}, "the queue with messages sorts first")
	api.expect(400, http.MethodGet, "/api/queues/{vhost}?page=0", nil)
	api.expect(400, http.MethodGet, "/api/queues/{vhost}?page=9", nil)
	// The name filter applies to paged lists only: unpaged, a bad regex is
	// not even looked at.
	api.expect(400, http.MethodGet, "/api/queues/{vhost}?page=1&name=(&use_regex=true", nil)
	require.Len(t, api.expect(200, http.MethodGet, "/api/queues/{vhost}?name=(&use_regex=true&columns=name", nil).list(t), 250)
}

func TestAPIUsersVhostsPermissionsAndTags(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	put, get, del := http.MethodPut, http.MethodGet, http.MethodDelete
	ann, nobody, shop := b.name("ann"), b.name("nobody"), b.name("shop")
	users, vhosts, perms := "/api/users/", "/api/vhosts/", "/api/permissions/"

	api.expect(400, put, users+ann, map[string]any{"password": "pw"}) // tags required
	api.expect(201, put, users+ann, map[string]any{"password": "pw", "tags": "management,policymaker"})
	api.expect(204, put, users+ann, map[string]any{"password": "pw2", "tags": []string{"management"}})
	u := api.expect(200, get, users+ann, nil).obj(t)
	require.Equal(t, []any{"management"}, u["tags"])
	require.Equal(t, "rabbit_password_hashing_sha256", u["hashing_algorithm"])
	require.NotContains(t, string(api.expect(200, get, "/api/users", nil).raw), "pw2")
	require.NotEmpty(t, u["password_hash"])

	// A vhost created over HTTP gives its creator full permissions.
	api.expect(201, put, vhosts+shop, nil)
	api.expect(204, put, vhosts+shop, nil)
	perm := api.expect(200, get, perms+shop+"/"+api.user, nil).obj(t)
	require.Equal(t, map[string]any{"user": api.user, "vhost": shop, "configure": ".*", "write": ".*", "read": ".*"}, perm)
	api.expect(400, put, perms+shop+"/"+ann, map[string]any{"configure": ".*", "write": ".*"})
	api.expect(400, put, perms+shop+"/"+ann, map[string]any{"configure": "(", "write": ".*", "read": ".*"})
	api.expect(400, put, perms+shop+"/"+nobody, map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	api.expect(400, put, perms+b.name("nowhere")+"/"+ann, map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	api.expect(201, put, perms+shop+"/"+ann, map[string]any{"configure": "^ann-", "write": ".*", "read": ".*"})
	api.expect(204, put, perms+shop+"/"+ann, map[string]any{"configure": "^ann-", "write": ".*", "read": ".*"})
	require.Len(t, api.expect(200, get, users+ann+"/permissions", nil).list(t), 1)
	require.Len(t, api.expect(200, get, vhosts+shop+"/permissions", nil).list(t), 2)

	// ann logs in over AMQP with the new password.
	c, err := amqp.Dial(b.vurl(ann, "pw2", shop))
	require.NoError(t, err)
	c.Close()

	// Tags: management sees overview/whoami and its own vhosts only.
	annAPI := api.as(ann, "pw2")
	require.Equal(t, map[string]any{"name": ann, "tags": []any{"management"}}, annAPI.expect(200, get, "/api/whoami", nil).obj(t))
	annAPI.expect(200, get, "/api/overview", nil)
	require.Equal(t, "Not monitor user", annAPI.expect(401, get, "/api/nodes", nil).obj(t)["reason"])
	require.Equal(t, "Not administrator user", annAPI.expect(401, get, "/api/users", nil).obj(t)["reason"])
	vs := annAPI.expect(200, get, "/api/vhosts", nil).list(t)
	require.Len(t, vs, 1)
	require.Equal(t, shop, vs[0].(map[string]any)["name"])
	// Declaring follows AMQP permissions: configure only on ^ann-.
	annAPI.expect(201, put, "/api/queues/"+shop+"/ann-q", map[string]any{})
	r := annAPI.expect(401, put, "/api/queues/"+shop+"/other-q", map[string]any{})
	require.Equal(t, map[string]any{"error": "not_authorised", "reason": "Access refused."}, r.obj(t))
	annAPI.expect(401, put, "/api/queues/{vhost}/ann-q", map[string]any{}) // no access to the test's vhost

	api.expect(201, put, users+nobody, map[string]any{"password": "pw", "tags": ""})
	r = api.as(nobody, "pw").expect(401, get, "/api/whoami", nil)
	require.Equal(t, map[string]any{"error": "not_authorised", "reason": "Not management user"}, r.obj(t))
	r = api.as(ann, "wrong").expect(401, get, "/api/whoami", nil)
	require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic")

	api.expect(204, del, perms+shop+"/"+ann, nil)
	api.expect(404, del, perms+shop+"/"+ann, nil)
	api.expect(204, del, vhosts+shop, nil)
	api.expect(404, get, vhosts+shop, nil)
	api.expect(204, del, users+ann, nil)
	api.expect(404, del, users+ann, nil)
}

func TestAPIOverviewChannelsConsumersHealth(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	require.NoError(t, ch.Confirm(false))
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Qos(7, 0, false))
	_, err = ch.Consume(q.Name, "my-consumer", false, false, false, false, nil)
	require.NoError(t, err)
	for range 5 {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{Body: []byte("m")})
		require.NoError(t, err)
		require.True(t, dc.Wait())
	}
	// A confirm does not wait for the delivery (the queue's goroutine may
	// hand the last message over just after), and RabbitMQ's figures lag by
	// its statistics interval: wait for the fifth. The figures checked
	// exactly are the test's own (its queue, its vhost's one channel): the
	// broker-wide ones may count other clients of a shared broker.
	eventually(t, func() bool {
		qi := api.expect(200, http.MethodGet, "/api/queues/{vhost}/"+url.PathEscape(q.Name), nil).obj(t)
		ms, _ := qi["message_stats"].(map[string]any)
		return ms["deliver_get"] == 5.0
	}, "all five delivered")
	var o map[string]any
	eventually(t, func() bool {
		o = api.expect(200, http.MethodGet, "/api/overview", nil).obj(t)
		totals := o["object_totals"].(map[string]any)
		for _, k := range []string{"connections", "channels", "consumers", "queues"} {
			if n, _ := totals[k].(float64); n < 1 {
				return false
			}
		}
		return true
	}, "the overview counts the test's objects")
	require.Equal(t, "3.10.8", o["rabbitmq_version"])
	ms := o["message_stats"].(map[string]any)
	for _, k := range []string{"publish", "confirm", "deliver_get"} {
		require.GreaterOrEqual(t, ms[k], 5.0, k)
	}
	require.Contains(t, ms, "publish_details")

	var chans []any
	eventually(t, func() bool {
		chans = api.expect(200, http.MethodGet, "/api/vhosts/{vhost}/channels", nil).list(t)
		if len(chans) != 1 {
			return false
		}
		c0 := chans[0].(map[string]any)
		cs, _ := c0["message_stats"].(map[string]any)
		// RabbitMQ's channel figures arrive with its statistics events,
		// not all in the same one.
		return cs["confirm"] == 5.0 && c0["confirm"] == true && c0["consumer_count"] == 1.0
	}, "the channel's five confirms counted")
	c0 := chans[0].(map[string]any)
	require.Equal(t, true, c0["confirm"])
	require.Equal(t, 7.0, c0["prefetch_count"])
	require.Equal(t, 1.0, c0["consumer_count"])
	require.Equal(t, 5.0, c0["message_stats"].(map[string]any)["publish"])
	cons := api.expect(200, http.MethodGet, "/api/consumers/{vhost}", nil).list(t)
	require.Len(t, cons, 1)
	require.Equal(t, "my-consumer", cons[0].(map[string]any)["consumer_tag"])
	require.Equal(t, q.Name, cons[0].(map[string]any)["queue"].(map[string]any)["name"])

	require.Equal(t, map[string]any{"status": "ok"}, api.expect(200, http.MethodGet, "/api/aliveness-test/{vhost}", nil).obj(t))
	require.Equal(t, map[string]any{"status": "ok"}, api.expect(200, http.MethodGet, "/api/health/checks/alarms", nil).obj(t))
}

func TestAPIHealthCheckFailsOnAlarm(t *testing.T) {
	warrenOnly(t, "raises a memory alarm with Server.SetAlarm")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	require.Equal(t, map[string]any{"status": "ok"}, api.expect(200, http.MethodGet, "/api/health/checks/alarms", nil).obj(t))
	b.SetAlarm("memory", true)
	r := api.expect(503, http.MethodGet, "/api/health/checks/alarms", nil).obj(t)
	require.Equal(t, "failed", r["status"])
	b.SetAlarm("memory", false)
	require.Equal(t, map[string]any{"status": "ok"}, api.expect(200, http.MethodGet, "/api/health/checks/alarms", nil).obj(t))
}

// definitionsOf reduces a definitions export to the objects of vhosts and
// users (the test's own: a shared broker holds others'), leaving out the
// broker-wide global parameters.
func definitionsOf(t *testing.T, raw []byte, vhosts []string, users []string) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc), string(raw))
	keep := func(list any, key string, names []string) []any {
		out := []any{}
		for _, o := range list.([]any) {
			if slices.Contains(names, o.(map[string]any)[key].(string)) {
				out = append(out, o)
			}
		}
		return out
	}
	delete(doc, "global_parameters")
	doc["users"] = keep(doc["users"], "name", users)
	doc["vhosts"] = keep(doc["vhosts"], "name", vhosts)
	for _, k := range []string{"permissions", "topic_permissions", "parameters", "policies", "queues", "exchanges", "bindings"} {
		if doc[k] != nil {
			doc[k] = keep(doc[k], "vhost", vhosts)
		}
	}
	return doc
}

// sameDefinitions compares two definitions documents, lists in any order.
func sameDefinitions(t *testing.T, want, got map[string]any) {
	t.Helper()
	require.ElementsMatch(t, slices.Collect(maps.Keys(want)), slices.Collect(maps.Keys(got)))
	for k, v := range want {
		if l, ok := v.([]any); ok {
			require.ElementsMatch(t, l, got[k], k)
		} else {
			require.Equal(t, v, got[k], k)
		}
	}
}

func TestAPIDefinitionsRoundTrip(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	ops, staging := b.name("ops"), b.name("staging")
	mine := func() map[string]any {
		return definitionsOf(t, api.expect(200, http.MethodGet, "/api/definitions", nil).raw, []string{b.vhost, staging}, []string{ops})
	}
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("events-ae", "fanout", true, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare("events", "topic", true, false, false, false, amqp.Table{"alternate-exchange": "events-ae"}))
	require.NoError(t, ch.ExchangeDeclare("audit", "headers", true, false, true, false, nil))
	_, err := ch.QueueDeclare("events.q", true, false, false, false, amqp.Table{"x-message-ttl": int32(60000), "x-dead-letter-exchange": "events-ae"})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("unrouted", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("events.q", "a.#", "events", false, nil))
	require.NoError(t, ch.QueueBind("unrouted", "", "events-ae", false, nil))
	require.NoError(t, ch.ExchangeBind("audit", "", "events", false, amqp.Table{"x-any": "thing"}))
	require.NoError(t, ch.PublishWithContext(context.Background(), "events", "a.b", false, false, amqp.Publishing{Body: []byte("kept")}))
	api.expect(201, http.MethodPut, "/api/users/"+ops, map[string]any{"password": "ops-pw", "tags": []string{"monitoring"}})
	api.expect(201, http.MethodPut, "/api/vhosts/"+staging, nil)
	api.expect(201, http.MethodPut, "/api/permissions/"+staging+"/"+ops, map[string]any{"configure": "", "write": "^x", "read": ".*"})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/events-cap", map[string]any{"pattern": "^events", "apply-to": "queues",
		"priority": 2, "definition": map[string]any{"max-length": 1000, "dead-letter-exchange": "events-ae"}})

	doc := mine()
	exported, err := json.Marshal(doc)
	require.NoError(t, err)
	require.Equal(t, "3.10.8", doc["rabbit_version"])
	for _, x := range doc["exchanges"].([]any) {
		require.False(t, strings.HasPrefix(x.(map[string]any)["name"].(string), "amq."), "built-in exchanges are left out")
	}
	require.Len(t, doc["exchanges"], 3)
	require.Len(t, doc["queues"], 2)
	require.Len(t, doc["bindings"], 3)
	require.Len(t, doc["policies"], 1)
	require.Len(t, doc["users"], 1)
	require.Len(t, doc["vhosts"], 2)

	// Importing twice changes nothing; existing queues keep their messages.
	api.expect(204, http.MethodPost, "/api/definitions", exported)
	api.expect(204, http.MethodPost, "/api/definitions", string(exported))
	sameDefinitions(t, doc, mine())
	require.Equal(t, "kept", getBody(t, ch, "events.q"))

	// Delete everything, import, and the export is the same again.
	for _, n := range []string{"events.q", "unrouted"} {
		api.expect(204, http.MethodDelete, "/api/queues/{vhost}/"+n, nil)
	}
	for _, n := range []string{"events", "events-ae", "audit"} {
		api.expect(204, http.MethodDelete, "/api/exchanges/{vhost}/"+n, nil)
	}
	api.expect(204, http.MethodDelete, "/api/users/"+ops, nil)
	api.expect(204, http.MethodDelete, "/api/vhosts/"+staging, nil)
	api.expect(204, http.MethodDelete, "/api/policies/{vhost}/events-cap", nil)
	api.expect(204, http.MethodPost, "/api/definitions", string(exported))
	sameDefinitions(t, doc, mine())
	// The imported password hash still logs in.
	c, err := amqp.Dial(b.vurl(ops, "ops-pw", staging))
	require.NoError(t, err)
	c.Close()

	// An existing queue is left exactly as it is, even with other arguments.
	api.expect(204, http.MethodPost, "/api/definitions", map[string]any{"queues": []any{
		map[string]any{"name": "unrouted", "vhost": b.vhost, "durable": false, "auto_delete": true, "arguments": map[string]any{"x-max-length": 1}}}})
	q := api.expect(200, http.MethodGet, "/api/queues/{vhost}/unrouted", nil).obj(t)
	require.Equal(t, true, q["durable"])
	require.Equal(t, map[string]any{}, q["arguments"])

	// Per-vhost export has no vhost fields (but in its policies) and
	// imports into another vhost.
	vdoc := api.expect(200, http.MethodGet, "/api/definitions/{vhost}", nil)
	vm := vdoc.obj(t)
	require.NotContains(t, vm, "users")
	for _, k := range []string{"queues", "exchanges", "bindings"} {
		require.NotEmpty(t, vm[k], k)
		for _, o := range vm[k].([]any) {
			require.NotContains(t, o, "vhost", k)
		}
	}
	require.Len(t, vm["policies"], 1)
	require.Equal(t, b.vhost, vm["policies"].([]any)[0].(map[string]any)["vhost"])
	api.expect(204, http.MethodPost, "/api/definitions/"+staging, vdoc.raw)
	require.Len(t, api.expect(200, http.MethodGet, "/api/queues/"+staging, nil).list(t), 2)
	api.await("/api/queues/"+staging+"/events.q", "policy", "events-cap")
	require.Len(t, api.expect(200, http.MethodGet, "/api/exchanges/"+staging+"/events/bindings/source", nil).list(t), 2)

	// Bad documents: 400 bad_request.
	for _, bad := range []any{
		`{"queues": [`,
		map[string]any{"queues": []any{map[string]any{"name": "q", "vhost": b.name("no-such-vhost"), "durable": true, "arguments": map[string]any{}}}},
		map[string]any{"exchanges": []any{map[string]any{"name": "x", "vhost": b.vhost, "type": "no-such-type", "arguments": map[string]any{}}}},
		map[string]any{"queues": []any{map[string]any{"name": "q2", "vhost": b.vhost, "arguments": map[string]any{"x-max-length": "ten"}}}},
	} {
		r := api.expect(400, http.MethodPost, "/api/definitions", bad)
		require.Equal(t, "bad_request", r.obj(t)["error"], string(r.raw))
	}
	api.expect(204, http.MethodPost, "/api/definitions", "{}")
}

func TestAPIBrowseLeavesMessagesAlone(t *testing.T) {
	warrenOnly(t, "queue browsing is Warren's own endpoint (RabbitMQ has no /browse)")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("browsed", false, false, false, false, nil)
	require.NoError(t, err)
	// Confirmed, so the queue holds all three before the API reads it.
	require.NoError(t, ch.Confirm(false))
	for _, body := range []string{"first", "second", "third"} {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "browsed", false, false,
			amqp.Publishing{Body: []byte(body), ContentType: "text/plain"})
		require.NoError(t, err)
		require.True(t, dc.Wait())
	}
	page := api.expect(200, http.MethodGet, "/api/queues/{vhost}/browsed/browse?offset=1&count=5", nil).obj(t)
	require.Equal(t, 3.0, page["total"])
	items := page["items"].([]any)
	require.Len(t, items, 2)
	require.Equal(t, "second", items[0].(map[string]any)["payload"])
	require.Equal(t, 1.0, items[0].(map[string]any)["position"])
	require.Equal(t, map[string]any{"content_type": "text/plain"}, items[0].(map[string]any)["properties"])
	for range 3 { // browsing again and again changes nothing
		api.expect(200, http.MethodGet, "/api/queues/{vhost}/browsed/browse", nil)
	}
	d, ok, err := ch.Get("browsed", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "first", string(d.Body))
	require.False(t, d.Redelivered)
	require.Equal(t, uint32(2), d.MessageCount)
	api.expect(404, http.MethodGet, "/api/queues/{vhost}/nope/browse", nil)
	api.expect(400, http.MethodGet, "/api/queues/{vhost}/browsed/browse?count=0", nil)
	api.expect(201, http.MethodPut, "/api/users/blind", map[string]any{"password": "pw", "tags": "management"})
	api.expect(201, http.MethodPut, "/api/permissions/{vhost}/blind", map[string]any{"configure": ".*", "write": ".*", "read": "^$"})
	api.as("blind", "pw").expect(401, http.MethodGet, "/api/queues/{vhost}/browsed/browse", nil)
}

// TestAPIImportsRabbitMQDefinitions imports a definitions file exported by
// RabbitMQ 3.10.8 (integration/testdata, made with its management API):
// users keep their passwords (RabbitMQ's hashes), permissions, policies,
// queues, exchanges and bindings arrive, and the broker's own export of it
// carries the same objects. The file's users and vhosts are renamed to the
// test's own first, and its guest user left out (guest's permissions stay):
// a shared broker must keep its guest.
func TestAPIImportsRabbitMQDefinitions(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	raw, err := os.ReadFile("testdata/rabbitmq-3.10.8-definitions.json")
	require.NoError(t, err)
	var theirs map[string]any
	require.NoError(t, json.Unmarshal(raw, &theirs))
	vhost := func(v string) string {
		if v == "/" {
			return b.vhost
		}
		return b.name(v)
	}
	user := func(u string) string {
		if u == "guest" {
			return u
		}
		return b.name(u)
	}
	var users []any
	for _, u := range theirs["users"].([]any) {
		if m := u.(map[string]any); m["name"] != "guest" {
			m["name"] = user(m["name"].(string))
			users = append(users, m)
		}
	}
	theirs["users"] = users
	for _, v := range theirs["vhosts"].([]any) {
		v.(map[string]any)["name"] = vhost(v.(map[string]any)["name"].(string))
	}
	for _, k := range []string{"permissions", "topic_permissions", "parameters", "policies", "queues", "exchanges", "bindings"} {
		for _, o := range theirs[k].([]any) {
			m := o.(map[string]any)
			m["vhost"] = vhost(m["vhost"].(string))
			if u, ok := m["user"].(string); ok {
				m["user"] = user(u)
			}
		}
	}
	doc, err := json.Marshal(theirs)
	require.NoError(t, err)
	api.expect(204, http.MethodPost, "/api/definitions", doc)

	shop := vhost("shop")
	c, err := amqp.Dial(b.vurl(user("app"), "app-secret", shop))
	require.NoError(t, err, "a RabbitMQ password hash logs in")
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("other", false, false, false, false, nil)
	amqpErr(t, err, 403) // configure only on ^app\.
	// RabbitMQ applies the imported policy to the imported queue shortly after.
	var q map[string]any
	eventually(t, func() bool {
		q = api.expect(200, http.MethodGet, "/api/queues/"+shop+"/app.orders", nil).obj(t)
		return q["policy"] == "cap"
	}, "the policy applies")
	require.Equal(t, map[string]any{"x-message-ttl": 60000.0, "x-dead-letter-exchange": "unrouted", "x-max-priority": 5.0}, q["arguments"])
	x := api.expect(200, http.MethodGet, "/api/exchanges/"+shop+"/audit", nil).obj(t)
	require.Equal(t, true, x["internal"])
	eb := api.expect(200, http.MethodGet, "/api/exchanges/"+shop+"/audit/bindings/destination", nil).list(t)
	require.Len(t, eb, 1)
	require.Equal(t, map[string]any{"x-match": "any", "kind": "refund"}, eb[0].(map[string]any)["arguments"])

	// What the broker exports holds the same objects as RabbitMQ's file.
	ours := definitionsOf(t, api.expect(200, http.MethodGet, "/api/definitions", nil).raw,
		[]string{b.vhost, shop}, []string{user("ops"), user("alice"), user("app")})
	for _, k := range []string{"users", "permissions", "policies", "queues", "exchanges", "bindings"} {
		require.ElementsMatch(t, theirs[k], ours[k], k)
	}
	names := func(d map[string]any) []any {
		var out []any
		for _, v := range d["vhosts"].([]any) {
			out = append(out, v.(map[string]any)["name"])
		}
		return out
	}
	require.ElementsMatch(t, names(theirs), names(ours))
}
