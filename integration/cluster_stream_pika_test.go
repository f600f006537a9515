package integration

import (
	"testing"
	"time"
)

// TestClusterStreamPika: pika declares a stream on node 1 of a
// three-node cluster and publishes to it with confirms; pika consumers on
// nodes 2 and 3 read it from first and from an offset, every offset once
// and in order.
func TestClusterStreamPika(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	runClient(t, clientDir(t, "python"), []string{
		"PUB_URL=" + nodes[0].url(),
		"CON_URLS=" + nodes[1].url() + "," + nodes[2].url(),
		"QUEUE=pika-cluster-stream",
	}, 2*time.Minute, "/usr/bin/python3", "-m", "unittest", "-v", "test_pika_stream_cluster")
}
