package multiraft

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// syncGate holds a node's ready loop before its next synced WAL write,
// once armed: the write waits (or fails) until the test says so.
type syncGate struct {
	armed atomic.Bool
	in    chan struct{} // a write is held
	out   chan error    // what the held write's hook returns
}

func newSyncGate() *syncGate {
	return &syncGate{in: make(chan struct{}, 1), out: make(chan error, 1)}
}

func (s *syncGate) hook() error {
	if !s.armed.CompareAndSwap(true, false) {
		return nil
	}
	s.in <- struct{}{}
	return <-s.out
}

// held waits until the armed gate holds a write.
func (s *syncGate) held(t *testing.T) {
	t.Helper()
	select {
	case <-s.in:
	case <-time.After(15 * time.Second):
		t.Fatal("no synced WAL write came to the gate")
	}
}

// newGatedCluster is a 3-node cluster running group 1, whose nodes' synced
// WAL writes can be held, with a few entries committed; it returns the
// leader and its two followers.
func newGatedCluster(t *testing.T) (c *testCluster, gates map[uint64]*syncGate, lead, f1, f2 uint64) {
	gates = map[uint64]*syncGate{1: newSyncGate(), 2: newSyncGate(), 3: newSyncGate()}
	c = newTestClusterPerNode(t, 3, func(cfg *Config) {
		cfg.ElectionTicks = 100 // no election while a write is held (1 s)
	}, func(id uint64, cfg *Config) { cfg.beforeSync = gates[id].hook })
	t.Cleanup(func() { // before the cluster closes: a failed test may leave a write held
		for _, g := range gates {
			g.armed.Store(false)
			select {
			case g.out <- nil:
			default:
			}
		}
	})
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	c.proposeN(1, "warm-up-", 3)
	lead = c.leader(1)
	c.waitApplied(1, 3, all3()...)
	return c, gates, lead, lead%3 + 1, (lead+1)%3 + 1
}

// proposeNext proposes data on the leader of group 1, which has nothing
// else in flight, and returns the entry's index and the channel its
// outcome arrives on.
func (c *testCluster) proposeNext(lead uint64, data string) (uint64, <-chan error) {
	c.t.Helper()
	g := c.nodes[lead].h.Group(1)
	last, err := g.storage.LastIndex()
	if err != nil {
		c.t.Fatal(err)
	}
	done := make(chan error, 1)
	if err := g.ProposeAsync([]byte(data), func(_ any, err error) { done <- err }); err != nil {
		c.t.Fatal(err)
	}
	return last + 1, done
}

func storedIndex(t *testing.T, g *Group) uint64 {
	t.Helper()
	i, err := g.storage.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// A leader sends its appends before its own WAL write is synced, so its
// followers persist in parallel with it (Raft thesis §10.2.1): while the
// leader's write is held, both followers persist the entry and answer, and
// the entry commits on their word alone. The leader applies it, and its
// proposer hears back, only once the leader's own write is done.
func TestLeaderSendsBeforeItsWriteIsSynced(t *testing.T) {
	c, gates, lead, f1, f2 := newGatedCluster(t)
	gates[lead].armed.Store(true)
	idx, done := c.proposeNext(lead, "early")
	gates[lead].held(t)

	lg := c.nodes[lead].h.Group(1)
	waitFor(t, 15*time.Second, func() bool {
		st := lg.Status()
		return st.Progress[f1].Match >= idx && st.Progress[f2].Match >= idx && st.GetCommit() >= idx
	}, "both followers to acknowledge the entry and the leader to count it committed while its own write is held")
	for _, f := range []uint64{f1, f2} {
		if got := storedIndex(t, c.nodes[f].h.Group(1)); got < idx {
			t.Fatalf("follower %d acknowledged index %d but has stored up to %d", f, idx, got)
		}
	}
	if got := storedIndex(t, lg); got >= idx {
		t.Fatalf("the leader stored index %d before its write (last %d)", idx, got)
	}
	if n := c.nodes[lead].sms[1].len(); n != 3 {
		t.Fatalf("the leader applied %d entries before its own write, want 3", n)
	}
	select {
	case err := <-done:
		t.Fatalf("the proposal returned (%v) before the leader's write", err)
	default:
	}

	gates[lead].out <- nil
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proposal did not complete after the leader's write")
	}
	c.waitApplied(1, 4, all3()...)
	c.agree(1, all3()...)
	if n := c.nodes[lead].h.Stats().EarlyMessages; n == 0 {
		t.Fatal("the leader counted no early message")
	}
	for _, f := range []uint64{f1, f2} {
		if n := c.nodes[f].h.Stats().EarlyMessages; n != 0 {
			t.Fatalf("follower %d sent %d messages before its write was synced", f, n)
		}
	}
}

