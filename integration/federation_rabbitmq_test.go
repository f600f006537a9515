package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// Federation with the real RabbitMQ 3.10.8 on the other side, both ways:
// a RabbitMQ node of ../shared/tools/rabbitmq-oracle.sh (AMQP 5694,
// management 15694) with rabbitmq_federation enabled, started for the test
// and stopped after it. The tests skip when RabbitMQ or the tool is not on
// this machine, and with -short. WARREN_TEST_FED_RABBITMQ=PORT:MGMTPORT
// uses a node already running with the plugin instead (left running).

type rabbit struct {
	amqpURL string // guest on vhost /
	api     *apiClient
	node    string // its cluster name (the node's full name by default)
	ctl     string // the node's name for rabbitmqctl
}

func startFedRabbit(t *testing.T) *rabbit {
	t.Helper()
	if testing.Short() {
		t.Skip("starts RabbitMQ")
	}
	port, mport := 5694, 15694
	reuse := os.Getenv("WARREN_TEST_FED_RABBITMQ")
	if reuse != "" {
		_, err := fmt.Sscanf(reuse, "%d:%d", &port, &mport)
		require.NoError(t, err, "WARREN_TEST_FED_RABBITMQ=PORT:MGMTPORT")
	}
	r := &rabbit{amqpURL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port),
		api: &apiClient{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", mport), user: "guest", pass: "guest", vhost: "/", v: "%2F"},
		ctl: fmt.Sprintf("oracle%d@localhost", port)}
	defer func() {
		r.node, _ = r.api.expect(200, http.MethodGet, "/api/overview", nil).obj(t)["cluster_name"].(string)
	}()
	if reuse != "" {
		return r
	}
	script, _ := filepath.Abs(filepath.Join("..", "..", "shared", "tools", "rabbitmq-oracle.sh"))
	if s := os.Getenv("WARREN_ORACLE"); s != "" {
		script = s
	}
	if _, err := os.Stat(script); err != nil {
		t.Skip("no rabbitmq-oracle.sh at " + script)
	}
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		if _, err := os.Stat("/usr/sbin/rabbitmq-server"); err != nil {
			t.Skip("RabbitMQ is not installed (make client-deps installs it)")
		}
	}
	base := fmt.Sprintf("/tmp/rabbitmq-oracle-%d", port)
	ctl := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, "rabbitmqctl", append([]string{"-n", r.ctl}, args...)...)
		return c
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		ctl(ctx, "stop").Run() // not running: nothing to stop
		os.RemoveAll(base)
	}
	stop() // whatever an interrupted run left
	t.Cleanup(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, script, "start", strconv.Itoa(port), strconv.Itoa(mport)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	plugins := exec.CommandContext(ctx, "rabbitmq-plugins", "-n", r.ctl, "enable", "rabbitmq_federation", "rabbitmq_federation_management")
	plugins.Env = append(os.Environ(), "RABBITMQ_ENABLED_PLUGINS_FILE="+base+"/enabled_plugins")
	out, err = plugins.CombinedOutput()
	require.NoError(t, err, "%s", out)
	return r
}

// The URIs have no path: RabbitMQ reads "amqp://host/" as the vhost "",
// and one without a path as the downstream's vhost.

// Warren upstream of RabbitMQ: RabbitMQ's federation plugin declares on
// Warren its queue and x-federation-upstream exchange, binds them from the
// exchange with x-bound-from, and what is published to Warren arrives in
// RabbitMQ with Warren's hop in x-received-from. Then the other way:
// Warren downstream of RabbitMQ. Both links' /api/federation-links entries
// have the same keys.
func TestFederationWithRabbitMQ(t *testing.T) {
	warrenOnly(t, "federates with a RabbitMQ node of its own")
	rmq := startFedRabbit(t)
	t.Run("both ways", func(t *testing.T) { federateWithRabbitMQ(t, rmq) })
	t.Run("one exchange both ways, no loop", func(t *testing.T) { loopWithRabbitMQ(t, rmq) })
	t.Run("queues both ways", func(t *testing.T) { federateQueuesWithRabbitMQ(t, rmq) })
	t.Run("validation", func(t *testing.T) { validationAsRabbitMQ(t, rmq) })
}

