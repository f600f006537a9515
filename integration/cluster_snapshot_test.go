package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterQuorumSnapshotStreamed: a member whose node was down while its
// quorum queue grew past what one frame may carry (the limit lowered to
// 256 KiB here, 64 KiB chunks) catches up from a snapshot streamed in
// chunks, then serves the queue alone: the other two members are removed
// from the group and their nodes killed, and every confirmed message comes
// out of the returned member once, in order.
func TestClusterQuorumSnapshotStreamed(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	t.Setenv("WARREN_RAFT_SNAPSHOT_FRAME_MAX", "262144")
	t.Setenv("WARREN_RAFT_SNAPSHOT_CHUNK", "65536")
	const n = 20000 // about 1.2 MB of state: above the frame limit
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("snap", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	waitFor(t, "the queue led by node 1 with three members online", func() bool {
		qi, ok := nodes[0].quorumInfo("snap")
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	})
	// Node 3 misses the fill; the leader checkpoints every 4,096 entries
	// and trims its log past it once node 3 no longer counts as live (a
	// leader holds its log a while for a live follower that is behind).
	nodes[2].kill()
	waitFor(t, "node 3 offline", func() bool {
		qi, ok := nodes[0].quorumInfo("snap")
		return ok && len(qi.Online) == 2
	})
	time.Sleep(2 * time.Second) // a few election timeouts at the 50 ms tick
	publishNumbered(t, ch1, "snap", 0, n)

	nodes[2].start()
	nodes[2].waitHTTP()
	waitFor(t, "node 3 given the queue's state in chunks", func() bool {
		return strings.Contains(nodes[2].logText(), "snapshot received")
	}, func() string { return "node 1 log:\n" + nodes[0].logText() })
	waitFor(t, "node 1 done sending it", func() bool {
		return strings.Contains(nodes[0].logText(), "snapshot sent to a follower")
	})
	waitFor(t, "node 3 online", func() bool {
		qi, ok := nodes[0].quorumInfo("snap")
		return ok && len(qi.Online) == 3
	})

	// Node 3 alone: the other two leave the queue's group, one change at a
	// time, asked of node 1 (the leader's node: each change is made from
	// the node's own view of the members), then their nodes are killed. A
	// leader delivers from its own store, so every message must have come
	// to node 3 with the snapshot.
	for _, nd := range []*clusterNode{nodes[1], nodes[0]} {
		code, raw := nodes[0].api("DELETE", "/api/queues/%2F/snap/members/"+nd.name, "")
		require.Equal(t, 204, code, string(raw))
		waitFor(t, nd.name+" out of the queue's members on every node", func() bool {
			for _, o := range nodes {
				qi, ok := o.quorumInfo("snap")
				if !ok || slices.Contains(qi.Members, nd.name) {
					return false
				}
			}
			return true
		})
	}
	waitFor(t, "node 3 leading the queue alone with every message", func() bool {
		qi, ok := nodes[2].quorumInfo("snap")
		return ok && qi.Leader == nodes[2].name && qi.Messages == n && len(qi.Members) == 1
	}, func() string {
		qi, _ := nodes[2].quorumInfo("snap")
		return fmt.Sprintf("%+v\nnode 3 log:\n%s", qi, nodes[2].logText())
	})
	nodes[0].kill()
	nodes[1].kill()
	drainNumbered(t, nodes[2].channel(), "snap", n)
}
