package integration

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// In a cluster the links run on the metadata leader only, as the shovels
// do, every node's /api/federation-links shows them, and messages reach
// the federated exchange's queues.
func TestFederationInACluster(t *testing.T) {
	warrenOnly(t, "runs a Warren cluster")
	if testing.Short() {
		t.Skip("starts three nodes")
	}
	up, _ := fedBroker(t, "cluster-up@localhost")
	nodes := startTestCluster(t, 3, 0)
	links := func(nd *clusterNode) []map[string]any {
		code, raw := nd.api("GET", "/api/federation-links", "")
		require.Equal(t, 200, code, string(raw))
		var l []map[string]any
		require.NoError(t, json.Unmarshal(raw, &l))
		return l
	}
	var leader *clusterNode
	waitFor(t, "a metadata leader", func() bool {
		for _, s := range nodes[0].status().Nodes {
			for _, nd := range nodes {
				if s.Leader && s.Name == nd.name {
					leader = nd
				}
			}
		}
		return leader != nil
	})
	ch := nodes[0].channel()
	require.NoError(t, ch.ExchangeDeclare("fed", "fanout", true, false, false, false, nil))
	got := boundQueue(t, ch, "fed-here", "fed", "")
	code, raw := nodes[1].api("PUT", "/api/parameters/federation-upstream/%2F/up", `{"value":{"uri":"amqp://guest:guest@`+up.addr+`"}}`)
	require.Equal(t, 201, code, string(raw))
	code, raw = nodes[2].api("PUT", "/api/policies/%2F/fed", `{"pattern":"^fed$","apply-to":"exchanges","definition":{"federation-upstream-set":"all"}}`)
	require.Equal(t, 201, code, string(raw))
	waitFor(t, "the leader's link running", func() bool {
		l := links(leader)
		return len(l) == 1 && l[0]["status"] == "running" && l[0]["node"] == leader.name
	}, func() string { return leader.logText() })
	// Every node's API lists it (it asks the others), run by the leader.
	for _, nd := range nodes {
		l := links(nd)
		require.Len(t, l, 1, "%s lists the cluster's links", nd.name)
		require.Equal(t, leader.name, l[0]["node"])
	}
	_, uch := up.channel(t)
	waitFor(t, "a message from the upstream", func() bool {
		publish(t, uch, "fed", "", body("hello"))
		select {
		case <-got:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}
