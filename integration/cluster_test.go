package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"

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
