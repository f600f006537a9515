package integration

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/federation"
)

// startFederation gives an in-process broker its federation manager
// (cmd/warren makes one for every broker).
func startFederation(t *testing.T, b *broker) {
	t.Helper()
	if b.Server == nil {
		return
	}
	m := federation.New(b.Server, federation.Options{Logger: zaptest.NewLogger(t, zaptest.Level(zapWarn)), Check: 200 * time.Millisecond})
	m.Start()
	t.Cleanup(m.Close) // before the broker's own cleanup
}

// fedBroker is an in-process Warren named node (its cluster name, which
// federation tells brokers apart by) with federation running.
func fedBroker(t *testing.T, node string) (*broker, *apiClient) {
	t.Helper()
	b := startBroker(t, server.Config{NodeName: node})
	startFederation(t, b)
	return b, startAPI(t, b)
}

// awaitLink waits until vhost's only federation link of api's broker is
// running, and returns it.
func awaitLink(t *testing.T, api *apiClient, n int) []any {
	t.Helper()
	var links []any
	running := func() bool {
		links = api.expect(200, http.MethodGet, "/api/federation-links/{vhost}", nil).list(t)
		if len(links) != n {
			return false
		}
		for _, l := range links {
			if l.(map[string]any)["status"] != "running" {
				return false
			}
		}
		return true
	}
	for end := time.Now().Add(waitLimit()); !running(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("federation links not running: %v", links)
		}
	}
	return links
}

func declareExchange(t *testing.T, ch *amqp.Channel, name, kind string) {
	t.Helper()
	require.NoError(t, ch.ExchangeDeclare(name, kind, true, false, false, false, nil))
}

func boundQueue(t *testing.T, ch *amqp.Channel, name, exchange, key string) <-chan amqp.Delivery {
	t.Helper()
	_, err := ch.QueueDeclare(name, false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(name, key, exchange, false, nil))
	ds, err := ch.Consume(name, "", true, false, false, false, nil)
	require.NoError(t, err)
	return ds
}

