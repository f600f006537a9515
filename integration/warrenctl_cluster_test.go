package integration

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// ctlFor is warrenctl pointed at one node of a test cluster.
func ctlFor(t *testing.T, bin string, nd *clusterNode) *ctl {
	return &ctl{t: t, bin: bin, url: "http://" + nd.http, amqpURL: nd.url()}
}

// statusRows parses `warrenctl cluster status`'s table into one field list
// per node (NAME, CLUSTER_ADDRESS, RUNNING, LEADER, VOTER).
func statusRows(t *testing.T, c *ctl) [][]string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(c.ok("cluster", "status")), "\n")
	require.Equal(t, []string{"NAME", "CLUSTER_ADDRESS", "RUNNING", "LEADER", "VOTER"}, strings.Fields(lines[0]))
	var rows [][]string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		require.Len(t, f, 5, "row %q", l)
		rows = append(rows, f)
	}
	return rows
}

// TestWarrenctlCluster drives `warrenctl cluster status|join|leave|forget`
// against three bin/warren processes (and a fourth that joins).
func TestWarrenctlCluster(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes and drives warrenctl against it")
	nodes := startTestCluster(t, 3, 1)
	bin := buildCtl(t)
	c1, c3 := ctlFor(t, bin, nodes[0]), ctlFor(t, bin, nodes[2])

	// status: a table of every node, one leader, all voting and running.
	var rows [][]string
	waitFor(t, "three named, running voters with one leader", func() bool {
		rows = statusRows(t, c1)
		leaders := 0
		for _, r := range rows {
			if r[2] != "true" || r[4] != "true" || !strings.HasSuffix(r[0], "@localhost") {
				return false
			}
			if r[3] == "true" {
				leaders++
			}
		}
		return len(rows) == 3 && leaders == 1
	})
	byName := map[string][]string{}
	for _, r := range rows {
		byName[r[0]] = r
	}
	for _, nd := range nodes[:3] {
		require.Contains(t, byName, nd.name)
		require.Equal(t, nd.clusterAdr, byName[nd.name][1])
	}

	// --format json: the API's answer, nodes with their fields.
	var st struct {
		ClusterName string `json:"cluster_name"`
		Nodes       []struct {
			Name    string `json:"name"`
			Addr    string `json:"addr"`
			Running bool   `json:"running"`
			Leader  bool   `json:"leader"`
			Voter   bool   `json:"voter"`
		} `json:"nodes"`
	}
	require.NoError(t, json.Unmarshal([]byte(c1.ok("--format", "json", "cluster", "status")), &st))
	require.NotEmpty(t, st.ClusterName)
	require.Len(t, st.Nodes, 3)
	for _, n := range st.Nodes {
		require.Equal(t, byName[n.Name][1], n.Addr)
		require.True(t, n.Running && n.Voter)
	}

	// A fourth node started with the seeds joins by itself; forget removes
	// it once stopped. (Its ID below the seeds': the other order is
	// TestClusterJoinWithHighestID's.)
	nodes[3].clusterAdr = joinAddr(t, nodes, false)
	nodes[3].start()
	nodes[3].waitHTTP()
	waitForOr(t, "four rows", func() bool { return len(statusRows(t, c3)) == 4 }, func() string {
		return c3.ok("cluster", "status") + "\nnode 4's log:\n" + nodes[3].logText()
	})
	nodes[3].kill()
	require.Equal(t, "node warren4@localhost forgotten\n", c3.ok("cluster", "forget", "warren4@localhost"))
	waitFor(t, "three rows again", func() bool { return len(statusRows(t, c1)) == 3 })
	c1.fails(1, "404", "cluster", "forget", "warren4@localhost")

	// leave: a follower leaves (the others then list two nodes); join brings
	// it back, running and voting (leaving from the leader and the rejoined
	// node's name: cluster_membership_test.go).
	lead := leaderIndex(nodes, 0)
	require.GreaterOrEqual(t, lead, 0)
	leaver, stay := nodes[(lead+1)%3], ctlFor(t, bin, nodes[lead])
	require.Contains(t, ctlFor(t, bin, leaver).ok("cluster", "leave"), "left the cluster")
	waitFor(t, "two nodes listed after the leave", func() bool {
		for _, r := range statusRows(t, stay) {
			if r[1] == leaver.clusterAdr {
				return false
			}
		}
		return true
	})
	require.Equal(t, "node at "+leaver.clusterAdr+" joined the cluster\n", stay.ok("cluster", "join", leaver.clusterAdr))
	waitFor(t, "the node back as a running voter", func() bool {
		for _, r := range statusRows(t, stay) {
			if r[1] == leaver.clusterAdr {
				return r[2] == "true" && r[4] == "true"
			}
		}
		return false
	})

	// Usage mistakes: exit status 2.
	c1.fails(2, "expected one cluster address", "cluster", "join")
	c1.fails(2, "no arguments", "cluster", "leave", "extra")
	c1.fails(2, "expected one node name", "cluster", "forget")
	require.Regexp(t, regexp.MustCompile(`(?m)^\s+status\s`), c1.ok("cluster", "--help"))
}
