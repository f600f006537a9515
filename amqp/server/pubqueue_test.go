package server

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/queue"
)

// fakeLeaders is where a pubQueue's publishes go in a test: the target is
// set by the test; publishes sent to node "a" stay in flight until the
// test answers them, those sent elsewhere are taken at once, in the order
// recorded in took.
type fakeLeaders struct {
	pq *pubQueue

	mu       sync.Mutex
	to       sendTarget
	inFlight []waitingPublish // sent to "a", no outcome yet
	took     []uint64         // seqs taken by other targets, in order
	answered map[uint64]bool  // done's outcome by seq
}

func newFakeLeaders() *fakeLeaders {
	f := &fakeLeaders{to: sendTarget{node: "a"}, answered: map[uint64]bool{}}
	var stopped atomic.Bool
	f.pq = newPubQueue(f.try, f.target, &stopped, nil)
	return f
}

func (f *fakeLeaders) target() sendTarget {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.to
}

func (f *fakeLeaders) try(p waitingPublish) bool {
	t := f.target()
	f.pq.track(t)
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.node == "a" {
		f.inFlight = append(f.inFlight, p)
		return true
	}
	f.took = append(f.took, p.seq)
	f.pq.untrack()
	return true
}

func (f *fakeLeaders) publish(n int) {
	for range n {
		f.pq.publish(waitingPublish{msg: queue.NewMessage("", "k", nil, nil), until: time.Now().Add(time.Minute), done: func(bool) {}})
	}
}

// answer settles the publishes in flight to "a": those in ok committed,
// the others come back to be sent again (their leader lost the lead).
func (f *fakeLeaders) answer(ok map[uint64]bool) {
	f.mu.Lock()
	in := f.inFlight
	f.inFlight = nil
	f.mu.Unlock()
	for _, p := range in {
		if ok[p.seq] {
			f.pq.untrack()
			continue
		}
		f.pq.wait(p)
		f.pq.untrack()
	}
}

func (f *fakeLeaders) taken() []uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]uint64(nil), f.took...)
}

// Publishes keep their order across a change of leader: those after the
// change wait while publishes sent to the old leader have no outcome, and
// those that come back from it go first, in publish order.
func TestPubQueueOrderAcrossLeaderChange(t *testing.T) {
	f := newFakeLeaders()
	f.publish(5) // 1..5 in flight to a
	f.mu.Lock()
	require.Len(t, f.inFlight, 5)
	f.to = sendTarget{node: "b"}
	f.mu.Unlock()
	f.publish(3) // 6..8 wait for 1..5's outcome
	time.Sleep(30 * time.Millisecond)
	require.Empty(t, f.taken(), "publishes for b overtook those in flight to a")

	f.answer(map[uint64]bool{2: true, 4: true}) // 1, 3 and 5 come back
	require.Eventually(t, func() bool { return len(f.taken()) == 6 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []uint64{1, 3, 5, 6, 7, 8}, f.taken())
	f.publish(2)
	require.Eventually(t, func() bool { return len(f.taken()) == 8 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []uint64{1, 3, 5, 6, 7, 8, 9, 10}, f.taken())
}

// A publish that finds no leader before its deadline is nacked; those
// queued when the owner stops are nacked too.
func TestPubQueueNacks(t *testing.T) {
	var stopped atomic.Bool
	pq := newPubQueue(func(waitingPublish) bool { return false }, func() sendTarget { return sendTarget{} }, &stopped, nil)
	got := make(chan bool, 2)
	pq.publish(waitingPublish{until: time.Now().Add(30 * time.Millisecond), done: func(ok bool) { got <- ok }})
	require.False(t, <-got)
	pq.publish(waitingPublish{until: time.Now().Add(time.Minute), done: func(ok bool) { got <- ok }})
	stopped.Store(true)
	pq.leaderChanged()
	select {
	case ok := <-got:
		require.False(t, ok)
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting publish was not nacked when its owner stopped")
	}
}

// BenchmarkPubQueuePublish is a publish's bookkeeping (flow gate, deadline,
// send, tracking, answer) when a leader takes it at once, from parallel
// publishers.
func BenchmarkPubQueuePublish(b *testing.B) {
	var stopped atomic.Bool
	t := sendTarget{node: "self", epoch: 1}
	var pq *pubQueue
	var gate flowGate
	pq = newPubQueue(func(p waitingPublish) bool {
		pq.track(t)
		pq.untrack()
		pq.answer(p, true)
		return true
	}, func() sendTarget { return t }, &stopped, &gate)
	msg := queue.NewMessage("", "k", nil, nil)
	done := func(bool) {}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			pq.take(msg, -1, done)
		}
	})
}