func TestFederationExchangeBetweenWarrens(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	up, _ := fedBroker(t, "up@localhost")
	down, api := fedBroker(t, "down@localhost")
	_, uch := up.channel(t)
	_, dch := down.channel(t)
	declareExchange(t, dch, "fx", "topic")
	got := boundQueue(t, dch, "fq", "fx", "a.*")

	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{
		"uri": up.url, "expires": 3600000, "message-ttl": 60000,
	}})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
		"pattern": "^fx$", "apply-to": "exchanges", "definition": map[string]any{"federation-upstream-set": "all"}})
	links := awaitLink(t, api, 1)
	l := links[0].(map[string]any)
	require.Equal(t, "fx", l["exchange"])
	require.Equal(t, "fx", l["upstream_exchange"])
	require.Equal(t, "exchange", l["type"])
	require.Equal(t, "up", l["upstream"])
	require.Equal(t, "down@localhost", l["node"])
	require.Equal(t, "amqp://"+up.addr+"/", l["uri"], "credentials stripped")
	require.NotEmpty(t, l["id"])
	require.NotEmpty(t, l["timestamp"])
	require.Equal(t, "Federation link (upstream: up, policy: fed)", l["local_connection"])

	// Upstream: the exchange (declared as the downstream's), the queue with
	// RabbitMQ's name and arguments.
	uapi := startAPI(t, up)
	x := uapi.expect(200, http.MethodGet, "/api/exchanges/{vhost}/fx", nil).obj(t)
	require.Equal(t, "topic", x["type"])
	q := uapi.expect(200, http.MethodGet, "/api/queues/{vhost}/federation%3A%20fx%20-%3E%20down%40localhost", nil).obj(t)
	require.Equal(t, true, q["durable"])
	require.Equal(t, map[string]any{"x-expires": float64(3600000), "x-message-ttl": float64(60000), "x-internal-purpose": "federation"}, q["arguments"])

	// A message published upstream arrives with x-received-from.
	eventually(t, func() bool {
		publish(t, uch, "fx", "a.b", body("probe"))
		select {
		case <-got:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, "upstream bindings in place")
	publish(t, uch, "fx", "a.b", amqp.Publishing{Body: []byte("one"), Headers: amqp.Table{"h": "v"}})
	d := recv(t, got)
	for string(d.Body) == "probe" {
		d = recv(t, got)
	}
	require.Equal(t, "one", string(d.Body))
	require.Equal(t, "a.b", d.RoutingKey)
	require.Equal(t, "v", d.Headers["h"])
	hops := d.Headers["x-received-from"].([]any)
	require.Len(t, hops, 1)
	require.Equal(t, amqp.Table{"uri": "amqp://" + up.addr + "/", "exchange": "fx", "redelivered": false,
		"cluster-name": "up@localhost", "vhost": "/"}, hops[0])

	// Only what the downstream binds crosses; a new binding is followed.
	publish(t, uch, "fx", "c.d", body("unbound"))
	none(t, got)
	require.NoError(t, dch.QueueBind("fq", "c.*", "fx", false, nil))
	eventually(t, func() bool {
		publish(t, uch, "fx", "c.d", body("bound"))
		select {
		case d := <-got:
			return string(d.Body) == "bound"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, "the new binding reached the upstream")
	require.NoError(t, dch.QueueUnbind("fq", "c.*", "fx", nil))
	eventually(t, func() bool {
		for _, b := range uapi.expect(200, http.MethodGet, "/api/exchanges/{vhost}/fx/bindings/source", nil).list(t) {
			if b.(map[string]any)["routing_key"] == "c.*" {
				return false
			}
		}
		return true
	}, "the removed binding left the upstream")

	// Deleting the policy stops the link.
	api.expect(204, http.MethodDelete, "/api/policies/{vhost}/fed", nil)
	eventually(t, func() bool {
		return len(api.expect(200, http.MethodGet, "/api/federation-links", nil).list(t)) == 0
	}, "link gone")
	// And, as RabbitMQ's link on a clean stop, removes its upstream queue
	// and exchange.
	eventually(t, func() bool {
		return uapi.do(http.MethodGet, "/api/queues/{vhost}/federation%3A%20fx%20-%3E%20down%40localhost", nil).status == 404
	}, "upstream queue deleted")
	for _, x := range uapi.expect(200, http.MethodGet, "/api/exchanges/{vhost}", nil).list(t) {
		require.NotEqual(t, "x-federation-upstream", x.(map[string]any)["type"])
	}
}

// Two brokers federating one exchange both ways with max-hops 2: a message
// goes to the other broker once and does not come back (x-received-from
// names its origin, which the upstream exchange filters out).
func TestFederationExchangeBothWaysNoLoop(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	a, aapi := fedBroker(t, "a@localhost")
	b, bapi := fedBroker(t, "b@localhost")
	_, ach := a.channel(t)
	_, bch := b.channel(t)
	for _, s := range []struct {
		ch   *amqp.Channel
		api  *apiClient
		peer *broker
	}{{ach, aapi, b}, {bch, bapi, a}} {
		declareExchange(t, s.ch, "loop", "fanout")
		s.api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/peer", map[string]any{"value": map[string]any{
			"uri": s.peer.url, "max-hops": 2}})
		s.api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
			"pattern": "^loop$", "definition": map[string]any{"federation-upstream": "peer"}})
	}
	atA := boundQueue(t, ach, "at-a", "loop", "")
	atB := boundQueue(t, bch, "at-b", "loop", "")
	awaitLink(t, aapi, 1)
	awaitLink(t, bapi, 1)
	eventually(t, func() bool {
		publish(t, ach, "loop", "", body("probe"))
		select {
		case <-atB:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, "b federates from a")
	time.Sleep(300 * time.Millisecond)
	for drained := false; !drained; {
		select {
		case <-atA:
		case <-atB:
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	publish(t, ach, "loop", "", body("once"))
	require.Equal(t, "once", string(recv(t, atA).Body))
	d := recv(t, atB)
	require.Equal(t, "once", string(d.Body))
	require.Len(t, d.Headers["x-received-from"], 1)
	none(t, atA) // not back from b
	none(t, atB) // not twice
}

func TestFederationUpstreamValidation(t *testing.T) {
	warrenOnly(t, "the federation manager of an in-process broker")
	_, api := fedBroker(t, "v@localhost")
	for _, c := range []struct {
		value any
		want  string
	}{
		{map[string]any{}, `Key "uri" not found in u`},
		{map[string]any{"uri": "http://x"}, `"http://x" not a valid URI`},
		{map[string]any{"uri": "amqp://", "max-hops": "two"}, `max-hops should be a number, actually was &lt;&lt;"two"&gt;&gt;`},
		{map[string]any{"uri": "amqp://", "ack-mode": "never"}, `ack-mode should be one of`},
		{map[string]any{"uri": "amqp://", "bogus": 1}, `Unrecognised terms [{&lt;&lt;"bogus"&gt;&gt;,1}] in u`},
	} {
		r := api.expect(400, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/u", map[string]any{"value": c.value})
		require.Contains(t, r.obj(t)["reason"], c.want)
	}
	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream-set/{vhost}/s", map[string]any{"value": []any{
		map[string]any{"upstream": "u", "exchange": "other"}}})
	r := api.expect(400, http.MethodPut, "/api/parameters/federation-upstream-set/{vhost}/s", map[string]any{"value": []any{
		map[string]any{"exchange": "other"}}})
	require.Contains(t, r.obj(t)["reason"], `Key "upstream" not found in s`)
	r = api.expect(400, http.MethodPut, "/api/policies/{vhost}/p", map[string]any{"pattern": ".*", "definition": map[string]any{
		"federation-upstream": "u", "federation-upstream-set": "all"}})
	require.Contains(t, r.obj(t)["reason"], "cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together")
}

// A federated queue takes messages from its upstream queue only while it
// has consumers and nothing ready of its own (RabbitMQ's rule).
func TestFederationQueueBetweenWarrens(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	up, _ := fedBroker(t, "qup@localhost")
	down, api := fedBroker(t, "qdown@localhost")
	uc, uch := up.channel(t)
	dc, dch := down.channel(t)
	for _, ch := range []*amqp.Channel{uch, dch} {
		_, err := ch.QueueDeclare("work", true, false, false, false, nil)
		require.NoError(t, err)
	}
	for _, s := range []string{"1", "2", "3"} {
		publish(t, uch, "", "work", amqp.Publishing{Body: []byte(s), Headers: amqp.Table{"CC": []any{"elsewhere"}}})
	}
	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + up.addr}})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/fedq", map[string]any{
		"pattern": "^work$", "apply-to": "queues", "definition": map[string]any{"federation-upstream": "up"}})
	l := awaitLink(t, api, 1)[0].(map[string]any)
	require.Equal(t, "queue", l["type"])
	require.Equal(t, "work", l["queue"])
	require.Equal(t, "work", l["upstream_queue"])
	require.Equal(t, "federation-link-up", l["consumer_tag"])

	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 3, queueLength(t, uc, "work"), "no local consumer: nothing moves")
	require.Equal(t, 0, queueLength(t, dc, "work"))

	ds, err := dch.Consume("work", "", true, false, false, false, nil)
	require.NoError(t, err)
	for _, want := range []string{"1", "2", "3"} {
		d := recv(t, ds)
		require.Equal(t, want, string(d.Body))
		require.Equal(t, "", d.Headers["x-original-exchange"])
		require.Equal(t, "work", d.Headers["x-original-routing-key"])
		require.Equal(t, []any{"elsewhere"}, d.Headers["x-original-cc"])
		require.Nil(t, d.Headers["CC"])
		require.Equal(t, []any{amqp.Table{"uri": "amqp://" + up.addr, "queue": "work", "redelivered": false,
			"visit-count": int64(1)}}, d.Headers["x-received-from"])
	}
	eventually(t, func() bool { return queueLength(t, uc, "work") == 0 }, "upstream drained")
}