// Queue federation both ways: a federated queue with a consumer takes the
// messages of its upstream queue on the other broker.
func federateQueuesWithRabbitMQ(t *testing.T, rmq *rabbit) {
	rmq.api.t = t
	w, wapi := fedBroker(t, "warren-qfed@localhost")
	wc, wch := w.channel(t)
	rc, err := amqp.Dial(rmq.amqpURL)
	require.NoError(t, err)
	t.Cleanup(func() { rc.Close() })
	rch, err := rc.Channel()
	require.NoError(t, err)
	sfx := w.sfx
	q1, q2 := "qfed-to-rabbit-"+sfx, "qfed-to-warren-"+sfx
	t.Cleanup(func() {
		if ch, err := rc.Channel(); err == nil {
			ch.QueueDelete(q1, false, false, false)
			ch.QueueDelete(q2, false, false, false)
		}
		rmq.api.do(http.MethodDelete, "/api/policies/{vhost}/qfed-"+sfx, nil)
		rmq.api.do(http.MethodDelete, "/api/parameters/federation-upstream/{vhost}/warren-q-"+sfx, nil)
	})
	for _, ch := range []*amqp.Channel{wch, rch} {
		for _, q := range []string{q1, q2} {
			_, err := ch.QueueDeclare(q, true, false, false, false, nil)
			require.NoError(t, err)
		}
	}
	publish(t, wch, "", q1, body("from-warren"))
	publish(t, rch, "", q2, body("from-rabbit"))

	// RabbitMQ's q1 federated from Warren's.
	rmq.api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/warren-q-"+sfx, map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + w.addr}})
	rmq.api.expect(201, http.MethodPut, "/api/policies/{vhost}/qfed-"+sfx, map[string]any{
		"pattern": "^" + q1 + "$", "apply-to": "queues", "definition": map[string]any{"federation-upstream": "warren-q-" + sfx}})
	awaitLink(t, rmq.api, 1)
	ds, err := rch.Consume(q1, "", true, false, false, false, nil)
	require.NoError(t, err)
	d := recv(t, ds)
	require.Equal(t, "from-warren", string(d.Body))
	require.Equal(t, []any{amqp.Table{"uri": "amqp://" + w.addr, "queue": q1, "redelivered": false, "visit-count": int64(1)}},
		d.Headers["x-received-from"])
	eventually(t, func() bool { return queueLength(t, wc, q1) == 0 }, "taken from Warren")

	// Warren's q2 federated from RabbitMQ's.
	wapi.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/rabbit", map[string]any{"value": map[string]any{
		"uri": strings.TrimSuffix(rmq.amqpURL, "/")}})
	wapi.expect(201, http.MethodPut, "/api/policies/{vhost}/qfed", map[string]any{
		"pattern": "^" + q2 + "$", "apply-to": "queues", "definition": map[string]any{"federation-upstream": "rabbit"}})
	awaitLink(t, wapi, 1)
	ds, err = wch.Consume(q2, "", true, false, false, false, nil)
	require.NoError(t, err)
	d = recv(t, ds)
	require.Equal(t, "from-rabbit", string(d.Body))
	require.Equal(t, []any{amqp.Table{"uri": "amqp://127.0.0.1:" + rmq.port(), "queue": q2, "redelivered": false, "visit-count": int64(1)}},
		d.Headers["x-received-from"])
}

