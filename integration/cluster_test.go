package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterFormsAndReplicatesMetadata: three bin/warren processes that
// name each other as seeds form one cluster; definitions made on any node
// (AMQP or the management API) are on every node.
func TestClusterFormsAndReplicatesMetadata(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	waitFor(t, "three running members with a leader", func() bool {
		st := nodes[0].status()
		running, leaders := 0, 0
		for _, n := range st.Nodes {
			if n.Running && n.Name != "" {
				running++
			}
			if n.Leader {
				leaders++
			}
		}
		return running == 3 && leaders == 1
	})
	require.Len(t, nodes[1].names("/api/nodes"), 3)

	// AMQP on node 1: an exchange, a queue and a binding.
	c, err := amqp.Dial(nodes[0].url())
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("cl.x", "topic", true, false, false, false, nil))
	q, err := ch.QueueDeclare("", true, false, false, false, amqp.Table{"x-max-length": int32(100)})
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "a.#", "cl.x", false, nil))
	// The management API on node 2 and 3: a vhost, a user, a policy.
	code, raw := nodes[1].api("PUT", "/api/vhosts/cl-v", "")
	require.Equal(t, 201, code, string(raw))
	code, raw = nodes[2].api("PUT", "/api/users/cl-u", `{"password":"p","tags":"management"}`)
	require.Equal(t, 201, code, string(raw))
	code, raw = nodes[2].api("PUT", "/api/policies/%2F/cl-p", `{"pattern":"^cl","definition":{"max-length":5}}`)
	require.Equal(t, 201, code, string(raw))

	for _, nd := range nodes {
		waitFor(t, "the definitions on "+nd.name, func() bool {
			return slices.Contains(nd.names("/api/exchanges/%2F"), "cl.x") &&
				slices.Contains(nd.names("/api/queues/%2F"), q.Name) &&
				slices.Contains(nd.names("/api/vhosts"), "cl-v") &&
				slices.Contains(nd.names("/api/users"), "cl-u") &&
				slices.Contains(nd.names("/api/policies/%2F"), "cl-p")
		})
		code, raw := nd.api("GET", "/api/bindings/%2F/e/cl.x/q/"+q.Name, "")
		require.Equal(t, 200, code, string(raw))
		require.Contains(t, string(raw), `"routing_key":"a.#"`)
		code, raw = nd.api("GET", "/api/queues/%2F/"+q.Name, "")
		require.Equal(t, 200, code)
		require.Contains(t, string(raw), `"node":"warren1@localhost"`, "the queue's home is the declaring node")
	}

	// An inequivalent redeclare on another node gets RabbitMQ's 406 there.
	c2, err := amqp.Dial(nodes[2].url())
	require.NoError(t, err)
	defer c2.Close()
	ch2, err := c2.Channel()
	require.NoError(t, err)
	err = ch2.ExchangeDeclare("cl.x", "direct", true, false, false, false, nil)
	amqpErr(t, err, 406)

	// Deletes replicate too.
	code, _ = nodes[2].api("DELETE", "/api/users/cl-u", "")
	require.Equal(t, 204, code)
	for _, nd := range nodes {
		waitFor(t, "the user gone on "+nd.name, func() bool { return !slices.Contains(nd.names("/api/users"), "cl-u") })
	}
}