// warrenctl adds, lists and deletes upstreams and shows the links.
func TestFederationWarrenctl(t *testing.T) {
	warrenOnly(t, "runs warrenctl against in-process brokers")
	up, _ := fedBroker(t, "cup@localhost")
	down, api := fedBroker(t, "cdown@localhost")
	c := &ctl{t: t, bin: buildCtl(t), url: api.base, amqpURL: down.url}
	_, dch := down.channel(t)
	declareExchange(t, dch, "orders", "direct")
	out := c.ok("federation", "upstream", "add", "--uri", "amqp://guest:guest@"+up.addr, "--max-hops", "2", "--expires", "60000", "origin")
	require.Contains(t, out, "federation upstream origin set on vhost /")
	p := api.expect(200, http.MethodGet, "/api/parameters/federation-upstream/{vhost}/origin", nil).obj(t)
	require.Equal(t, map[string]any{"uri": "amqp://guest:guest@" + up.addr, "max-hops": float64(2), "expires": float64(60000)}, p["value"])
	out = c.ok("federation", "upstream", "list")
	require.Contains(t, out, "origin")
	require.Contains(t, out, "amqp://guest:guest@"+up.addr)
	c.ok("declare", "policy", "--pattern", "^orders$", "--apply-to", "exchanges", "--definition", "federation-upstream-set=all", "fed")
	awaitLink(t, api, 1)
	out = c.ok("federation", "links")
	require.Contains(t, out, "running")
	require.Contains(t, out, "orders")
	require.Contains(t, out, "amqp://"+up.addr)
	c.fails(1, "ack-mode should be one of", "federation", "upstream", "add", "--uri", "amqp://", "--ack-mode", "bogus", "x")
	c.ok("federation", "upstream", "delete", "origin")
	eventually(t, func() bool {
		return len(api.expect(200, http.MethodGet, "/api/federation-links", nil).list(t)) == 0
	}, "links stop with their upstream")
}

