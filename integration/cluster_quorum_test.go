package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// quorumInfo is a quorum queue as /api/queues/{vhost}/{name} shows it.
type quorumInfo struct {
	Type     string   `json:"type"`
	Leader   string   `json:"leader"`
	Node     string   `json:"node"`
	Members  []string `json:"members"`
	Online   []string `json:"online"`
	Messages int      `json:"messages"`
}

func (nd *clusterNode) quorumInfo(name string) (quorumInfo, bool) {
	nd.t.Helper()
	code, raw := nd.api("GET", "/api/queues/%2F/"+name, "")
	if code != 200 {
		return quorumInfo{}, false
	}
	var qi quorumInfo
	require.NoError(nd.t, json.Unmarshal(raw, &qi))
	return qi, true
}

// confirmedPublisher publishes numbered persistent messages with confirms
// on one connection and records which were confirmed.
type confirmedPublisher struct {
	mu        sync.Mutex
	confirmed map[string]bool
	nacked    int
}

func (p *confirmedPublisher) publish(t *testing.T, ch *amqp.Channel, queue, prefix string, n int) {
	t.Helper()
	for i := range n {
		b := fmt.Sprintf("%s-%d", prefix, i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{Body: []byte(b), DeliveryMode: amqp.Persistent})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		ok, err := dc.WaitContext(ctx)
		cancel()
		require.NoError(t, err, "no confirm for %s", b)
		p.mu.Lock()
		if ok {
			p.confirmed[b] = true
		} else {
			p.nacked++
		}
		p.mu.Unlock()
	}
}

