package server

import (
	"sync"
	"sync/atomic"

	"github.com/warren-mq/warren/amqp"
)

// Confirm states of one publish.
const (
	confirmWaiting uint8 = iota // persisted, waiting for the sync
	confirmAck
	confirmNack
	confirmRemote // waiting for other nodes (and maybe the local sync): pending
)

// confirmer sends a channel's publisher confirms in publish order. A publish
// is acked at once when nothing of it went to disk, after its batch is
// synced when it did, and nacked when a queue rejected it. Runs of acks go
// out as one basic.ack with multiple=true.
//
// The reader goroutine adds publishes and flushes before it blocks; the
// store's committer resolves persisted ones. mu orders both.
type confirmer struct {
	ch *channel

	mu     sync.Mutex
	base   uint64  // seq of states[head]
	states []uint8 // states of unsent confirms from base on
	head   int
	closed bool

	// Owned by the reader: the highest seq that waits for a sync, and the
	// highest seq an AfterSync callback already covers.
	waitingUpTo, registered uint64
	// Also the reader's: whether the publishes since the last callback
	// wait for the store, and the streams they went to (each synced by its
	// own log).
	needStore bool
	streams   []*Queue

	// pending counts, per publish in confirmRemote, the answers it still
	// waits for (other nodes' and the local sync's); nack says one refused.
	// Guarded by mu.
	pending map[uint64]*remoteWait
}

type remoteWait struct {
	n    int
	nack bool
}

// addRemote records publish seq as waiting for n answers (settleRemote).
func (c *confirmer) addRemote(seq uint64, n int) {
	c.mu.Lock()
	if c.head == len(c.states) {
		c.states, c.head, c.base = c.states[:0], 0, seq
	}
	c.states = append(c.states, confirmRemote)
	if c.pending == nil {
		c.pending = map[uint64]*remoteWait{}
	}
	c.pending[seq] = &remoteWait{n: n}
	c.mu.Unlock()
}

// settleRemote takes one answer for publish seq: once all are in, it is
// acked (nacked if any answer was a refusal) and confirms go out.
func (c *confirmer) settleRemote(seq uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.pending[seq]
	if w == nil {
		return
	}
	w.n--
	w.nack = w.nack || !ok
	if w.n > 0 {
		return
	}
	delete(c.pending, seq)
	if i := c.head + int(seq-c.base); seq >= c.base && i < len(c.states) && c.states[i] == confirmRemote {
		c.states[i] = confirmAck
		if w.nack {
			c.states[i] = confirmNack
		}
	}
	c.flushLocked()
}

// add records publish seq's state. seq must be the next publish.
func (c *confirmer) add(seq uint64, state uint8) {
	c.mu.Lock()
	if c.head == len(c.states) {
		c.states, c.head, c.base = c.states[:0], 0, seq
	}
	c.states = append(c.states, state)
	c.mu.Unlock()
	if state == confirmWaiting {
		c.waitingUpTo = seq
	}
}

// resolveUpTo marks every waiting publish up to seq as acked and flushes.
func (c *confirmer) resolveUpTo(seq uint64) {
	c.mu.Lock()
	for i := c.head; i < len(c.states) && c.base+uint64(i-c.head) <= seq; i++ {
		if c.states[i] == confirmWaiting {
			c.states[i] = confirmAck
		}
	}
	c.flushLocked()
	c.mu.Unlock()
}

// flush sends what is ready and, for publishes waiting on the disk,
// registers one callback with the store for all of them.
func (c *confirmer) flush() {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	if c.waitingUpTo > c.registered {
		upTo := c.waitingUpTo
		c.registered = upTo
		c.afterSyncs(func() { c.resolveUpTo(upTo) })
	}
}

// waitStream records that a publish waits for stream q's log.
func (c *confirmer) waitStream(q *Queue) {
	for _, s := range c.streams {
		if s == q {
			return
		}
	}
	c.streams = append(c.streams, q)
}

// afterSyncs runs fn once the store (if a publish since the last call
// needs it) and every stream published to since then have synced.
func (c *confirmer) afterSyncs(fn func()) {
	st := c.ch.conn.srv.store
	if !c.needStore && len(c.streams) > 0 {
		st = nil // only streams wait: no store sync
	}
	n := int32(len(c.streams))
	if st != nil {
		n++
	}
	if n == 0 {
		fn()
		return
	}
	var left atomic.Int32
	left.Store(n)
	done := func() {
		if left.Add(-1) == 0 {
			fn()
		}
	}
	if st != nil {
		st.AfterSync(done)
	}
	for _, q := range c.streams {
		q.AfterStreamSync(done)
	}
	clear(c.streams)
	c.streams, c.needStore = c.streams[:0], false
}

// flushLocked sends the resolved prefix. Lock must be held.
func (c *confirmer) flushLocked() {
	if c.closed {
		return
	}
	var ackFrom, ackTo uint64 // a run of acks [ackFrom, ackTo]
	send := func() {
		if ackTo == 0 {
			return
		}
		// Counted first: a client that has its ack sees it in the stats.
		c.ch.stats.confirmed.Add(ackTo - ackFrom + 1)
		c.ch.sendMethod(&amqp.BasicAck{DeliveryTag: ackTo, Multiple: ackTo > ackFrom})
		ackFrom, ackTo = 0, 0
	}
	for c.head < len(c.states) {
		seq := c.base
		switch c.states[c.head] {
		case confirmWaiting, confirmRemote:
			send()
			c.compact()
			return
		case confirmAck:
			if ackTo == 0 {
				ackFrom = seq
			}
			ackTo = seq
		case confirmNack:
			send()
			c.ch.sendMethod(&amqp.BasicNack{DeliveryTag: seq})
		}
		c.head++
		c.base++
	}
	send()
	c.compact()
}

func (c *confirmer) compact() {
	if c.head == len(c.states) {
		c.states, c.head = c.states[:0], 0
	} else if c.head > 4096 && c.head*2 > len(c.states) {
		n := copy(c.states, c.states[c.head:])
		c.states, c.head = c.states[:n], 0
	}
}

// close stops all further sends (the channel is gone; its id may be reused).
func (c *confirmer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}
