package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// Replicated streams: a stream declared on a cluster is a Raft group of
// x-initial-cluster-size members (every node by default); every member
// keeps the same log, so consumers read at their offsets on any node.

var clusterStreamArgs = amqp.Table{"x-queue-type": "stream"}

// streamPublisher publishes numbered messages with confirms, a window of
// them in flight, and records which were confirmed.
type streamPublisher struct {
	mu        sync.Mutex
	confirmed map[string]bool
	nacked    int
}

func newStreamPublisher() *streamPublisher { return &streamPublisher{confirmed: map[string]bool{}} }

// publish sends prefix-from .. prefix-(from+n-1) on ch (in confirm mode),
// up to window unconfirmed at a time. It returns the first error (a
// connection lost with its node); what was not confirmed by then is not
// counted.
func (p *streamPublisher) publish(ch *amqp.Channel, queue, prefix string, from, n, window int) error {
	type pending struct {
		body string
		dc   *amqp.DeferredConfirmation
	}
	var inflight []pending
	settle := func(upto int) error {
		for len(inflight) > upto {
			pd := inflight[0]
			inflight = inflight[1:]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ok, err := pd.dc.WaitContext(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("confirm of %s: %w", pd.body, err)
			}
			p.mu.Lock()
			if ok {
				p.confirmed[pd.body] = true
			} else {
				p.nacked++
			}
			p.mu.Unlock()
		}
		return nil
	}
	for i := from; i < from+n; i++ {
		b := fmt.Sprintf("%s-%d", prefix, i)
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", queue, false, false,
			amqp.Publishing{Body: []byte(b), DeliveryMode: amqp.Persistent})
		if err != nil {
			return err
		}
		inflight = append(inflight, pending{b, dc})
		if err := settle(window - 1); err != nil {
			return err
		}
	}
	return settle(0)
}

func (p *streamPublisher) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.confirmed)
}

// streamReader consumes a stream from an offset spec with manual acks and
// checks as it goes that offsets come each once, in order, without a gap.
type streamReader struct {
	mu     sync.Mutex
	first  int64 // the first offset delivered; -1 before it
	next   int64 // the offset expected next; -1 before the first
	bodies map[string]int
	offs   int
	err    error
	done   chan struct{}
}

func readStream(t *testing.T, ch *amqp.Channel, queue string, offset any, prefetch int) *streamReader {
	t.Helper()
	require.NoError(t, ch.Qos(prefetch, 0, false))
	ds, err := ch.Consume(queue, "", false, false, false, false, amqp.Table{"x-stream-offset": offset})
	require.NoError(t, err)
	r := &streamReader{first: -1, next: -1, bodies: map[string]int{}, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for d := range ds {
			off, ok := d.Headers["x-stream-offset"].(int64)
			r.mu.Lock()
			switch {
			case !ok:
				r.err = fmt.Errorf("delivery without x-stream-offset: %v", d.Headers)
			case r.next >= 0 && off != r.next && r.err == nil:
				r.err = fmt.Errorf("offset %d after %d", off, r.next-1)
			}
			if r.first < 0 {
				r.first = off
			}
			r.next = off + 1
			r.bodies[string(d.Body)]++
			r.offs++
			r.mu.Unlock()
			d.Ack(false)
		}
	}()
	return r
}

// has reports whether every confirmed body was read; missing lists some
// that were not.
func (r *streamReader) has(p *streamPublisher) (bool, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	var missing []string
	for b := range p.confirmed {
		if r.bodies[b] == 0 {
			missing = append(missing, b)
		}
	}
	slices.Sort(missing)
	return len(missing) == 0, fmt.Sprintf("%d of %d confirmed missing (read %d, next offset %d): %.10v",
		len(missing), len(p.confirmed), r.offs, r.next, missing)
}

func (r *streamReader) check(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.NoError(t, r.err)
}

func waitRead(t *testing.T, what string, r *streamReader, p *streamPublisher) {
	t.Helper()
	var why string
	waitFor(t, what, func() bool {
		ok, w := r.has(p)
		why = w
		return ok
	}, func() string { return why })
	r.check(t)
}