func federateWithRabbitMQ(t *testing.T, rmq *rabbit) {
	rmq.api.t = t
	w, wapi := fedBroker(t, "warren-fed@localhost")
	_, wch := w.channel(t)
	rc, err := amqp.Dial(rmq.amqpURL)
	require.NoError(t, err)
	t.Cleanup(func() { rc.Close() })
	rch, err := rc.Channel()
	require.NoError(t, err)

	sfx := w.sfx
	toRabbit, toWarren := "to-rabbit-"+sfx, "to-warren-"+sfx

	// Warren → RabbitMQ.
	declareExchange(t, rch, toRabbit, "topic")
	atRabbit := boundQueue(t, rch, "q-"+toRabbit, toRabbit, "a.#")
	rmq.api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/warren-"+sfx, map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + w.addr, "expires": 600000}})
	rmq.api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed-"+sfx, map[string]any{
		"pattern": "^" + toRabbit + "$", "apply-to": "exchanges", "definition": map[string]any{"federation-upstream": "warren-" + sfx}})
	t.Cleanup(func() {
		rmq.api.do(http.MethodDelete, "/api/policies/{vhost}/fed-"+sfx, nil)
		rmq.api.do(http.MethodDelete, "/api/parameters/federation-upstream/{vhost}/warren-"+sfx, nil)
	})
	rlinks := awaitLink(t, rmq.api, 1)
	rl := rlinks[0].(map[string]any)
	require.Equal(t, toRabbit, rl["exchange"], "%v", rl)

	// What RabbitMQ made on Warren.
	wq := "federation: " + toRabbit + " -> " + rmq.node
	q := wapi.expect(200, http.MethodGet, "/api/queues/{vhost}/"+url.PathEscape(wq), nil).obj(t)
	require.Equal(t, float64(600000), q["arguments"].(map[string]any)["x-expires"])
	ix := wapi.expect(200, http.MethodGet, "/api/exchanges/{vhost}/"+url.PathEscape(wq+" B"), nil).obj(t)
	require.Equal(t, "x-federation-upstream", ix["type"])
	require.Equal(t, true, ix["internal"])

	eventually(t, func() bool {
		publish(t, wch, toRabbit, "a.probe", body("probe"))
		select {
		case <-atRabbit:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, "RabbitMQ's bindings reached Warren")
	publish(t, wch, toRabbit, "b.not-bound", body("unbound"))
	publish(t, wch, toRabbit, "a.one", amqp.Publishing{Body: []byte("one"), Headers: amqp.Table{"h": "v"}})
	d := recv(t, atRabbit)
	for string(d.Body) == "probe" {
		d = recv(t, atRabbit)
	}
	require.Equal(t, "one", string(d.Body))
	require.Equal(t, "a.one", d.RoutingKey)
	require.Equal(t, "v", d.Headers["h"])
	require.Equal(t, []any{amqp.Table{"uri": "amqp://" + w.addr, "exchange": toRabbit, "redelivered": false,
		"cluster-name": "warren-fed@localhost", "vhost": "/"}}, d.Headers["x-received-from"])

	// RabbitMQ → Warren.
	declareExchange(t, wch, toWarren, "direct")
	atWarren := boundQueue(t, wch, "q-"+toWarren, toWarren, "k")
	wapi.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/rabbit", map[string]any{"value": map[string]any{
		"uri": strings.TrimSuffix(rmq.amqpURL, "/"), "expires": 600000, "ack-mode": "on-confirm"}})
	wapi.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
		"pattern": "^" + toWarren + "$", "apply-to": "exchanges", "definition": map[string]any{"federation-upstream-set": "all"}})
	wlinks := awaitLink(t, wapi, 1)
	t.Cleanup(func() {
		// The upstream queue is durable: remove it from the shared node.
		rch, err := rc.Channel()
		if err == nil {
			rch.QueueDelete("federation: "+toWarren+" -> warren-fed@localhost", false, false, false)
			rch.ExchangeDelete(toWarren, false, false)
			rch.ExchangeDelete(toRabbit, false, false)
		}
	})
	rq := rmq.api.expect(200, http.MethodGet, "/api/queues/{vhost}/"+url.PathEscape("federation: "+toWarren+" -> warren-fed@localhost"), nil).obj(t)
	require.Equal(t, map[string]any{"x-expires": float64(600000), "x-internal-purpose": "federation"}, rq["arguments"])
	eventually(t, func() bool {
		publish(t, rch, toWarren, "k", body("probe"))
		select {
		case <-atWarren:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	}, "Warren's bindings reached RabbitMQ")
	publish(t, rch, toWarren, "k", amqp.Publishing{Body: []byte("two"), DeliveryMode: amqp.Persistent})
	d = recv(t, atWarren)
	for string(d.Body) == "probe" {
		d = recv(t, atWarren)
	}
	require.Equal(t, "two", string(d.Body))
	require.Equal(t, amqp.Persistent, d.DeliveryMode)
	require.Equal(t, []any{amqp.Table{"uri": "amqp://127.0.0.1:" + rmq.port(), "exchange": toWarren, "redelivered": false,
		"cluster-name": rmq.node, "vhost": "/"}}, d.Headers["x-received-from"])

	// The same keys in both brokers' /api/federation-links, but for
	// RabbitMQ's local_channel (its channel's statistics, there once they
	// were first emitted), which Warren does not give.
	keys := func(m map[string]any) []string {
		var ks []string
		for k := range m {
			if k != "local_channel" {
				ks = append(ks, k)
			}
		}
		slices.Sort(ks)
		return ks
	}
	require.Equal(t, keys(rl), keys(wlinks[0].(map[string]any)))
}

func (r *rabbit) port() string {
	u, _ := url.Parse(r.amqpURL)
	return u.Port()
}

