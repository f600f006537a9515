package integration

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterQuorumSnapshotStreamed: a member whose node was down while its
// quorum queue grew past what one frame may carry (the limit lowered to
// 256 KiB here, 64 KiB chunks) catches up from a snapshot streamed in
// chunks, then leads the queue (the other members' nodes killed in turn
// until it wins an election) and serves it from its own store: every
// confirmed message comes out once, in order.
func TestClusterQuorumSnapshotStreamed(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	t.Setenv("WARREN_RAFT_SNAPSHOT_FRAME_MAX", "262144")
	t.Setenv("WARREN_RAFT_SNAPSHOT_CHUNK", "65536")
	const n = 12000 // about 700 KiB of state: above the frame limit
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("snap", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	waitFor(t, "the queue led by node 1 with three members online", func() bool {
		qi, ok := nodes[0].quorumInfo("snap")
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	})
	// Node 3 misses the fill; the leader checkpoints every 4,096 entries
	// and trims its log past it.
	nodes[2].kill()
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

	// Node 3 alone: the others leave the group, then their nodes die.
	// Node 3 made the leader: whoever else leads is killed (the other node
	// restarted first, to keep a majority), until node 3 wins an election.
	// A leader delivers from its own store, so every message must have
	// come to node 3 with the snapshot.
	down := nodes[0]
	down.kill()
	for round := 0; ; round++ {
		var lead string
		waitFor(t, "a leader among the two live members", func() bool {
			qi, ok := nodes[2].quorumInfo("snap")
			lead = qi.Leader
			return ok && lead != "" && lead != down.name && qi.Messages == n
		})
		if lead == nodes[2].name {
			break
		}
		require.Less(t, round, 10, "node 3 never won an election")
		down.start()
		down.waitHTTP()
		waitFor(t, "three members online", func() bool {
			qi, ok := nodes[2].quorumInfo("snap")
			return ok && len(qi.Online) == 3
		})
		for _, nd := range nodes[:2] {
			if nd.name == lead {
				nd.kill()
				down = nd
			}
		}
	}
	drainNumbered(t, nodes[2].channel(), "snap", n)
}