// A follower answers an append only once its WAL write is synced: while
// both followers' writes are held, the leader hears no acknowledgement and
// commits nothing; a follower whose write is held is not counted while the
// other carries the entry to commitment with the leader.
func TestFollowerAnswersOnlyAfterItsWriteIsSynced(t *testing.T) {
	c, gates, lead, f1, f2 := newGatedCluster(t)
	lg := c.nodes[lead].h.Group(1)

	// Both followers held: nothing acknowledged, nothing committed.
	gates[f1].armed.Store(true)
	gates[f2].armed.Store(true)
	idx, done := c.proposeNext(lead, "held")
	gates[f1].held(t)
	gates[f2].held(t)
	for range 50 { // 100 ms: an answer on loopback takes well under one
		st := lg.Status()
		if st.Progress[f1].Match >= idx || st.Progress[f2].Match >= idx || st.GetCommit() >= idx {
			t.Fatalf("acknowledged or committed while both followers' writes are held: match %d/%d commit %d, index %d",
				st.Progress[f1].Match, st.Progress[f2].Match, st.GetCommit(), idx)
		}
		select {
		case err := <-done:
			t.Fatalf("the proposal returned (%v) with no follower's write done", err)
		case <-time.After(2 * time.Millisecond):
		}
	}

	// f2's write done: the entry commits with the leader and f2, while
	// f1, still held, has acknowledged nothing.
	gates[f2].out <- nil
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the proposal did not complete with one follower's write done")
	}
	if m := lg.Status().Progress[f1].Match; m >= idx {
		t.Fatalf("follower %d acknowledged index %d (match %d) while its write was held", f1, idx, m)
	}
	gates[f1].out <- nil
	waitFor(t, 15*time.Second, func() bool { return lg.Status().Progress[f1].Match >= idx },
		"the follower to acknowledge once its write is done")
	c.waitApplied(1, 4, all3()...)
	c.agree(1, all3()...)
}

// An entry the followers committed while the leader's own write was held
// survives the leader's crash before that write: the followers elect a
// new leader that has it, and the old leader, restarted without it, gets
// it back.
func TestEntryCommittedByFollowersSurvivesLeaderCrash(t *testing.T) {
	c, gates, lead, f1, f2 := newGatedCluster(t)
	gates[lead].armed.Store(true)
	idx, done := c.proposeNext(lead, "survives")
	gates[lead].held(t)
	lg := c.nodes[lead].h.Group(1)
	waitFor(t, 15*time.Second, func() bool { return lg.Status().GetCommit() >= idx },
		"the followers to commit the entry while the leader's write is held")

	// The leader dies before its write: it never reaches its WAL.
	gates[lead].out <- errors.New("crash before the write")
	if err := <-done; err == nil {
		t.Fatal("the proposal succeeded on a leader that failed before its write")
	}
	c.stop(lead)
	c.leader(1, f1, f2)
	c.waitApplied(1, 4, f1, f2)
	c.agree(1, f1, f2)
	if got := string(c.nodes[f1].sms[1].copy()[3]); got != "survives" {
		t.Fatalf("entry 4 is %q", got)
	}

	c.start(lead)
	c.startGroup(lead, 1, nil)
	c.waitApplied(1, 4, all3()...)
	c.agree(1, all3()...)
}

