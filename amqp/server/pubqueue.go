package server

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mq/warren/queue"
)

// pubQueue keeps one node's publishes to a replicated queue or stream in
// publish order on their way to the group's leader. Its owner (replica,
// streamReplica) supplies try, which proposes a publish here or sends it
// to the node that takes it, and target, which names where try would send
// one now.
//
// A publish goes straight to try unless publishes before it wait: for a
// leader (try had none to send them to), or behind publishes sent to
// another target whose outcome is not known yet. Those may come back to
// be sent again (their leader lost the leadership, or their node was lost)
// and must not be overtaken: a publish for a new target waits until every
// publish sent to the old one has its outcome, and those that come back go
// into the waiting queue at their place in publish order. One goroutine
// drains the queue, in order.
type pubQueue struct {
	try     func(p waitingPublish) bool // false: nowhere to send p now
	target  func() sendTarget
	stopped *atomic.Bool // the owner's: waiting publishes are nacked
	flow    *flowGate    // the owner's: publishes counted until answered

	kick chan struct{} // the leader changed: try the waiting again

	// sent counts the publishes sent to sentTo (the last target one was
	// sent to) with no outcome yet. Atomic, so that sending and answering
	// a publish take no lock while its target stays the same; sentTo
	// changes under mu.
	sent   atomic.Int64
	sentTo atomic.Pointer[sendTarget]

	mu      sync.Mutex
	seq     uint64           // publishes numbered; guarded by mu
	waiting []waitingPublish // in publish order; guarded by mu
	// draining: a goroutine drains waiting; guarded by mu.
	draining bool
}

// waitingPublish is a publish on its way to the group's leader.
type waitingPublish struct {
	msg   *queue.Message
	ttl   int64 // a quorum queue's x-message-ttl; unused for streams
	done  func(bool)
	until time.Time // nacked after this
	seq   uint64    // publish order on this node
	size  int64     // counted at the flow gate until answered
}

// sendTarget is where a publish goes: this node while it leads (epoch
// tells its leaderships apart), or another node.
type sendTarget struct {
	node  string
	epoch uint64
}

func newPubQueue(try func(waitingPublish) bool, target func() sendTarget, stopped *atomic.Bool, flow *flowGate) *pubQueue {
	return &pubQueue{try: try, target: target, stopped: stopped, flow: flow, kick: make(chan struct{}, 1)}
}

// take is a publish to the owner's group: counted at its flow gate until
// answered (a publisher that outruns the group waits there, flowgate.go,
// instead of the node buffering without bound), then sent in order; nacked
// at once when the owner stopped. done may be nil.
func (pq *pubQueue) take(msg *queue.Message, ttl int64, done func(bool)) {
	if done == nil {
		done = func(bool) {}
	}
	if pq.stopped.Load() {
		done(false)
		return
	}
	size := int64(len(msg.Header) + len(msg.Body))
	if pq.flow != nil {
		pq.flow.take(size)
	}
	pq.publish(waitingPublish{msg: msg, ttl: ttl, done: done, until: time.Now().Add(publishWait), size: size})
}

// answer gives p its outcome and releases its count at the flow gate.
func (pq *pubQueue) answer(p waitingPublish, ok bool) {
	if pq.flow != nil {
		pq.flow.settle(p.size)
	}
	p.done(ok)
}

// publish numbers p and sends it, or queues it behind the publishes it
// must not overtake. The check is made under mu, which wait takes to queue
// a publish that comes back before its untrack: a publish sees either that
// one queued or its send still counted.
func (pq *pubQueue) publish(p waitingPublish) {
	t := pq.target() // outside mu: target may take its group's lock
	pq.mu.Lock()
	pq.seq++
	p.seq = pq.seq
	if len(pq.waiting) > 0 || pq.holdFor(t) {
		pq.queueLocked(p)
		return
	}
	pq.mu.Unlock()
	if !pq.try(p) {
		pq.wait(p)
	}
}

// holdFor reports whether a publish for t must wait: some sent elsewhere
// have no outcome yet.
func (pq *pubQueue) holdFor(t sendTarget) bool {
	if pq.sent.Load() == 0 {
		return false
	}
	to := pq.sentTo.Load()
	return to == nil || *to != t
}

// track counts a publish sent to t whose outcome is not known yet;
// untrack counts its outcome known. A try calls track before it sends,
// and on a publish that comes back, wait before untrack, so that the
// publishes behind it hold until it is queued again.
func (pq *pubQueue) track(t sendTarget) {
	if to := pq.sentTo.Load(); to != nil && *to == t {
		pq.sent.Add(1)
		return
	}
	pq.retarget(t)
}

// retarget is track for a target other than the last one (apart, so that
// the fast path does not allocate).
func (pq *pubQueue) retarget(t sendTarget) {
	pq.mu.Lock()
	pq.sent.Add(1)
	pq.sentTo.Store(&t)
	pq.mu.Unlock()
}

func (pq *pubQueue) untrack() { pq.sent.Add(-1) }

// leaderChanged wakes the drain to try the waiting publishes at once.
func (pq *pubQueue) leaderChanged() {
	select {
	case pq.kick <- struct{}{}:
	default:
	}
}

// wait queues p, in publish order, until it can be sent; one goroutine
// drains the queue in order.
func (pq *pubQueue) wait(p waitingPublish) {
	pq.mu.Lock()
	pq.queueLocked(p)
}

// queueLocked inserts p at its place and unlocks mu. Lock must be held.
func (pq *pubQueue) queueLocked(p waitingPublish) {
	i, _ := slices.BinarySearchFunc(pq.waiting, p.seq, func(w waitingPublish, seq uint64) int { return cmp.Compare(w.seq, seq) })
	pq.waiting = slices.Insert(pq.waiting, i, p)
	start := !pq.draining
	pq.draining = true
	pq.mu.Unlock()
	if start {
		go pq.drain()
	}
}

// drain sends the waiting publishes in order, each once the publishes sent
// before it elsewhere have their outcome (one that comes back goes before
// it). A publish with nowhere to go until its deadline is nacked.
func (pq *pubQueue) drain() {
	for {
		pq.mu.Lock()
		if len(pq.waiting) == 0 || pq.stopped.Load() {
			left := pq.waiting
			pq.waiting, pq.draining = nil, false
			pq.mu.Unlock()
			for _, p := range left {
				pq.answer(p, false)
			}
			return
		}
		p := pq.waiting[0]
		pq.mu.Unlock()
		if pq.holdFor(pq.target()) && time.Now().Before(p.until) {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		if !pq.try(p) {
			if time.Now().Before(p.until) {
				t := time.NewTimer(20 * time.Millisecond)
				select {
				case <-pq.kick:
				case <-t.C:
				}
				t.Stop()
				continue
			}
			pq.answer(p, false) // no leader in time: nacked
		}
		pq.mu.Lock()
		if i := slices.IndexFunc(pq.waiting, func(w waitingPublish) bool { return w.seq == p.seq }); i >= 0 {
			pq.waiting = slices.Delete(pq.waiting, i, i+1)
		}
		pq.mu.Unlock()
	}
}