// waitStreamMembers waits until nd shows name as a stream of members,
// all online, with a leader, and returns what it shows.
func waitStreamMembers(t *testing.T, nd *clusterNode, name string, members int) quorumInfo {
	t.Helper()
	var qi quorumInfo
	waitFor(t, fmt.Sprintf("stream %s with a leader and %d members online", name, members), func() bool {
		var ok bool
		qi, ok = nd.quorumInfo(name)
		return ok && qi.Leader != "" && len(qi.Members) == members && len(qi.Online) == members
	}, func() string { return fmt.Sprintf("%+v", qi) })
	require.Equal(t, "stream", qi.Type)
	return qi
}

func nodeNamed(nodes []*clusterNode, name string) int {
	return slices.IndexFunc(nodes, func(nd *clusterNode) bool { return nd.name == name })
}

// TestClusterStream: a stream declared on node 1 of three is replicated to
// all three; publishes with confirms on node 2 are read from first on node
// 3, every offset once and in order. Then the leader's node is killed in
// the middle of publishing: a new leader takes publishes within seconds,
// the consumer on a surviving node carries on without a gap, and nothing
// confirmed is lost.
func TestClusterStream(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("s1", true, false, false, false, clusterStreamArgs)
	require.NoError(t, err)
	qi := waitStreamMembers(t, nodes[2], "s1", 3)
	require.ElementsMatch(t, []string{nodes[0].name, nodes[1].name, nodes[2].name}, qi.Members)
	waitFor(t, "node 1 leading", func() bool {
		q, ok := nodes[2].quorumInfo("s1")
		return ok && q.Leader == nodes[0].name
	}, func() string {
		var out string
		for _, nd := range nodes {
			_, raw := nd.api("GET", "/api/queues", "")
			out += string(raw) + "\n"
		}
		return out
	})

	pub := newStreamPublisher()
	ch2 := nodes[1].channel()
	require.NoError(t, ch2.Confirm(false))
	require.NoError(t, pub.publish(ch2, "s1", "a", 0, 1000, 50))
	require.Equal(t, 1000, pub.count())

	rd := readStream(t, nodes[2].channel(), "s1", "first", 100)
	waitRead(t, "1000 messages read on node 3", rd, pub)
	rd.mu.Lock()
	require.Equal(t, int64(1000), rd.next, "offsets 0..999")
	require.Equal(t, 1000, rd.offs)
	rd.mu.Unlock()
	// The same log on every member: node 1 reads it too, from offset 500.
	rd1 := readStream(t, nodes[0].channel(), "s1", 500, 10)
	waitFor(t, "offsets 500..999 on node 1", func() bool {
		rd1.mu.Lock()
		defer rd1.mu.Unlock()
		return rd1.next == 1000
	})
	rd1.check(t)
	rd1.mu.Lock()
	require.Equal(t, 500, rd1.offs)
	for i := 500; i < 1000; i++ {
		require.Equal(t, 1, rd1.bodies[fmt.Sprintf("a-%d", i)], "a-%d at offset %d on node 1", i, i)
	}
	rd1.mu.Unlock()

	// Kill the leader's node while node 2 publishes.
	q, _ := nodes[1].quorumInfo("s1")
	lead := nodeNamed(nodes, q.Leader)
	require.True(t, lead == 0 || lead == 1, "leader %q", q.Leader)
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		time.Sleep(150 * time.Millisecond)
		nodes[lead].kill()
	}()
	require.NoError(t, pub.publish(ch2, "s1", "b", 0, 2000, 50))
	<-killed
	waitFor(t, "a new leader", func() bool {
		q, ok := nodes[1].quorumInfo("s1")
		return ok && q.Leader != "" && q.Leader != nodes[lead].name
	})
	require.NoError(t, pub.publish(ch2, "s1", "c", 0, 200, 50))
	var why string
	waitFor(t, "every confirmed message read on node 3", func() bool {
		ok, w := rd.has(pub)
		why = w
		return ok
	}, func() string {
		_, raw := nodes[2].api("GET", "/api/queues", "")
		_, raw2 := nodes[1].api("GET", "/api/queues", "")
		return why + "\n" + string(raw) + "\n" + string(raw2) + "\n" + nodes[2].logText()
	})
	t.Logf("confirmed %d, nacked %d, read %d on node 3", pub.count(), pub.nacked, rd.offs)
	require.GreaterOrEqual(t, pub.count(), 3000, "confirms went on through the failover")
}