// The entries ProposeAsync queues between two cycles go into raft as one
// proposal: the leader sends each follower one append for all of them, not
// one per entry, and they commit in the order of the calls.
func TestProposeAsyncBatchesAppends(t *testing.T) {
	c, gates, lead, _, _ := newGatedCluster(t)
	g := c.nodes[lead].h.Group(1)
	gates[lead].armed.Store(true)
	_, first := c.proposeNext(lead, "first")
	gates[lead].held(t) // the ready loop waits: what follows queues up

	const n = 1000
	results := make(chan error, n)
	for i := range n {
		if err := g.ProposeAsync([]byte(fmt.Sprintf("e%03d", i)), func(_ any, err error) { results <- err }); err != nil {
			t.Fatal(err)
		}
	}
	before := c.nodes[lead].h.Stats().Messages
	gates[lead].out <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Fatal(err)
		}
	}
	// One append per follower for the batch, another or two to carry the
	// commit index, and heartbeats (a tick is 10 ms: 200 a second to the
	// two followers): far below the n per follower that stepping the
	// entries one by one makes raft send.
	if sent := c.nodes[lead].h.Stats().Messages - before; sent >= n/2 {
		t.Fatalf("the leader sent %d messages for %d entries", sent, n)
	}
	c.waitApplied(1, 4+n, all3()...)
	c.agree(1, all3()...)
	got := c.nodes[lead].sms[1].copy()
	for i := range n {
		if want := fmt.Sprintf("e%03d", i); string(got[4+i]) != want {
			t.Fatalf("entry %d is %q, want %q", 4+i, got[4+i], want)
		}
	}
}

// TestProposalChunk: queued entries are stepped in proposals of at most
// MaxSizePerMsg bytes of data, at least one entry each, in order.
func TestProposalChunk(t *testing.T) {
	ents := func(sizes ...int) []*pb.Entry {
		var out []*pb.Entry
		for _, n := range sizes {
			out = append(out, &pb.Entry{Data: make([]byte, n)})
		}
		return out
	}
	for _, tc := range []struct {
		sizes []int
		max   uint64
		want  []int
	}{
		{[]int{10, 10, 10}, 100, []int{3}},
		{[]int{40, 40, 40}, 100, []int{2, 1}},
		{[]int{200, 10, 10}, 100, []int{1, 2}},
		{[]int{50, 50, 50, 50}, 100, []int{2, 2}},
		{[]int{10, 200, 10}, 100, []int{1, 1, 1}},
	} {
		es := ents(tc.sizes...)
		var got []int
		for len(es) > 0 {
			n := proposalChunk(es, tc.max)
			got = append(got, n)
			es = es[n:]
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("sizes %v max %d: chunks %v, want %v", tc.sizes, tc.max, got, tc.want)
		}
	}
}

// TestSendsEarly: only a Ready of appends and heartbeats that changes no
// Term or Vote and holds no snapshot goes out before the WAL write.
func TestSendsEarly(t *testing.T) {
	g := &Group{hsTerm: 2, hsVote: 1}
	msg := func(ty pb.MessageType) *pb.Message { return &pb.Message{Type: ty.Enum()} }
	hs := func(term, vote uint64) *pb.HardState {
		return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(uint64(7))}
	}
	for _, tc := range []struct {
		name string
		rd   raft.Ready
		want bool
	}{
		{"appends", raft.Ready{Messages: []*pb.Message{msg(pb.MsgApp), msg(pb.MsgApp)}}, true},
		{"appends and heartbeats, commit moved", raft.Ready{HardState: hs(2, 1), Messages: []*pb.Message{msg(pb.MsgApp), msg(pb.MsgHeartbeat)}}, true},
		{"new term", raft.Ready{HardState: hs(3, 1), Messages: []*pb.Message{msg(pb.MsgApp)}}, false},
		{"new vote", raft.Ready{HardState: hs(2, 3), Messages: []*pb.Message{msg(pb.MsgApp)}}, false},
		{"an answer among them", raft.Ready{Messages: []*pb.Message{msg(pb.MsgApp), msg(pb.MsgAppResp)}}, false},
		{"a vote", raft.Ready{Messages: []*pb.Message{msg(pb.MsgVote)}}, false},
		{"a snapshot", raft.Ready{Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(5)), Term: new(uint64(2))}}, Messages: []*pb.Message{msg(pb.MsgApp)}}, false},
		{"no messages", raft.Ready{HardState: hs(2, 1)}, false},
	} {
		w := work{g: g, rd: tc.rd, has: true}
		if got := w.sendsEarly(); got != tc.want {
			t.Errorf("%s: sendsEarly %v, want %v", tc.name, got, tc.want)
		}
	}
}