// TestWebConsoleFederation drives the console's Federation page in
// headless Chromium (as TestWebConsole; `make client-deps` installs it).
func TestWebConsoleFederation(t *testing.T) {
	console := needConsole(t)
	up, _ := fedBroker(t, "wup@localhost")
	down, api := fedBroker(t, "wdown@localhost")
	_, dch := down.channel(t)
	declareExchange(t, dch, "orders", "direct")
	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/origin", map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + up.addr}})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
		"pattern": "^orders$", "apply-to": "exchanges", "definition": map[string]any{"federation-upstream": "origin"}})
	awaitLink(t, api, 1)
	console.run(t, "federation.console.test.js", api.base, 2*time.Minute)
}

// A link whose upstream cannot be reached reports error with the reason
// and retries every reconnect-delay; fixing the upstream makes it run.
func TestFederationLinkErrorAndRecovery(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	up, _ := fedBroker(t, "rup@localhost")
	down, api := fedBroker(t, "rdown@localhost")
	_, dch := down.channel(t)
	declareExchange(t, dch, "events", "fanout")
	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@127.0.0.1:1", "reconnect-delay": 0.2}})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
		"pattern": "^events$", "definition": map[string]any{"federation-upstream": "up"}})
	var l map[string]any
	eventually(t, func() bool {
		links := api.expect(200, http.MethodGet, "/api/federation-links/{vhost}", nil).list(t)
		if len(links) != 1 {
			return false
		}
		l = links[0].(map[string]any)
		return l["status"] == "error"
	}, "the link reports its error")
	require.Contains(t, l["error"], "connection refused")
	require.Equal(t, "amqp://127.0.0.1:1", l["uri"])
	require.Nil(t, l["local_connection"])
	require.Len(t, api.expect(200, http.MethodGet, "/api/federation-links/state/down", nil).list(t), 1)
	require.Len(t, api.expect(200, http.MethodGet, "/api/federation-links/{vhost}/state/down", nil).list(t), 1)

	api.expect(204, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{
		"uri": "amqp://guest:guest@" + up.addr, "reconnect-delay": 0.2}})
	awaitLink(t, api, 1)
	_, uch := up.channel(t)
	got := boundQueue(t, dch, "events-here", "events", "")
	eventually(t, func() bool {
		publish(t, uch, "events", "", body("hello"))
		select {
		case <-got:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, "messages flow once the upstream is right")
	require.Empty(t, api.expect(200, http.MethodGet, "/api/federation-links/state/down", nil).list(t))

	// The management API's restart starts the link over.
	id := l["id"].(string)
	api.expect(204, http.MethodDelete, "/api/federation-links/vhost/{vhost}/"+id+"/rdown@localhost/restart", nil)
	api.expect(404, http.MethodDelete, "/api/federation-links/vhost/{vhost}/nosuchid/rdown@localhost/restart", nil)
	awaitLink(t, api, 1)
}

// Every ack mode moves messages; on-confirm and on-publish leave nothing
// unacknowledged upstream once the messages are in.
func TestFederationAckModes(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	for _, mode := range []string{"on-confirm", "on-publish", "no-ack"} {
		t.Run(mode, func(t *testing.T) {
			up, uapi := fedBroker(t, "aup@localhost")
			down, api := fedBroker(t, "adown@localhost")
			_, uch := up.channel(t)
			_, dch := down.channel(t)
			declareExchange(t, dch, "x", "fanout")
			got := boundQueue(t, dch, "xq", "x", "")
			api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{
				"uri": "amqp://guest:guest@" + up.addr, "ack-mode": mode, "prefetch-count": 10}})
			api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
				"pattern": "^x$", "definition": map[string]any{"federation-upstream": "up"}})
			awaitLink(t, api, 1)
			eventually(t, func() bool {
				publish(t, uch, "x", "", body("probe"))
				select {
				case <-got:
					return true
				case <-time.After(100 * time.Millisecond):
					return false
				}
			}, "bound upstream")
			const n = 100
			for i := range n {
				publish(t, uch, "x", "", amqp.Publishing{Body: []byte{byte(i)}})
			}
			seen := 0
			for seen < n {
				if d := recv(t, got); string(d.Body) != "probe" {
					require.Equal(t, byte(seen), d.Body[0], "in order")
					seen++
				}
			}
			q := "federation%3A%20x%20-%3E%20adown%40localhost"
			eventually(t, func() bool {
				o := uapi.expect(200, http.MethodGet, "/api/queues/{vhost}/"+q, nil).obj(t)
				return o["messages_unacknowledged"] == float64(0) && o["messages_ready"] == float64(0)
			}, "nothing left upstream")
		})
	}
}