// TestClusterStreamCatchUp: a member down while the stream fills (past a
// checkpoint, so the leader's group log is trimmed) returns and catches up
// from a snapshot of the leader's stream log; with one of the other two
// stopped, it serves every confirmed message from first with the last one.
// Then all three restart and keep everything.
func TestClusterStreamCatchUp(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("s2", true, false, false, false, amqp.Table{"x-queue-type": "stream", "x-stream-max-segment-size-bytes": int64(64 << 10)})
	require.NoError(t, err)
	waitStreamMembers(t, nodes[0], "s2", 3)
	require.NoError(t, ch1.Confirm(false))
	pub := newStreamPublisher()
	require.NoError(t, pub.publish(ch1, "s2", "a", 0, 100, 50))

	nodes[2].kill()
	// A leader holds its log a while for a follower that still looks live
	// (a few election timeouts): fill once node 3 no longer does.
	waitFor(t, "node 3 offline", func() bool {
		qi, ok := nodes[0].quorumInfo("s2")
		return ok && len(qi.Online) == 2
	})
	time.Sleep(2 * time.Second)                                   // a few election timeouts at the 50 ms tick
	require.NoError(t, pub.publish(ch1, "s2", "b", 0, 6000, 200)) // past a checkpoint (4,096 entries)
	nodes[2].start()
	nodes[2].waitHTTP()
	waitStreamMembers(t, nodes[2], "s2", 3)
	require.NoError(t, pub.publish(ch1, "s2", "c", 0, 100, 50))
	require.Equal(t, 6200, pub.count())
	// Node 3 caught up: it reads everything from first.
	rd := readStream(t, nodes[2].channel(), "s2", "first", 200)
	waitRead(t, "node 3 caught up", rd, pub)
	require.Contains(t, nodes[2].logText(), "stream caught up from a snapshot", "the leader's group log was trimmed: node 3 needed a snapshot")

	// Node 1 (the leader) stops: node 3 and node 2 elect a leader and serve.
	nodes[0].kill()
	ch3 := nodes[2].channel()
	require.NoError(t, ch3.Confirm(false))
	require.NoError(t, pub.publish(ch3, "s2", "d", 0, 100, 50))
	waitRead(t, "node 3 reads what it took as a member of two", rd, pub)
	rd3 := readStream(t, nodes[2].channel(), "s2", "first", 500)
	waitRead(t, "node 3 serves every confirmed message from first", rd3, pub)
	rd3.mu.Lock()
	require.Equal(t, int64(6300), rd3.next)
	rd3.mu.Unlock()

	// All three restart (node 1 killed already; the others killed too)
	// and keep everything.
	nodes[1].kill()
	nodes[2].kill()
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitHTTP()
	}
	waitStreamMembers(t, nodes[1], "s2", 3)
	for i, nd := range nodes {
		r := readStream(t, nd.channel(), "s2", "first", 500)
		waitRead(t, fmt.Sprintf("node %d keeps every confirmed message after the restart", i+1), r, pub)
		r.mu.Lock()
		require.Equal(t, int64(6300), r.next, "node %d", i+1)
		r.mu.Unlock()
	}
	ch2 := nodes[1].channel()
	require.NoError(t, ch2.Confirm(false))
	require.NoError(t, pub.publish(ch2, "s2", "e", 0, 10, 10))
	r := readStream(t, nodes[0].channel(), "s2", int64(6300), 50)
	waitFor(t, "publishes after the restart read from offset 6300", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.next == 6310
	})
	r.check(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range 10 {
		require.Equal(t, 1, r.bodies[fmt.Sprintf("e-%d", i)], "e-%d", i)
	}
}