// The upstream and policy validation texts are RabbitMQ's.
func validationAsRabbitMQ(t *testing.T, rmq *rabbit) {
	rmq.api.t = t
	_, wapi := fedBroker(t, "v@localhost")
	sfx := suffix(t)
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{}}},
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{"uri": "http://x"}}},
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{"uri": "amqp://", "max-hops": "two"}}},
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{"uri": "amqp://", "ack-mode": "never"}}},
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{"uri": "amqp://", "bogus": 1}}},
		{"/api/parameters/federation-upstream/{vhost}/u-" + sfx, map[string]any{"value": map[string]any{"uri": "amqp://", "trust-user-id": "yes"}}},
		{"/api/parameters/federation-upstream-set/{vhost}/s-" + sfx, map[string]any{"value": []any{map[string]any{"exchange": "x"}}}},
		{"/api/policies/{vhost}/p-" + sfx, map[string]any{"pattern": ".*", "definition": map[string]any{
			"federation-upstream": "u", "federation-upstream-set": "all"}}},
		{"/api/policies/{vhost}/p-" + sfx, map[string]any{"pattern": ".*", "definition": map[string]any{"federation-upstream": 5}}},
	} {
		want := rmq.api.expect(400, http.MethodPut, c.path, c.body).obj(t)
		got := wapi.expect(400, http.MethodPut, c.path, c.body).obj(t)
		require.Equal(t, want, got, "%s %v", c.path, c.body)
	}

	// The x-federation-upstream exchange type wants x-max-hops, a long.
	declare := func(url string, args amqp.Table) error {
		c, err := amqp.Dial(url)
		require.NoError(t, err)
		defer c.Close()
		ch, err := c.Channel()
		require.NoError(t, err)
		return ch.ExchangeDeclare("xfu-"+sfx, "x-federation-upstream", false, true, true, false, args)
	}
	w := startBroker(t, server.Config{})
	for _, args := range []amqp.Table{nil, {"x-max-hops": int32(1)}, {"x-max-hops": "1"}} {
		want := declare(rmq.amqpURL, args)
		require.Error(t, want)
		require.Equal(t, want.Error(), declare(w.url, args).Error(), "%v", args)
	}
	require.NoError(t, declare(w.url, amqp.Table{"x-max-hops": int64(1)}))
}

// One exchange federated both ways between Warren and RabbitMQ with
// max-hops 2: a message published on either side reaches the other once
// and does not come back (each side's upstream exchange drops a message
// that already visited the downstream).
func loopWithRabbitMQ(t *testing.T, rmq *rabbit) {
	rmq.api.t = t
	w, wapi := fedBroker(t, "warren-loop@localhost")
	_, wch := w.channel(t)
	rc, err := amqp.Dial(rmq.amqpURL)
	require.NoError(t, err)
	t.Cleanup(func() { rc.Close() })
	rch, err := rc.Channel()
	require.NoError(t, err)
	sfx := w.sfx
	x := "loop-" + sfx
	t.Cleanup(func() {
		rmq.api.do(http.MethodDelete, "/api/policies/{vhost}/loop-"+sfx, nil)
		rmq.api.do(http.MethodDelete, "/api/parameters/federation-upstream/{vhost}/warren-loop-"+sfx, nil)
		if ch, err := rc.Channel(); err == nil {
			ch.ExchangeDelete(x, false, false)
			ch.QueueDelete("q-"+x, false, false, false)
			ch.QueueDelete("federation: "+x+" -> warren-loop@localhost", false, false, false)
		}
	})
	declareExchange(t, wch, x, "fanout")
	declareExchange(t, rch, x, "fanout")
	atW := boundQueue(t, wch, "q-"+x, x, "")
	atR := boundQueue(t, rch, "q-"+x, x, "")
	rmq.api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/warren-loop-"+sfx, map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + w.addr, "max-hops": 2}})
	rmq.api.expect(201, http.MethodPut, "/api/policies/{vhost}/loop-"+sfx, map[string]any{
		"pattern": "^" + x + "$", "definition": map[string]any{"federation-upstream": "warren-loop-" + sfx}})
	wapi.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/rabbit", map[string]any{"value": map[string]any{
		"uri": strings.TrimSuffix(rmq.amqpURL, "/"), "max-hops": 2}})
	wapi.expect(201, http.MethodPut, "/api/policies/{vhost}/loop", map[string]any{
		"pattern": "^" + x + "$", "definition": map[string]any{"federation-upstream": "rabbit"}})
	awaitLink(t, wapi, 1)
	awaitLink(t, rmq.api, 1)
	probe := func(ch *amqp.Channel, far <-chan amqp.Delivery) {
		eventually(t, func() bool {
			publish(t, ch, x, "", body("probe"))
			select {
			case <-far:
				return true
			case <-time.After(200 * time.Millisecond):
				return false
			}
		}, "federated")
	}
	probe(wch, atR)
	probe(rch, atW)
	drain := func() {
		for quiet := false; !quiet; {
			select {
			case <-atW:
			case <-atR:
			case <-time.After(500 * time.Millisecond):
				quiet = true
			}
		}
	}
	drain()
	for _, from := range []struct {
		ch         *amqp.Channel
		near, far  <-chan amqp.Delivery
		origin, by string
	}{{wch, atW, atR, "warren", "warren-loop@localhost"}, {rch, atR, atW, "rabbit", rmq.node}} {
		publish(t, from.ch, x, "", body("from-"+from.origin))
		require.Equal(t, "from-"+from.origin, string(recv(t, from.near).Body))
		d := recv(t, from.far)
		require.Equal(t, "from-"+from.origin, string(d.Body))
		hops := d.Headers["x-received-from"].([]any)
		require.Len(t, hops, 1)
		require.Equal(t, from.by, hops[0].(amqp.Table)["cluster-name"])
		none(t, from.near) // not back
		none(t, from.far)  // not twice
	}
}