// TestFederationKeepsUpstreamQueueAcrossStops: a link that stops only to
// run again (its broker stopping, another node taking the links over)
// leaves its upstream queue in place, so what is published upstream
// meanwhile arrives once it runs again (RabbitMQ's plugin deletes the
// queue, and those messages with it, on a clean shutdown).
func TestFederationKeepsUpstreamQueueAcrossStops(t *testing.T) {
	warrenOnly(t, "two in-process brokers federated")
	up, _ := fedBroker(t, "up@localhost")
	down := startBroker(t, server.Config{NodeName: "down@localhost"})
	api := startAPI(t, down)
	newManager := func() *federation.Manager {
		m := federation.New(down.Server, federation.Options{Logger: zaptest.NewLogger(t, zaptest.Level(zapWarn)), Check: 200 * time.Millisecond})
		m.Start()
		t.Cleanup(m.Close)
		return m
	}
	m := newManager()
	_, uch := up.channel(t)
	_, dch := down.channel(t)
	declareExchange(t, dch, "fx", "topic")
	got := boundQueue(t, dch, "fq", "fx", "a.*")
	api.expect(201, http.MethodPut, "/api/parameters/federation-upstream/{vhost}/up", map[string]any{"value": map[string]any{"uri": up.url}})
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/fed", map[string]any{
		"pattern": "^fx$", "apply-to": "exchanges", "definition": map[string]any{"federation-upstream-set": "all"}})
	awaitLink(t, api, 1)
	// Probes until one arrives: the upstream bindings are in place. They
	// are numbered: the first to arrive, first, was the first routed
	// upstream (those before it found no binding there), and every probe
	// from it on must arrive once.
	probes, first := 0, 0
	eventually(t, func() bool {
		publish(t, uch, "fx", "a.b", body(fmt.Sprint("probe ", probes)))
		probes++
		select {
		case d := <-got:
			_, err := fmt.Sscanf(string(d.Body), "probe %d", &first)
			require.NoError(t, err, string(d.Body))
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}, "upstream bindings in place")
	// Stopped just after a probe arrived here: the link must not leave
	// upstream what it forwarded (its local confirm and upstream ack may
	// still be under way), or the next run delivers it again. Probes it
	// had not forwarded (received, or still upstream) wait there.
	m.Close()
	uapi := startAPI(t, up)
	const upq = "/api/queues/{vhost}/federation%3A%20fx%20-%3E%20down%40localhost"
	var q map[string]any
	eventually(t, func() bool {
		r := uapi.do(http.MethodGet, upq, nil)
		if r.status != 200 {
			return false
		}
		q = r.obj(t)
		return q["consumers"] == float64(0) && q["messages_unacknowledged"] == float64(0)
	}, "the link's consumer gone from the upstream queue")
	waiting := q["messages"].(float64)
	require.LessOrEqual(t, waiting, float64(probes-1-first), "only probes not yet forwarded wait upstream")
	publish(t, uch, "fx", "a.b", body("while stopped"))
	eventually(t, func() bool {
		r := uapi.do(http.MethodGet, upq, nil)
		return r.status == 200 && r.obj(t)["messages"] == waiting+1
	}, "the message waits in the upstream queue")

	newManager()
	seen := make([]int, probes)
	seen[first] = 1
	for {
		d := recv(t, got)
		var i int
		if _, err := fmt.Sscanf(string(d.Body), "probe %d", &i); err == nil {
			require.Less(t, i, probes)
			seen[i]++
			continue
		}
		require.Equal(t, "while stopped", string(d.Body))
		break
	}
	// Every probe routed upstream arrived, once, before what was
	// published after them; none came twice.
	for i, n := range seen {
		if i >= first {
			require.Equal(t, 1, n, "probe %d", i)
		}
		require.LessOrEqual(t, n, 1, "probe %d", i)
	}
	eventually(t, func() bool {
		r := uapi.do(http.MethodGet, upq, nil)
		return r.status == 200 && r.obj(t)["messages"] == float64(0)
	}, "the upstream queue drained")
}