// TestClusterQuorumQueue: a quorum queue of a three-node cluster is a Raft
// group of all three; a publish is confirmed once a majority has it; when
// the leader's node is killed, another leads within seconds, and clients of
// the other nodes go on publishing and consuming without redeclaring;
// nothing confirmed is lost (messages unacked at the old leader come back).
func TestClusterQuorumQueue(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("qq", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	var qi quorumInfo
	waitFor(t, "the queue led by node 1 with three members online", func() bool {
		var ok bool
		qi, ok = nodes[2].quorumInfo("qq")
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	}, func() string { return fmt.Sprintf("%+v\nnode 1 log:\n%s", qi, nodes[0].logText()) })
	require.Equal(t, "quorum", qi.Type)
	require.ElementsMatch(t, []string{nodes[0].name, nodes[1].name, nodes[2].name}, qi.Members)

	pub := &confirmedPublisher{confirmed: map[string]bool{}}
	ch2 := nodes[1].channel()
	require.NoError(t, ch2.Confirm(false))
	pub.publish(t, ch2, "qq", "a", 200)
	require.Len(t, pub.confirmed, 200)

	// Consumed on node 3 with manual acks.
	ch3 := nodes[2].channel()
	require.NoError(t, ch3.Qos(50, 0, false))
	ds, err := ch3.Consume("qq", "c3", false, false, false, false, nil)
	require.NoError(t, err)
	got := map[string]int{}
	var gotMu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case d, ok := <-ds:
				if !ok {
					return
				}
				gotMu.Lock()
				got[string(d.Body)]++
				gotMu.Unlock()
				d.Ack(false)
			case <-stop:
				return
			}
		}
	}()
	delivered := func(prefix string, n int) bool {
		gotMu.Lock()
		defer gotMu.Unlock()
		for i := range n {
			if got[fmt.Sprintf("%s-%d", prefix, i)] == 0 {
				return false
			}
		}
		return true
	}
	waitFor(t, "200 messages consumed on node 3", func() bool { return delivered("a", 200) })

	// Kill the leader's node while messages flow: publishing on node 2
	// and consuming on node 3 go on.
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		time.Sleep(200 * time.Millisecond)
		nodes[0].kill()
	}()
	pub.publish(t, ch2, "qq", "b", 500)
	<-killed
	waitFor(t, "a new leader", func() bool {
		qi, ok := nodes[1].quorumInfo("qq")
		return ok && qi.Leader != "" && qi.Leader != nodes[0].name
	})
	pub.publish(t, ch2, "qq", "c", 100)

	waitFor(t, "every confirmed message consumed", func() bool {
		gotMu.Lock()
		defer gotMu.Unlock()
		for b := range pub.confirmed {
			if got[b] == 0 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	// What node 3's consumer was sent and did not read goes back.
	require.NoError(t, ch3.Close())

	// Node 1 returns and catches up from the log; then the leader of the
	// moment (node 2 or 3) is killed, and node 1 with the last one carries
	// on: publishing and consuming on node 1.
	nodes[0].start()
	nodes[0].waitHTTP()
	waitFor(t, "node 1 online again", func() bool {
		qi, ok := nodes[0].quorumInfo("qq")
		return ok && len(qi.Online) == 3
	})
	ch1 = nodes[0].channel()
	require.NoError(t, ch1.Confirm(false))
	pub.publish(t, ch1, "qq", "d", 100)
	qi, _ = nodes[0].quorumInfo("qq")
	leader := slices.IndexFunc(nodes, func(nd *clusterNode) bool { return nd.name == qi.Leader })
	require.True(t, leader == 1 || leader == 2, "leader %q", qi.Leader)
	nodes[leader].kill()
	pub.publish(t, ch1, "qq", "e", 100)
	ds1, err := ch1.Consume("qq", "c1", false, false, false, false, nil)
	require.NoError(t, err)
	missing := func() string {
		var out []string
		for b := range pub.confirmed {
			if got[b] == 0 {
				out = append(out, b)
			}
		}
		slices.Sort(out)
		return fmt.Sprintf("%d missing: %.20v", len(out), out)
	}
	waitFor(t, "every confirmed message consumed on node 1", func() bool {
		for {
			select {
			case d := <-ds1:
				got[string(d.Body)]++
				d.Ack(false)
				continue
			default:
			}
			break
		}
		for b := range pub.confirmed {
			if got[b] == 0 {
				return false
			}
		}
		return true
	}, missing)
	var dups []string
	for b, n := range got {
		if n > 1 {
			dups = append(dups, b)
		}
	}
	slices.Sort(dups)
	t.Logf("confirmed %d, nacked %d, duplicates %d", len(pub.confirmed), pub.nacked, len(dups))
	require.GreaterOrEqual(t, len(pub.confirmed), 700, "confirms went on through the failover")
}

// TestClusterQuorumQueueNonMember: with x-quorum-initial-group-size 2 on
// three nodes, the node outside the group still serves the queue: it
// learns the leader from the metadata and forwards publishes and consumers
// to it.
func TestClusterQuorumQueueNonMember(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("qq2", true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int32(2)})
	require.NoError(t, err)
	var qi quorumInfo
	waitFor(t, "a leader with two members online", func() bool {
		var ok bool
		qi, ok = nodes[0].quorumInfo("qq2")
		return ok && qi.Leader != "" && len(qi.Online) == 2
	})
	require.Len(t, qi.Members, 2)
	outside := slices.IndexFunc(nodes, func(nd *clusterNode) bool { return !slices.Contains(qi.Members, nd.name) })
	require.GreaterOrEqual(t, outside, 0)
	nd := nodes[outside]
	waitFor(t, "the outside node to know the leader", func() bool {
		q, ok := nd.quorumInfo("qq2")
		return ok && q.Leader == qi.Leader
	})
	ch := nd.channel()
	require.NoError(t, ch.Confirm(false))
	pub := &confirmedPublisher{confirmed: map[string]bool{}}
	pub.publish(t, ch, "qq2", "x", 100)
	require.Len(t, pub.confirmed, 100)
	ds, err := ch.Consume("qq2", "", false, false, false, false, nil)
	require.NoError(t, err)
	for range 100 {
		d := recv(t, ds)
		require.True(t, pub.confirmed[string(d.Body)], string(d.Body))
		require.NoError(t, d.Ack(false))
	}
}

// TestClusterQuorumMembers: a queue's group grows and shrinks while it
// holds messages (the new member catches up from the leader: once the
// original member is removed, it alone serves them all), and rebalancing
// spreads leaders over the nodes.
func TestClusterQuorumMembers(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("qm", true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-quorum-initial-group-size": int32(1)})
	require.NoError(t, err)
	waitFor(t, "node 1 leading the one-member queue", func() bool {
		qi, ok := nodes[0].quorumInfo("qm")
		return ok && qi.Leader == nodes[0].name
	})
	require.NoError(t, ch1.Confirm(false))
	pub := &confirmedPublisher{confirmed: map[string]bool{}}
	pub.publish(t, ch1, "qm", "m", 50)

	code, raw := nodes[0].api("POST", "/api/queues/%2F/qm/members", `{"node":"`+nodes[2].name+`"}`)
	require.Equal(t, 201, code, string(raw))
	code, _ = nodes[0].api("POST", "/api/queues/%2F/qm/members", `{"node":"`+nodes[2].name+`"}`)
	require.Equal(t, 204, code, "already a member")
	waitFor(t, "two members online", func() bool {
		qi, ok := nodes[1].quorumInfo("qm")
		return ok && len(qi.Members) == 2 && len(qi.Online) == 2
	})
	code, raw = nodes[1].api("DELETE", "/api/queues/%2F/qm/members/"+nodes[0].name, "")
	require.Equal(t, 204, code, string(raw))
	waitFor(t, "node 3 leading alone", func() bool {
		qi, ok := nodes[1].quorumInfo("qm")
		return ok && qi.Leader == nodes[2].name && slices.Equal(qi.Members, []string{nodes[2].name})
	})
	ch2 := nodes[1].channel()
	for range 50 {
		d, ok, err := ch2.Get("qm", false)
		require.NoError(t, err)
		require.True(t, ok, "a message that was confirmed before node 3 joined")
		require.True(t, pub.confirmed[string(d.Body)], string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	_, ok, err := ch2.Get("qm", false)
	require.NoError(t, err)
	require.False(t, ok)

	code, raw = nodes[0].api("DELETE", "/api/queues/%2F/qm/members/"+nodes[2].name, "")
	require.Equal(t, 400, code, "the last member stays: %s", raw)
	code, _ = nodes[0].api("POST", "/api/queues/%2F/qm/members", `{"node":"nobody@nowhere"}`)
	require.Equal(t, 404, code)

	// Three queues led by node 1, rebalanced: one leader per node.
	for _, n := range []string{"qr1", "qr2", "qr3"} {
		_, err := ch1.QueueDeclare(n, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
		require.NoError(t, err)
		waitFor(t, n+" led by node 1", func() bool {
			qi, ok := nodes[0].quorumInfo(n)
			return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
		})
	}
	code, raw = nodes[1].api("POST", "/api/rebalance/queues", "")
	require.Equal(t, 200, code, string(raw))
	t.Logf("rebalance: %s", raw)
	leaders := map[string]int{}
	waitFor(t, "one leader per node", func() bool {
		leaders = map[string]int{}
		for _, n := range []string{"qr1", "qr2", "qr3", "qm"} {
			qi, ok := nodes[0].quorumInfo(n)
			if !ok {
				return false
			}
			leaders[qi.Leader]++
		}
		return leaders[nodes[0].name] <= 2 && leaders[nodes[1].name] >= 1
	}, func() string { return fmt.Sprint(leaders) + "\n" + nodes[0].logText() + "\n" + nodes[1].logText() })
}

// TestClusterQuorumReplacesLostMember: with --quorum-replace-after, a
// member whose node stays unreachable is replaced by the node outside the
// group, which catches up; the queue keeps its messages.
func TestClusterQuorumReplacesLostMember(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 4, 0, "--quorum-replace-after", "1s")
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("qx", true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	var qi quorumInfo
	waitFor(t, "node 1 leading three members", func() bool {
		var ok bool
		qi, ok = nodes[0].quorumInfo("qx")
		return ok && qi.Leader == nodes[0].name && len(qi.Online) == 3
	})
	require.NoError(t, ch1.Confirm(false))
	pub := &confirmedPublisher{confirmed: map[string]bool{}}
	pub.publish(t, ch1, "qx", "x", 50)
	var lost, outside *clusterNode
	for _, nd := range nodes[1:] {
		if slices.Contains(qi.Members, nd.name) {
			lost = nd
		} else {
			outside = nd
		}
	}
	require.NotNil(t, lost)
	require.NotNil(t, outside)
	lost.kill()
	waitFor(t, "the lost member replaced by the node outside the group", func() bool {
		q, ok := nodes[0].quorumInfo("qx")
		return ok && len(q.Members) == 3 && slices.Contains(q.Members, outside.name) &&
			!slices.Contains(q.Members, lost.name) && len(q.Online) == 3
	}, func() string { q, _ := nodes[0].quorumInfo("qx"); return fmt.Sprintf("%+v", q) })
	ch := outside.channel()
	for range 50 {
		d, ok, err := ch.Get("qx", false)
		require.NoError(t, err)
		require.True(t, ok)
		require.True(t, pub.confirmed[string(d.Body)])
		require.NoError(t, d.Ack(false))
	}
}