// TestClusterStreamMemberBehind: node 1 is paused while nodes 2 and 3 take
// more publishes, then they are killed and node 1 resumes, behind its
// group with no quorum to catch up from. A consumer there asking for the
// offset after the group's last (where a client that read everything on
// node 2 resumes) gets that offset first once node 1 catches up, not node
// 1's end and then the offsets it had read already.
//
// Node 1 (the first member, which campaigns first) usually leads the group
// when it is paused: the publishes node 2 had forwarded to it then, sent again to the next leader when node 1 was
// lost, are taken by node 1 when it resumes and committed a second time
// once the group is back (confirms are at least once), after offset 300.
// So the consumer may get more than the ten records published last; what
// it must get is offset 300 first, every offset after it once, in order,
// and each of the last ten publishes.
func TestClusterStreamMemberBehind(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("s5", true, false, false, false, clusterStreamArgs)
	require.NoError(t, err)
	waitStreamMembers(t, nodes[0], "s5", 3)
	ch2 := nodes[1].channel()
	require.NoError(t, ch2.Confirm(false))
	pub := newStreamPublisher()
	require.NoError(t, pub.publish(ch2, "s5", "a", 0, 100, 50))
	waitRead(t, "node 1 has the first 100", readStream(t, nodes[0].channel(), "s5", "first", 200), pub)

	nodes[0].signal(syscall.SIGSTOP)
	require.NoError(t, pub.publish(ch2, "s5", "b", 0, 200, 50)) // nodes 2 and 3 commit them
	require.Equal(t, 300, pub.count())
	nodes[1].kill()
	nodes[2].kill()
	nodes[0].signal(syscall.SIGCONT)

	rd := readStream(t, nodes[0].channel(), "s5", int64(300), 50)
	nodes[1].start()
	nodes[2].start()
	nodes[1].waitHTTP()
	nodes[2].waitHTTP()
	waitStreamMembers(t, nodes[1], "s5", 3)
	ch2 = nodes[1].channel()
	require.NoError(t, ch2.Confirm(false))
	last := newStreamPublisher()
	require.NoError(t, last.publish(ch2, "s5", "c", 0, 10, 10))
	require.Equal(t, 10, last.count())
	waitRead(t, "node 1 delivers the last ten publishes", rd, last)
	rd.mu.Lock()
	defer rd.mu.Unlock()
	require.Equal(t, int64(300), rd.first, "node 1 starts at offset 300, not at its own end")
	require.Equal(t, rd.next-300, int64(rd.offs), "offsets from 300 on, each once (%v)", rd.bodies)
	for i := range 10 {
		require.Equal(t, 1, rd.bodies[fmt.Sprintf("c-%d", i)], "c-%d", i)
	}
}

