package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/cluster"
)

// leaderIndex is the index of the node that leads the metadata group, as
// nodes[from]'s /api/cluster says (-1 if none).
func leaderIndex(nodes []*clusterNode, from int) int {
	for _, n := range nodes[from].status().Nodes {
		if n.Leader {
			for i, nd := range nodes {
				if nd.clusterAdr == n.Addr {
					return i
				}
			}
		}
	}
	return -1
}

// TestClusterLeaveOnLeader: POST /api/cluster/leave on the node that leads
// the metadata group hands the leadership over first (etcd raft drops
// proposals while a transfer is under way) and is then removed.
func TestClusterLeaveOnLeader(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	var lead int
	waitFor(t, "a leader", func() bool { lead = leaderIndex(nodes, 0); return lead >= 0 })
	code, raw := nodes[lead].api("POST", "/api/cluster/leave", "")
	require.Equal(t, 204, code, "leave on the leader: %s", raw)
}

// TestClusterRejoinAfterLeave: a running node that left (POST
// /api/cluster/leave) and is added back (POST /api/cluster/join with its
// cluster address) comes back as a voter with its name (Join asks the node
// for it), so forwarding to the queues at home there works again.
func TestClusterRejoinAfterLeave(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	var lead int
	waitFor(t, "a leader", func() bool { lead = leaderIndex(nodes, 0); return lead >= 0 })
	leaver := (lead + 1) % 3 // a follower (see TestClusterLeaveOnLeader)
	other := (lead + 2) % 3
	lv := nodes[leaver]
	code, raw := lv.api("PUT", "/api/queues/%2F/rejoin-home", `{"durable":true}`)
	require.Equal(t, 201, code, string(raw))

	code, raw = lv.api("POST", "/api/cluster/leave", "")
	require.Equal(t, 204, code, string(raw))
	waitFor(t, "the node gone from the member list", func() bool { return len(nodes[other].status().Nodes) == 2 })
	code, raw = nodes[other].api("POST", "/api/cluster/join", `{"address":"`+lv.clusterAdr+`"}`)
	require.Equal(t, 204, code, string(raw))
	waitFor(t, "the node back as a running voter", func() bool {
		for _, n := range nodes[other].status().Nodes {
			if n.Addr == lv.clusterAdr {
				return n.Running && n.Voter
			}
		}
		return false
	})
	var name string
	for _, n := range nodes[other].status().Nodes {
		if n.Addr == lv.clusterAdr {
			name = n.Name
		}
	}
	assert.Equal(t, lv.name, name, "the rejoined node is listed with its name")

	// What the missing name breaks: a message published on another node to
	// the queue at home on the rejoined one.
	c, err := amqp.Dial(nodes[other].url())
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "rejoin-home", false, false, amqp.Publishing{Body: []byte("x")})
	require.NoError(t, err)
	assert.True(t, dc.Wait(), "published to a queue at home on the rejoined node: confirmed")
}

// joinAddr returns a free loopback address for a node that is not a seed
// whose cluster.NodeID is above every seed's (above: true) or below at
// least one (above: false).
func joinAddr(t *testing.T, nodes []*clusterNode, above bool) string {
	t.Helper()
	var max uint64
	for _, s := range strings.Split(nodes[0].seeds, ",") {
		max = maxU(max, cluster.NodeID(s))
	}
	// Every port from a random start: the seeds' IDs may all be high (the
	// hashes of neighbouring ports are alike), leaving few ports above.
	start := rand.IntN(65536 - 1024)
	for i := range 65536 - 1024 {
		a := fmt.Sprintf("127.0.0.1:%d", 1024+(start+i)%(65536-1024))
		if (cluster.NodeID(a) > max) != above || portTaken(a) {
			continue
		}
		if l, err := net.Listen("tcp", a); err == nil {
			l.Close()
			takePort(a)
			return a
		}
	}
	t.Fatal("no such address")
	return ""
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestClusterJoinWithHighestID: a node that is not a seed joins by asking a
// seed over the transport, and of two nodes only the lower ID dials. A
// joining node whose ID (the FNV hash of its address) is above every
// seed's knocks on them (transport.Knock) so that they dial it.
func TestClusterJoinWithHighestID(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 1)
	nodes[3].clusterAdr = joinAddr(t, nodes, true)
	nodes[3].start()
	nodes[3].waitHTTP()
	waitForOr(t, "the fourth node to join", func() bool { return len(nodes[0].status().Nodes) == 4 },
		func() string {
			return "the joining node's ID is above every seed's; its log:\n" + nodes[3].logText()
		})
}

// TestClusterForwardToCutOffLeader: the leader's links are cut (packets
// dropped, as in a real partition) and a queue is declared on a follower
// at once: the follower's forward to the leader it still knows goes
// unanswered, and after a few election timeouts (forwardWait) it asks the
// new leader the other two elected meanwhile.
func TestClusterForwardToCutOffLeader(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes behind fault-injecting proxies")
	fc := startFaultCluster(t)
	lead := fc.leader(0, 0, 1, 2)
	fc.isolate(lead, true)
	code, raw := fc.nodes[(lead+1)%3].api("PUT", "/api/queues/%2F/forwarded-at-cut", `{"durable":true}`)
	require.Equal(t, 201, code, "declared on the majority right after the leader was cut off: %s", raw)
}