// TestClusterPublishOnAnyNode: a message published on a node other than a
// queue's home is routed there and forwarded; with confirms, it is
// confirmed once the home node has it; consumers on the home node get
// every message in order.
func TestClusterPublishOnAnyNode(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	home, err := amqp.Dial(nodes[0].url())
	require.NoError(t, err)
	defer home.Close()
	hch, err := home.Channel()
	require.NoError(t, err)
	_, err = hch.QueueDeclare("cl.q", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, hch.ExchangeDeclare("cl.fan", "fanout", true, false, false, false, nil))
	require.NoError(t, hch.QueueBind("cl.q", "", "cl.fan", false, nil))

	other, err := amqp.Dial(nodes[1].url())
	require.NoError(t, err)
	defer other.Close()
	och, err := other.Channel()
	require.NoError(t, err)
	waitFor(t, "the queue on node 2", func() bool { return slices.Contains(nodes[1].names("/api/queues/%2F"), "cl.q") })
	require.NoError(t, och.Confirm(false))
	const n = 500
	var confirms []*amqp.DeferredConfirmation
	for i := range n {
		ex, key := "", "cl.q"
		if i%2 == 1 {
			ex, key = "cl.fan", ""
		}
		dc, err := och.PublishWithDeferredConfirmWithContext(context.Background(), ex, key, false, false,
			amqp.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: amqp.Persistent})
		require.NoError(t, err)
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		require.True(t, dc.Wait(), "publish %d confirmed", i)
	}
	ds, err := hch.Consume("cl.q", "", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range n {
		d := recv(t, ds)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.NoError(t, d.Ack(false))
	}
}

// TestClusterSurvivesAMinorityAndRefusesWithoutQuorum: with one of three
// nodes killed (kill -9), metadata changes go on; the node restarted with
// its data rejoins and has what changed meanwhile. With two of three gone,
// metadata changes fail with a clear error (503), while the queue on the
// remaining node keeps taking and delivering messages.
func TestClusterSurvivesAMinorityAndRefusesWithoutQuorum(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	code, raw := nodes[0].api("PUT", "/api/queues/%2F/before", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))

	nodes[2].kill()
	code, raw = nodes[0].api("PUT", "/api/queues/%2F/while-down", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))
	nodes[2].start()
	nodes[2].waitHTTP()
	waitFor(t, "the restarted node to have the queue declared while it was down", func() bool {
		return slices.Contains(nodes[2].names("/api/queues/%2F"), "while-down") &&
			slices.Contains(nodes[2].names("/api/queues/%2F"), "before")
	})

	nodes[1].kill()
	nodes[2].kill()
	code, raw = nodes[0].api("PUT", "/api/queues/%2F/no-quorum", `{"durable":true}`)
	require.Equal(t, 503, code, string(raw))
	require.Contains(t, string(raw), "no majority")
	code, _ = nodes[0].api("PUT", "/api/users/no-quorum", `{"password":"x","tags":""}`)
	require.Equal(t, 503, code)

	c, err := amqp.Dial(nodes[0].url())
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	publish(t, ch, "", "before", body("still served"))
	require.Equal(t, "still served", getBody(t, ch, "before"))
}

// TestClusterGrowAndShrink: a node started with the cluster's seeds but not
// among them joins by itself; forgetting it (stopped) removes it.
func TestClusterGrowAndShrink(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 1)
	code, raw := nodes[0].api("PUT", "/api/queues/%2F/grown", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))
	nodes[3].start()
	nodes[3].waitHTTP()
	waitFor(t, "four voting members", func() bool {
		st := nodes[0].status()
		voters := 0
		for _, n := range st.Nodes {
			if n.Voter && n.Running {
				voters++
			}
		}
		return voters == 4
	})
	waitFor(t, "the new node to have the metadata", func() bool {
		return slices.Contains(nodes[3].names("/api/queues/%2F"), "grown")
	})
	nodes[3].kill()
	code, raw = nodes[1].api("DELETE", "/api/cluster/nodes/warren4@localhost", "")
	require.Equal(t, 204, code, string(raw))
	waitFor(t, "three members", func() bool { return len(nodes[0].status().Nodes) == 3 })
	code, raw = nodes[2].api("PUT", "/api/queues/%2F/after-shrink", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))
}