// TestClusterStreamNonMember: with x-initial-cluster-size 2 of three
// nodes, the node outside the group publishes through a member and reads
// through one with its x-stream-offset.
func TestClusterStreamNonMember(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("s3", true, false, false, false, amqp.Table{"x-queue-type": "stream", "x-initial-cluster-size": int32(2)})
	require.NoError(t, err)
	qi := waitStreamMembers(t, nodes[0], "s3", 2)
	outside := slices.IndexFunc(nodes, func(nd *clusterNode) bool { return !slices.Contains(qi.Members, nd.name) })
	require.GreaterOrEqual(t, outside, 0)
	ch := nodes[outside].channel()
	require.NoError(t, ch.Confirm(false))
	pub := newStreamPublisher()
	require.NoError(t, pub.publish(ch, "s3", "x", 0, 300, 50))
	require.Equal(t, 300, pub.count())
	rd := readStream(t, nodes[outside].channel(), "s3", int64(100), 20)
	waitFor(t, "offsets 100..299 on the outside node", func() bool {
		rd.mu.Lock()
		defer rd.mu.Unlock()
		return rd.next == 300
	})
	rd.check(t)
	rd.mu.Lock()
	require.Equal(t, 200, rd.offs)
	require.Zero(t, rd.bodies["x-99"])
	require.Equal(t, 1, rd.bodies["x-100"])
	rd.mu.Unlock()

	// The member it reads through (the first) dies: its consumer moves to
	// the other member, without being cancelled, and reads on after the
	// last offset it delivered. With one of two members the stream takes
	// no publish; once the dead one is back, the next ones come, and none
	// of those read before comes again.
	ch2 := nodes[outside].channel()
	require.NoError(t, ch2.Qos(20, 0, false))
	ds, err := ch2.Consume("s3", "moving", false, false, false, false, amqp.Table{"x-stream-offset": int64(250)})
	require.NoError(t, err)
	cancelled := ch2.NotifyCancel(make(chan string, 1))
	for want := int64(250); want < 300; want++ {
		d := recv(t, ds)
		require.Equal(t, want, d.Headers["x-stream-offset"])
		require.NoError(t, d.Ack(false))
	}
	first := nodes[nodeNamed(nodes, qi.Members[0])]
	first.kill()
	select { // the move (on the lost connection) takes well under this
	case d := <-ds:
		t.Fatalf("offset %v read again after the move", d.Headers["x-stream-offset"])
	case <-time.After(2 * time.Second):
	}
	first.start()
	first.waitHTTP()
	waitStreamMembers(t, nodes[outside], "s3", 2)
	require.NoError(t, pub.publish(ch, "s3", "x", 300, 20, 10))
	require.Equal(t, 320, pub.count())
	for want := int64(300); want < 320; want++ {
		d := recv(t, ds)
		require.Equal(t, want, d.Headers["x-stream-offset"], "read on through the other member after the last offset delivered")
		require.Equal(t, fmt.Sprintf("x-%d", want), string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	select {
	case tag := <-cancelled:
		t.Fatalf("consumer %s cancelled", tag)
	default:
	}
}

// TestClusterStreamRetentionAndDelete: retention drops the same segments on
// every member (segments are cut at the same records), so a consumer from
// first starts at the same offset on each node; a deleted stream is gone
// from every node, and one declared again under its name starts empty.
func TestClusterStreamRetentionAndDelete(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("s4", true, false, false, false, amqp.Table{"x-queue-type": "stream",
		"x-stream-max-segment-size-bytes": int64(4096), "x-max-length-bytes": int64(20000)})
	require.NoError(t, err)
	waitStreamMembers(t, nodes[1], "s4", 3)
	require.NoError(t, ch1.Confirm(false))
	pub := newStreamPublisher()
	require.NoError(t, pub.publish(ch1, "s4", "r", 0, 1000, 100))
	// The first offset a consumer gets on each node once that node's log
	// holds the last message.
	offsetOn := func(nd *clusterNode, spec string) int64 {
		ch := nd.channel()
		defer ch.Close()
		require.NoError(t, ch.Qos(10, 0, false))
		ds, err := ch.Consume("s4", "", false, false, false, false, amqp.Table{"x-stream-offset": spec})
		require.NoError(t, err)
		return recv(t, ds).Headers["x-stream-offset"].(int64)
	}
	firsts := make([]int64, 3)
	for i, nd := range nodes {
		waitFor(t, nd.name+" holding offset 999", func() bool { return offsetOn(nd, "last") == 999 })
		firsts[i] = offsetOn(nd, "first")
	}
	require.Greater(t, firsts[0], int64(0), "retention dropped the oldest segments")
	require.Equal(t, []int64{firsts[0], firsts[0], firsts[0]}, firsts, "the same first offset on every member")

	_, err = ch1.QueueDelete("s4", false, false, false)
	require.NoError(t, err)
	for _, nd := range nodes {
		waitFor(t, "s4 gone from "+nd.name, func() bool { _, ok := nd.quorumInfo("s4"); return !ok })
	}
	_, err = ch1.QueueDeclare("s4", true, false, false, false, clusterStreamArgs)
	require.NoError(t, err)
	waitStreamMembers(t, nodes[2], "s4", 3)
	pub2 := newStreamPublisher()
	require.NoError(t, pub2.publish(ch1, "s4", "new", 0, 5, 5))
	rd := readStream(t, nodes[2].channel(), "s4", "first", 10)
	waitRead(t, "the new stream's messages on node 3", rd, pub2)
	rd.mu.Lock()
	defer rd.mu.Unlock()
	require.Equal(t, int64(5), rd.next, "offsets 0..4: the new stream starts empty")
	require.Equal(t, 5, rd.offs)
}

// TestClusterStreamFlowControl: a publisher without confirms that outruns
// the stream's group (both followers paused: nothing commits) is held back,
// as for quorum queues, rather than the leader's node buffering without
// bound; once they resume, everything is in the stream in publish order.
func TestClusterStreamFlowControl(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	ch1 := nodes[0].channel()
	_, err := ch1.QueueDeclare("flows", true, false, false, false, clusterStreamArgs)
	require.NoError(t, err)
	checkFlowControl(t, nodes, ch1, "flows", amqp.Table{"x-stream-offset": "first"})
}
