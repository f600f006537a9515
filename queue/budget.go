package queue

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Budget is the node-wide limit on bytes of ready messages held in memory,
// shared by every queue that pages (has a journal). Each queue keeps the
// head of its ready list in memory, what its consumers read next; while the
// node is under the limit a queue may hold up to its PageWindow, and once
// it is over, a queue holding more than its share (the limit divided among
// the queues) sends new messages to disk, pages in only up to its share,
// and the budget's pager goroutine shrinks the deepest queues' in-memory
// tails back to their share, or to a small head for a queue with no
// consumers. A queue with consumers that keeps up holds little and never
// notices; a deep idle queue costs a small head. The memory alarm stays the
// last line of defence for what the budget does not cover (unacked
// messages, connection buffers).
type Budget struct {
	limit int64
	used  atomic.Int64 // bytes of ready messages in memory, all queues
	n     atomic.Int64 // queues sharing the budget

	mu      sync.Mutex
	members map[*Queue]struct{} // guarded by mu

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Per-message memory beyond header and body: the Message (96 bytes), its
// Entry (32) and allocation rounding of the header+body buffer.
const entryOverhead = 160

// minHead is the least a paging queue keeps in memory when the budget is
// tight: enough that consumers start without waiting for the disk.
const minHead = 4 << 10

// Cost is what an entry is charged against the budget.
func Cost(e *Entry) int64 {
	return entryOverhead + int64(len(e.Msg.Header)+len(e.Msg.Body))
}

// NewBudget starts a budget of limit bytes (at least 1 MiB) and its pager
// goroutine; Close stops it.
func NewBudget(limit int64) *Budget {
	b := &Budget{limit: max(limit, 1<<20), members: map[*Queue]struct{}{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go b.pager()
	return b
}

// Close stops the pager.
func (b *Budget) Close() {
	close(b.stop)
	<-b.done
}

// Limit returns the budget in bytes.
func (b *Budget) Limit() int64 { return b.limit }

func (b *Budget) join(q *Queue) {
	b.mu.Lock()
	b.members[q] = struct{}{}
	b.mu.Unlock()
	b.n.Add(1)
}

func (b *Budget) leave(q *Queue) {
	b.mu.Lock()
	_, ok := b.members[q]
	delete(b.members, q)
	b.mu.Unlock()
	if ok {
		b.n.Add(-1)
	}
}

// over reports whether the queues hold more than the budget.
func (b *Budget) over() bool { return b.used.Load() >= b.limit }

// share is what one queue may keep in memory while the budget is over.
func (b *Budget) share() int64 {
	return max(b.limit/max(b.n.Load(), 1), minHead)
}

// Share is what one queue may keep in memory while the budget is over:
// the head a queue rebuilt while the broker runs starts with.
func (b *Budget) Share() int64 { return b.share() }

func (b *Budget) add(n int64) {
	if b.used.Add(n) >= b.limit && n > 0 {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// pager shrinks queues' in-memory tails while the budget is over.
func (b *Budget) pager() {
	defer close(b.done)
	for {
		select {
		case <-b.stop:
			return
		case <-b.kick:
		}
		b.shrink()
	}
}

// shrink pages out the tails of the queues holding the most until the
// queues hold at most 90% of the budget (the slack keeps the pager from
// running for every message).
func (b *Budget) shrink() {
	if !b.over() {
		return
	}
	b.mu.Lock()
	qs := make([]*Queue, 0, len(b.members))
	for q := range b.members {
		qs = append(qs, q)
	}
	b.mu.Unlock()
	type held struct {
		q    *Queue
		mem  int64
		idle bool
	}
	hs := make([]held, 0, len(qs))
	for _, q := range qs {
		mem, idle := q.memory()
		hs = append(hs, held{q, mem, idle})
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].mem > hs[j].mem })
	share := b.share()
	for _, h := range hs {
		if b.used.Load() <= b.limit/10*9 {
			return
		}
		target := share
		if h.idle {
			target = min(share, minHead)
		}
		if h.mem > target {
			h.q.shrink(target)
		}
	}
}

// Usage is what the budget's queues hold, for the management API.
type Usage struct {
	Limit          int64
	MemoryBytes    int64
	MemoryMessages int64
	PagedBytes     int64
	PagedMessages  int64
	Queues         int64
	QueuesPaging   int64
}

// Usage sums the queues' in-memory and paged-out parts.
func (b *Budget) Usage() Usage {
	b.mu.Lock()
	qs := make([]*Queue, 0, len(b.members))
	for q := range b.members {
		qs = append(qs, q)
	}
	b.mu.Unlock()
	u := Usage{Limit: b.limit, Queues: int64(len(qs))}
	for _, q := range qs {
		q.mu.Lock()
		u.MemoryBytes += q.ready.bytes
		u.MemoryMessages += int64(q.ready.len())
		u.PagedBytes += q.disk.Bytes
		u.PagedMessages += int64(q.disk.N)
		if q.disk.N > 0 {
			u.QueuesPaging++
		}
		q.mu.Unlock()
	}
	return u
}

// RestoreShare is how many bytes (as Cost counts them) each of queues
// queues reads back into memory at startup: the budget divided among them.
func (b *Budget) RestoreShare(queues int) int64 {
	return max(b.limit/int64(max(queues, 1)), minHead)
}