// TestClusterConsumeOnAnyNode: a queue at home on node 1 is consumed, got,
// purged and declared passively through nodes 2 and 3, with the client's
// prefetch, acks, requeues and order kept; when the consumer's channel
// closes, or its node dies, what it had not acked goes back to the queue.
func TestClusterConsumeOnAnyNode(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	dial := func(nd *clusterNode) *amqp.Channel { return nd.channel() }
	home := dial(nodes[0])
	_, err := home.QueueDeclare("cl.c", true, false, false, false, nil)
	require.NoError(t, err)
	for _, nd := range nodes[1:] {
		waitFor(t, "the queue on "+nd.name, func() bool { return slices.Contains(nd.names("/api/queues/%2F"), "cl.c") })
	}
	pub := dial(nodes[1])
	require.NoError(t, pub.Confirm(false))
	send := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			dc, err := pub.PublishWithDeferredConfirmWithContext(context.Background(), "", "cl.c", false, false,
				amqp.Publishing{Body: []byte(fmt.Sprint(i)), DeliveryMode: amqp.Persistent})
			require.NoError(t, err)
			require.True(t, dc.Wait())
		}
	}
	send(0, 300)

	// Consumed on node 3 with a prefetch of 10 and manual acks.
	far := dial(nodes[2])
	require.NoError(t, far.Qos(10, 0, false))
	ds, err := far.Consume("cl.c", "far", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range 300 {
		d := recv(t, ds)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.False(t, d.Redelivered)
		require.NoError(t, d.Ack(false))
	}
	// The prefetch holds at the home node: ten unacked, no more.
	send(300, 20)
	held := make([]amqp.Delivery, 0, 10)
	for range 10 {
		held = append(held, recv(t, ds))
	}
	none(t, ds)
	require.NoError(t, held[0].Ack(false))
	require.Equal(t, "310", string(recv(t, ds).Body))

	// Passive declare and get through node 2: counts come from the home.
	got := dial(nodes[1])
	q, err := got.QueueDeclarePassive("cl.c", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 9, q.Messages, "320 sent, 300 acked, 11 held by the consumer")
	require.Equal(t, 1, q.Consumers)

	// Closing the consumer's channel requeues what it held, in order (the
	// home node learns it over its own connection: wait for it).
	require.NoError(t, far.Close())
	waitFor(t, "the held messages back in the queue", func() bool {
		q, err := got.QueueDeclarePassive("cl.c", true, false, false, false, nil)
		require.NoError(t, err)
		return q.Messages == 19 && q.Consumers == 0
	})
	d, ok, err := got.Get("cl.c", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "301", string(d.Body))
	require.True(t, d.Redelivered)
	require.NoError(t, d.Nack(false, true))
	d, ok, err = got.Get("cl.c", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "301", string(d.Body), "nacked with requeue: back at the head")
	require.NoError(t, d.Ack(false))

	// Purge through node 3.
	purger := dial(nodes[2])
	n, err := purger.QueuePurge("cl.c", false)
	require.NoError(t, err)
	require.Equal(t, 18, n)

	// A consumer's node killed: its unacked messages return to the queue.
	send(1000, 5)
	victim := dial(nodes[2])
	vds, err := victim.Consume("cl.c", "victim", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range 5 {
		require.Equal(t, fmt.Sprint(1000+i), string(recv(t, vds).Body))
	}
	nodes[2].kill()
	hds, err := home.Consume("cl.c", "home", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range 5 {
		d := recv(t, hds)
		require.Equal(t, fmt.Sprint(1000+i), string(d.Body))
		require.True(t, d.Redelivered)
	}
}

// TestClusterFeaturesAcrossNodes: dead-lettering from a queue on one node
// into a queue on another, TTL, an auto-delete queue's deletion and a
// queue.delete with if-empty are the same through any node.
func TestClusterFeaturesAcrossNodes(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	dial := func(nd *clusterNode) *amqp.Channel { return nd.channel() }
	ch1, ch2, ch3 := dial(nodes[0]), dial(nodes[1]), dial(nodes[2])
	// The dead-letter queue lives on node 2, the expiring queue on node 1.
	_, err := ch2.QueueDeclare("cl.dead", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch1.QueueDeclare("cl.ttl", true, false, false, false, amqp.Table{
		"x-message-ttl": int32(50), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "cl.dead"})
	require.NoError(t, err)
	waitFor(t, "both queues on node 3", func() bool {
		qs := nodes[2].names("/api/queues/%2F")
		return slices.Contains(qs, "cl.dead") && slices.Contains(qs, "cl.ttl")
	})
	require.NoError(t, ch3.Confirm(false))
	dc, err := ch3.PublishWithDeferredConfirmWithContext(context.Background(), "", "cl.ttl", false, false,
		amqp.Publishing{Body: []byte("expires"), DeliveryMode: amqp.Persistent})
	require.NoError(t, err)
	require.True(t, dc.Wait())
	ds, err := ch3.Consume("cl.dead", "dead", false, false, false, false, nil)
	require.NoError(t, err)
	d := recv(t, ds)
	require.Equal(t, "expires", string(d.Body))
	deaths, _ := d.Headers["x-death"].([]any)
	require.Len(t, deaths, 1)
	require.Equal(t, "cl.ttl", deaths[0].(amqp.Table)["queue"])
	require.Equal(t, "expired", deaths[0].(amqp.Table)["reason"])
	require.NoError(t, d.Ack(false))
	require.NoError(t, ch3.Cancel("dead", false))

	// if-empty is judged where the messages are.
	publish(t, ch2, "", "cl.ttl", body("x")) // expires into cl.dead
	publish(t, ch2, "", "cl.dead", body("kept"))
	probe := dial(nodes[0])
	waitFor(t, "a message in cl.dead", func() bool {
		q, err := probe.QueueDeclarePassive("cl.dead", true, false, false, false, nil)
		require.NoError(t, err)
		return q.Messages >= 1
	})
	_, err = probe.QueueDelete("cl.dead", false, true, false)
	amqpErr(t, err, 406)
	require.Contains(t, nodes[2].names("/api/queues/%2F"), "cl.dead")

	// An auto-delete queue consumed through node 3 goes away on every node
	// when its last consumer leaves.
	_, err = ch1.QueueDeclare("cl.auto", false, true, false, false, nil)
	require.NoError(t, err)
	waitFor(t, "cl.auto on node 3", func() bool { return slices.Contains(nodes[2].names("/api/queues/%2F"), "cl.auto") })
	cons := dial(nodes[2])
	_, err = cons.Consume("cl.auto", "auto", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, cons.Cancel("auto", false))
	for _, nd := range nodes {
		waitFor(t, "cl.auto gone on "+nd.name, func() bool { return !slices.Contains(nd.names("/api/queues/%2F"), "cl.auto") })
	}
}

// TestClusterManagementCoversAllNodes: any node's management API lists the
// whole cluster: queues with their home node's figures, every node's
// connections and consumers, and cluster-wide totals in the overview.
func TestClusterManagementCoversAllNodes(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	dial := func(nd *clusterNode) *amqp.Channel { return nd.channel() }
	home := dial(nodes[0])
	_, err := home.QueueDeclare("cl.m", true, false, false, false, nil)
	require.NoError(t, err)
	waitFor(t, "the queue on node 2", func() bool { return slices.Contains(nodes[1].names("/api/queues/%2F"), "cl.m") })
	pub := dial(nodes[1])
	require.NoError(t, pub.Confirm(false))
	for range 3 {
		dc, err := pub.PublishWithDeferredConfirmWithContext(context.Background(), "", "cl.m", false, false, body("m"))
		require.NoError(t, err)
		require.True(t, dc.Wait())
	}
	cons := dial(nodes[2])
	_, err = cons.QueueDeclare("cl.m2", false, false, false, false, nil)
	require.NoError(t, err)
	_, err = cons.Consume("cl.m2", "far-consumer", false, false, false, false, nil)
	require.NoError(t, err)

	var q struct {
		Node     string `json:"node"`
		Messages int    `json:"messages"`
	}
	code, raw := nodes[1].api("GET", "/api/queues/%2F/cl.m", "")
	require.Equal(t, 200, code)
	require.NoError(t, json.Unmarshal(raw, &q))
	require.Equal(t, "warren1@localhost", q.Node)
	require.Equal(t, 3, q.Messages, "the home node's figures, read through node 2")

	code, raw = nodes[2].api("GET", "/api/queues/%2F", "")
	require.Equal(t, 200, code)
	var qs []struct {
		Name     string `json:"name"`
		Node     string `json:"node"`
		Messages int    `json:"messages"`
	}
	require.NoError(t, json.Unmarshal(raw, &qs))
	found := 0
	for _, x := range qs {
		if x.Name == "cl.m" {
			found++
			require.Equal(t, 3, x.Messages)
		}
	}
	require.Equal(t, 1, found, "one entry per queue")

	waitFor(t, "every node's connections listed on node 1", func() bool {
		code, raw := nodes[0].api("GET", "/api/connections", "")
		require.Equal(t, 200, code)
		var cs []struct {
			Node string `json:"node"`
		}
		require.NoError(t, json.Unmarshal(raw, &cs))
		seen := map[string]bool{}
		for _, c := range cs {
			seen[c.Node] = true
		}
		return seen["warren1@localhost"] && seen["warren2@localhost"] && seen["warren3@localhost"]
	})
	code, raw = nodes[0].api("GET", "/api/consumers", "")
	require.Equal(t, 200, code)
	require.Contains(t, string(raw), "far-consumer")

	code, raw = nodes[1].api("GET", "/api/overview", "")
	require.Equal(t, 200, code)
	var o struct {
		Totals struct {
			Connections int `json:"connections"`
			Consumers   int `json:"consumers"`
		} `json:"object_totals"`
		Queue struct {
			Messages int `json:"messages"`
		} `json:"queue_totals"`
	}
	require.NoError(t, json.Unmarshal(raw, &o))
	require.GreaterOrEqual(t, o.Totals.Connections, 3)
	require.GreaterOrEqual(t, o.Totals.Consumers, 1)
	require.GreaterOrEqual(t, o.Queue.Messages, 3)

	// The cluster's name, set on one node, names it everywhere: in the
	// overview and in each node's Prometheus identity.
	code, raw = nodes[0].api("PUT", "/api/global-parameters/cluster_name", `{"value":"east"}`)
	require.Equal(t, 201, code, string(raw))
	waitFor(t, "the cluster name on node 3", func() bool {
		_, raw := nodes[2].api("GET", "/api/overview", "")
		return strings.Contains(string(raw), `"cluster_name":"east"`)
	})
	code, raw = nodes[1].api("GET", "/metrics", "")
	require.Equal(t, 200, code)
	require.Contains(t, string(raw), `rabbitmq_identity_info{rabbitmq_cluster="east",rabbitmq_node="warren2@localhost"} 1`)
}

// TestClusterTLS: with --tls-cert, --tls-key and --tls-ca the nodes talk
// mutual TLS to each other, and a node without a certificate of that CA
// cannot join.
func TestClusterTLS(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	p := newPKI(t)
	nodes := startTestCluster(t, 3, 0, "--tls-cert", p.cert, "--tls-key", p.key, "--tls-ca", p.ca)
	code, raw := nodes[0].api("PUT", "/api/queues/%2F/over-tls", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))
	waitFor(t, "the queue on node 3", func() bool { return slices.Contains(nodes[2].names("/api/queues/%2F"), "over-tls") })

	// A node with a certificate of another CA is refused by the others.
	other := newPKI(t)
	stranger := startTestCluster(t, 1, 0, "--tls-cert", other.cert, "--tls-key", other.key, "--tls-ca", other.ca)[0]
	stranger.kill()
	stranger.name, stranger.dir, stranger.seeds = "stranger@localhost", t.TempDir(), nodes[0].seeds
	stranger.start()
	stranger.waitHTTP()
	// It keeps knocking and asking for a second; none of it gets through.
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		st := nodes[0].status()
		require.Len(t, st.Nodes, 3, "a node without the cluster's CA joined")
		for _, n := range st.Nodes {
			require.NotEqual(t, stranger.name, n.Name, "a node without the cluster's CA joined")
		}
	}
	require.Contains(t, stranger.logText(), "joining the cluster through the seeds")
}

// TestClusterQueueLeaderLocator: a queue declared on one node lives where
// its locator says (RabbitMQ's queue-leader-locator): the declaring node by
// default, the node homing the fewest queues for "balanced" (policy or
// x-queue-leader-locator); messages published on one node to a queue homed
// on another are consumed on a third.
func TestClusterQueueLeaderLocator(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	homeOf := func(name string) string {
		var node string
		waitFor(t, name+" listed with its node", func() bool {
			code, raw := nodes[2].api("GET", "/api/queues/%2F/"+name, "")
			if code != 200 {
				return false
			}
			var q map[string]any
			require.NoError(t, json.Unmarshal(raw, &q))
			node, _ = q["node"].(string)
			return node != ""
		})
		return node
	}
	_, err := ch1.QueueDeclare("loc.local", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, nodes[0].name, homeOf("loc.local"), "client-local by default")

	// balanced by argument: node 1 homes a queue, nodes 2 and 3 none.
	_, err = ch1.QueueDeclare("loc.arg", true, false, false, false, amqp.Table{"x-queue-leader-locator": "balanced"})
	require.NoError(t, err)
	require.Equal(t, nodes[1].name, homeOf("loc.arg"))

	// balanced by policy: nodes 1 and 2 home one queue each, node 3 none.
	code, raw := nodes[0].api("PUT", "/api/policies/%2F/locate", `{"pattern":"^loc\\.pol","apply-to":"queues","definition":{"queue-leader-locator":"balanced"}}`)
	require.Equal(t, 201, code, string(raw))
	_, err = ch1.QueueDeclare("loc.pol", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, nodes[2].name, homeOf("loc.pol"))

	// Published on node 1, homed on node 3, consumed on node 2.
	ch2 := nodes[1].channel()
	ds, err := ch2.Consume("loc.pol", "", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch1.Confirm(false))
	dc, err := ch1.PublishWithDeferredConfirmWithContext(context.Background(), "", "loc.pol", false, false,
		amqp.Publishing{Body: []byte("a to c via b"), DeliveryMode: amqp.Persistent})
	require.NoError(t, err)
	require.True(t, dc.Wait())
	d := recv(t, ds)
	require.Equal(t, "a to c via b", string(d.Body))
	require.NoError(t, d.Ack(false))
}

// TestClusterRemoteCancelInFlight: a consumer on another node than its
// queue cancels (and closes its channel) while deliveries are on their way
// to it; those the client never saw go back to the queue instead of staying
// unacknowledged at the queue's node for good.
func TestClusterRemoteCancelInFlight(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	home := nodes[0].channel()
	_, err := home.QueueDeclare("cl.inflight", false, false, false, false, nil)
	require.NoError(t, err)
	const n = 20000
	for i := range n {
		require.NoError(t, home.PublishWithContext(context.Background(), "", "cl.inflight", false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}))
	}
	counts := func() (ready, unacked int) {
		code, raw := nodes[0].api("GET", "/api/queues/%2F/cl.inflight", "")
		require.Equal(t, 200, code)
		var q struct {
			Ready   int `json:"messages_ready"`
			Unacked int `json:"messages_unacknowledged"`
		}
		require.NoError(t, json.Unmarshal(raw, &q))
		return q.Ready, q.Unacked
	}
	settled := func() bool { r, u := counts(); return r == n && u == 0 }
	waitFor(t, "all published", settled)
	for round := range 5 {
		c, err := amqp.Dial(nodes[2].url())
		require.NoError(t, err)
		ch, err := c.Channel()
		require.NoError(t, err)
		require.NoError(t, ch.Qos(5000, 0, false))
		ds, err := ch.Consume("cl.inflight", "far", false, false, false, false, nil)
		require.NoError(t, err)
		recv(t, ds)
		require.NoError(t, ch.Cancel("far", false))
		c.Close()
		waitFor(t, fmt.Sprintf("round %d: every message ready again", round), settled, func() string {
			r, u := counts()
			return fmt.Sprintf("ready %d, unacked %d", r, u)
		})
	}
}
