package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// Publisher flow control for replicated queues. A publish to a quorum
// queue is taken at once and answered once a majority has it; a publisher
// without confirms never waits for that answer, so one that outruns the
// group's log would make the node buffer its publishes without bound (the
// Raft log's uncommitted entries, the publishes waiting for a leader, the
// copies on their way to another node's leader). A flowGate counts what a
// node has taken and not yet answered for one queue; above its high marks
// the channel that publishes waits (as RabbitMQ's credit flow blocks a
// connection's reader) until the count falls under the low marks, so a
// node holds at most a few tens of MB of unanswered publishes per queue
// whatever the publishers do.
const (
	flowHighBytes = 16 << 20
	flowLowBytes  = 12 << 20
	flowHighCount = 16384
	flowLowCount  = 12288
	// flowOverhead is what a publish costs beyond its header and body.
	flowOverhead = 256
	// flowMaxWait bounds one wait: answers come within publishWait (a
	// publish that finds no leader in that time is nacked), so a wait this
	// long means the group is stuck and the publish goes on (to be nacked
	// in its turn) rather than hold the connection forever.
	flowMaxWait = publishWait + time.Second
)

type flowGate struct {
	bytes, count atomic.Int64
	waiting      atomic.Bool // someone may wait on open

	mu   sync.Mutex
	open chan struct{} // closed when under the low marks; guarded by mu
}

// take counts a publish of size bytes taken.
func (f *flowGate) take(size int64) {
	f.bytes.Add(size + flowOverhead)
	f.count.Add(1)
}

// settle counts a publish answered, and lets waiting publishers go once
// under the low marks.
func (f *flowGate) settle(size int64) {
	b := f.bytes.Add(-size - flowOverhead)
	n := f.count.Add(-1)
	if b >= flowLowBytes || n >= flowLowCount || !f.waiting.Load() {
		return
	}
	f.mu.Lock()
	f.release()
	f.mu.Unlock()
}

// release opens the gate if it is under the low marks. f.mu must be held.
func (f *flowGate) release() bool {
	if f.bytes.Load() >= flowLowBytes || f.count.Load() >= flowLowCount {
		return false
	}
	if f.open != nil {
		close(f.open)
		f.open = nil
	}
	f.waiting.Store(false)
	return true
}

// throttle returns a channel to wait on when over the high marks, or nil.
func (f *flowGate) throttle() <-chan struct{} {
	if f.bytes.Load() < flowHighBytes && f.count.Load() < flowHighCount {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting.Store(true)
	if f.release() { // answered meanwhile
		return nil
	}
	if f.open == nil {
		f.open = make(chan struct{})
	}
	return f.open
}

// flowWait blocks on the gate of every replicated queue in qs that is over
// its high marks, for a publish on c; it reports whether it waited.
func flowWait(c *conn, qs []*Queue) bool {
	waited := false
	for _, q := range qs {
		g := q.flowGate()
		if g == nil {
			continue
		}
		if w := g.throttle(); w != nil {
			waited = true
			c.flowing.Store(true)
			t := time.NewTimer(flowMaxWait)
			select {
			case <-w:
			case <-t.C:
			}
			t.Stop()
			c.flowing.Store(false)
		}
	}
	return waited
}

// Flow control on the links between nodes: a copy for a queue on another
// node waits in the cluster connection's buffer to that node, which fails
// new sends once full (64 MiB); a publish that found it full would be
// nacked, or lost without confirms, and the group traffic sharing the
// connection would be refused with it. So a publisher whose copies go to a
// node with more than peerHighBytes waiting for it waits (polling, a
// millisecond at a time) until that falls under peerLowBytes.
const (
	peerHighBytes = 16 << 20
	peerLowBytes  = 8 << 20
	// peerMaxWait bounds one wait on a link that does not drain (its node
	// is going away: the connection's loss settles what is in it).
	peerMaxWait = 5 * time.Second
)

// PeerBacklog is implemented by Peers that tell how many bytes wait to be
// sent to a node (cluster.Node).
type PeerBacklog interface {
	Queued(node string) int
}

// peerWait holds a publish on c while a node that its copies in qs go to
// has too much waiting for it; it reports whether it waited.
func (s *Server) peerWait(c *conn, qs []*Queue) bool {
	pb, ok := s.peers.(PeerBacklog)
	if !ok {
		return false
	}
	waited := false
	for _, q := range qs {
		home := q.Home()
		if home == "" || home == s.cfg.NodeName || pb.Queued(home) <= peerHighBytes {
			continue
		}
		waited = true
		c.flowing.Store(true)
		for deadline := time.Now().Add(peerMaxWait); pb.Queued(home) > peerLowBytes && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		c.flowing.Store(false)
	}
	return waited
}
