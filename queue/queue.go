package queue

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mq/warren/amqp"
)

// Sink is the consuming side of a consumer: the server's channel.
type Sink interface {
	// CanTake reports whether c has credit for one more message now (its
	// prefetch, its channel's, and room in the connection's outbound buffer).
	// When it has no room, the sink kicks q once room comes back.
	CanTake(q *Queue, c *Consumer) bool
	// Deliver hands e to c. Called with q's lock held.
	Deliver(q *Queue, c *Consumer, e Entry)
	// Cancelled tells the consumer that the queue cancelled it (queue
	// deleted). Called without q's lock.
	Cancelled(c *Consumer)
}

// Draining is implemented by sinks that can tell a consumer held back by
// its connection (the client reads slower than messages come) from one that
// has no credit. While a consumer drains, its queue counts as progressing,
// so flow control holds publishers back to the pace of the consumers' reads,
// as RabbitMQ's credit flow does; a consumer without credit (prefetch used
// up, not acking) does not hold them.
type Draining interface {
	Draining(c *Consumer) bool
}

// Consumer is one basic.consume subscription.
type Consumer struct {
	Tag       string
	NoAck     bool
	Exclusive bool
	Priority  int64
	Sink      Sink
	// Owner is opaque to the queue: what the sink needs to find itself.
	Owner any
	// Args are the basic.consume arguments (a stream reads x-stream-offset
	// and its filter from them).
	Args amqp.Table
}

// Config describes a queue at declaration.
type Config struct {
	Name       string
	Vhost      string
	Durable    bool
	Exclusive  bool
	AutoDelete bool
	Args       amqp.Table
	// Owner is the exclusive owner (the connection), compared by identity.
	Owner any
	// ID identifies a durable queue in the journal; assigned by the server.
	ID uint64
	// Journal persists persistent messages of a durable queue and holds
	// the part of any queue beyond PageWindow; nil keeps the queue in
	// memory only.
	Journal Journal
	// PageWindow is how many ready messages a queue keeps in memory before
	// new ones go to the journal only (default 20000).
	PageWindow int
	// Policy is the definition of the policy that applies at creation (see
	// EffectiveArgs); SetPolicy changes it later.
	Policy map[string]any
	// Budget is the node's memory budget for ready messages, shared by
	// every queue with a journal; nil: only PageWindow bounds the queue.
	Budget *Budget
	// StreamDir is a stream queue's log directory (NewStream).
	StreamDir string
}

// DefaultPageWindow is the in-memory window of a queue with a journal.
const DefaultPageWindow = 20000

// DiskPart is the paged-out tail of a queue: entries only on disk.
type DiskPart struct {
	N     int
	Bytes int64
	From  uint64 // seq of the first paged-out entry
	Last  uint64 // seq of the last one
}

// Queue is one queue.
type Queue struct {
	Config

	// OnUnused is called (without the lock) when an auto-delete queue loses
	// its last consumer.
	OnUnused func(*Queue)
	// OnDeadLetter is called (without the lock) with messages that expired,
	// overflowed or were rejected, when the queue has a dead-letter exchange.
	// The queue package does no routing itself.
	OnDeadLetter func(q *Queue, dls []DeadLetter)

	lim limits
	// quorum: x-queue-type quorum (see limits.quorum); fixed at New.
	quorum bool
	// sq is a stream queue's log and readers (streamq.go); nil for others,
	// and then none of the methods below look at it.
	sq *streamQueue

	mu sync.Mutex
	// Guarded by mu.
	dedup       *dedupSet // x-message-deduplication; nil when off (dedup.go)
	ready       readyList
	nextSeq     uint64
	consumers   []*Consumer
	rr          int
	mixedPrio   bool
	unacked     int
	hadConsumer bool
	deleted     bool
	stopped     bool
	readyBytes  int64
	timerAt     int64 // when the expiry timer fires (unix ns), 0 when unarmed
	// lastProgress is when a delivery pass last delivered something (unix
	// ns). While consumers keep draining, a growing backlog means publishers
	// outrun them; a queue whose consumers take nothing for progressWindow
	// (stuck, or without credit and not acking) does not throttle.
	lastProgress int64
	// directN counts messages handed straight to a consumer by Publish;
	// progressingLocked compares it with directSeen.
	directN, directSeen uint64
	// drained is closed when the ready list falls below flowLow; publishers
	// throttled by Throttle wait on it.
	drained chan struct{}

	// maxDelivered is the highest journaled seq handed to a consumer;
	// reported to the journal once per delivery pass.
	maxDelivered, reportedDelivered uint64

	// disk is the paged-out tail: every entry with seq >= disk.From that is
	// ready lives only in the journal; everything in memory has a lower seq.
	disk DiskPart
	// spool holds the paged-out tail of a non-durable queue when the
	// journal offers one (then nothing of it is in the journal proper).
	spool Spooler
	// diskHint mirrors disk.N for lock-free reads.
	diskHint atomic.Int64
	// watermark is the delivered watermark read at startup: paged-in
	// entries at or below it come back redelivered.
	watermark uint64

	// lastUsed is when the queue was last used (declared, read from or
	// consumed from), for x-expires. expTimer fires when it may expire.
	lastUsed int64
	expTimer *time.Timer

	stats Stats // guarded by mu

	kick  chan struct{}
	timer *time.Timer
	stop  chan struct{}
	done  chan struct{}
}

// New creates a queue and starts its delivery goroutine; Delete stops it.
func New(cfg Config) *Queue {
	q := &Queue{
		Config: cfg,
		lim:    parseLimits(EffectiveArgs(cfg.Args, cfg.Policy)),
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	if q.quorum = q.lim.quorum; q.quorum {
		q.ready = newFairList()
	} else {
		q.ready = newReadyList(q.lim.maxPriority)
	}
	q.dedup = newDedupSet(cfg.Args)
	if q.Journal != nil && q.Budget != nil {
		q.ready.budget = q.Budget
		q.Budget.join(q)
	}
	if q.PageWindow == 0 {
		q.PageWindow = DefaultPageWindow
	}
	if sp, ok := q.Journal.(Spooler); ok && !q.Durable {
		q.spool = sp
	}
	q.timer = time.NewTimer(time.Hour)
	q.timer.Stop()
	q.expTimer = time.NewTimer(time.Hour)
	q.expTimer.Stop()
	q.lastUsed = time.Now().UnixNano()
	if q.lim.expires > 0 {
		q.expTimer.Reset(time.Duration(q.lim.expires) * time.Millisecond)
	}
	go q.loop()
	return q
}

// overLimitLocked reports whether a publish of size bytes is refused by
// reject-publish: a classic queue refuses what would take it over its
// limits, a quorum queue takes messages until it is over them (RabbitMQ: with
// max-length 2 the third is still accepted). Lock must be held.
func (q *Queue) overLimitLocked(size int64) bool {
	if q.quorum {
		return int64(q.readyCountLocked()) > q.lim.maxLen || q.readyBytes > q.lim.maxLenBytes
	}
	return int64(q.readyCountLocked()) >= q.lim.maxLen || q.readyBytes+size > q.lim.maxLenBytes
}

// Quorum reports whether the queue was declared x-queue-type quorum.
func (q *Queue) Quorum() bool { return q.quorum }

// Kick wakes the delivery goroutine.
func (q *Queue) Kick() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *Queue) loop() {
	defer close(q.done)
	for {
		select {
		case <-q.stop:
			return
		case <-q.kick:
		case <-q.timer.C:
			q.mu.Lock()
			q.timerAt = 0
			q.mu.Unlock()
		case <-q.expTimer.C:
			if q.expired() {
				// Deleting waits for this goroutine: do it from another.
				go q.OnUnused(q)
				continue
			}
		}
		var dead []DeadLetter
		q.mu.Lock()
		dead = q.deliverLocked(dead)
		q.armTimerLocked()
		q.mu.Unlock()
		q.deadLetter(dead)
	}
}

// Touch records a use of the queue (a declare, passive too), restarting
// its x-expires countdown.
func (q *Queue) Touch() {
	q.mu.Lock()
	q.touchLocked()
	q.mu.Unlock()
}

// touchLocked restarts the x-expires countdown. Lock must be held.
func (q *Queue) touchLocked() {
	if q.lim.expires <= 0 {
		return
	}
	q.lastUsed = time.Now().UnixNano()
	if len(q.consumers) == 0 {
		q.expTimer.Reset(time.Duration(q.lim.expires) * time.Millisecond)
	}
}

// expired reports whether an x-expires queue has been unused long enough.
func (q *Queue) expired() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted || q.OnUnused == nil || len(q.consumers) > 0 {
		return false
	}
	left := q.lastUsed + q.lim.expires*int64(time.Millisecond) - time.Now().UnixNano()
	if left > 0 {
		q.expTimer.Reset(time.Duration(left))
		return false
	}
	return true
}

// armTimerLocked arms the expiry timer for the head message. Lock must be held.
func (q *Queue) armTimerLocked() {
	if q.ready.len() == 0 || q.deleted {
		return
	}
	at := q.ready.peek().ExpiresAt
	if at == 0 || (q.timerAt != 0 && q.timerAt <= at) {
		return
	}
	q.timerAt = at
	q.timer.Reset(time.Duration(at - time.Now().UnixNano()))
}

// deadLetter hands messages to OnDeadLetter. Lock must not be held.
func (q *Queue) deadLetter(dead []DeadLetter) {
	if len(dead) == 0 || q.OnDeadLetter == nil {
		return
	}
	q.mu.Lock()
	has := q.lim.hasDLX
	q.mu.Unlock()
	if has {
		q.OnDeadLetter(q, dead)
	}
}

// DeadLetterRejected dead-letters messages rejected or nacked without requeue.
func (q *Queue) DeadLetterRejected(es []Entry) {
	dead := make([]DeadLetter, len(es))
	for i, e := range es {
		dead[i] = DeadLetter{Msg: e.Msg, Reason: ReasonRejected}
	}
	q.deadLetter(dead)
}

// forgetLocked tells the journal that e left the queue. Lock must be held.
func (q *Queue) forgetLocked(e *Entry) {
	if q.dedup != nil {
		q.dedup.leaveLocked(e.Msg)
	}
	if e.Journaled {
		q.Journal.Remove(q.ID, e.Seq, e.Msg)
		if e.ReturnsJournaled {
			q.Journal.Returned(q.ID, e.Seq, 0)
			e.ReturnsJournaled = false
		}
		e.Journaled = false
	}
}

// handedLocked records a delivery of e: an auto-ack delivery leaves the
// journal now, an acked one counts towards the delivered watermark.
// Lock must be held.
func (q *Queue) handedLocked(e *Entry, noAck bool) {
	q.stats.Delivered++
	if e.Redelivered {
		q.stats.Redelivered++
	}
	if !e.Journaled {
		if noAck && q.dedup != nil {
			q.dedup.leaveLocked(e.Msg)
		}
		return
	}
	if noAck {
		q.forgetLocked(e)
	} else if e.Seq > q.maxDelivered {
		q.maxDelivered = e.Seq
	}
}

// reportDeliveredLocked passes the delivered watermark to the journal.
// Lock must be held.
func (q *Queue) reportDeliveredLocked() {
	if q.maxDelivered > q.reportedDelivered {
		q.reportedDelivered = q.maxDelivered
		q.Journal.Delivered(q.ID, q.maxDelivered)
	}
}

// readyCountLocked counts ready messages, in memory and paged out.
// Lock must be held.
func (q *Queue) readyCountLocked() int { return q.ready.len() + q.disk.N }

// pagingLocked reports whether a new entry must go to the paged-out tail.
// Lock must be held.
func (q *Queue) pagingLocked() bool {
	return q.Journal != nil && (q.disk.N > 0 || q.ready.len() >= q.PageWindow ||
		q.ready.budget != nil && q.ready.budget.over() && q.ready.bytes >= q.ready.budget.share())
}

// pageInCountLocked is how many entries to read back from the paged-out
// tail now, 0 for none. While the budget is over, a queue refills only up
// to its share (at least a batch of 16 when it is empty, so consumers
// always progress). Lock must be held.
func (q *Queue) pageInCountLocked() int {
	if q.disk.N == 0 || q.ready.len() >= q.PageWindow/2 {
		return 0
	}
	n := min(q.PageWindow/2, q.disk.N)
	// Bounded by bytes too: half a window of large messages would be
	// gigabytes, which the pager would then write out again.
	per := entryOverhead + q.disk.Bytes/int64(q.disk.N)
	b := q.ready.budget
	if b == nil {
		return min(n, max(1, int(pageInMaxBytes/per)))
	}
	share := b.share()
	if !b.over() {
		room := max(b.limit-b.used.Load(), share-q.ready.bytes)
		return min(n, max(1, int(room/per)))
	}
	if q.ready.len() > 0 && q.ready.bytes >= share/2 {
		return 0
	}
	return min(n, max(1, int((share-q.ready.bytes)/per)))
}

// pageInMaxBytes bounds one page-in of a queue outside any budget.
const pageInMaxBytes = 64 << 20

// pageInLocked reads the next part of the paged-out tail into memory when
// the in-memory part runs low. Lock must be held (it reads the disk: a
// bounded batch, once per half window of deliveries).
func (q *Queue) pageInLocked() {
	want := q.pageInCountLocked()
	if want == 0 {
		return
	}
	var es []Entry
	var err error
	if q.spool != nil {
		es, err = q.spool.SpoolRead(q.ID, want)
	} else {
		es, err = q.Journal.Load(q.ID, q.disk.From, want)
	}
	if err != nil || len(es) == 0 {
		// The journal reported the failure; the tail stays on disk and is
		// retried on the next pass.
		return
	}
	for _, e := range es {
		e.Redelivered = e.Seq <= q.watermark
		q.ready.push(e)
		q.disk.Bytes -= int64(len(e.Msg.Body))
	}
	q.disk.N -= len(es)
	q.disk.From = es[len(es)-1].Seq + 1
	if q.disk.N <= 0 {
		q.disk = DiskPart{}
		if q.spool != nil {
			q.spool.SpoolDrop(q.ID) // its files go; the next paging starts afresh
		}
	}
	q.diskHint.Store(int64(q.disk.N))
}

// dropDiskLocked removes the paged-out tail (purge, delete).
// Lock must be held.
func (q *Queue) dropDiskLocked() int {
	n := q.disk.N
	if n > 0 {
		if q.spool != nil {
			q.spool.SpoolDrop(q.ID)
		} else {
			q.Journal.DropFrom(q.ID, q.disk.From)
		}
		q.readyBytes -= q.disk.Bytes
		q.disk = DiskPart{}
		q.diskHint.Store(0)
	}
	return n
}

// popLocked removes the head. Lock must be held.
func (q *Queue) popLocked() Entry {
	e := q.ready.pop()
	q.readyBytes -= int64(len(e.Msg.Body))
	return e
}

// expireLocked drops expired messages at the head, appending them to dead.
// Lock must be held.
func (q *Queue) expireLocked(dead []DeadLetter) []DeadLetter {
	if q.ready.len() == 0 {
		// Only an empty head needs the disk: a queue without consumers
		// (after a restart, say) keeps the rest there until they come.
		q.pageInLocked()
		if q.ready.len() == 0 {
			return dead
		}
	}
	now := int64(0)
	for q.ready.len() > 0 {
		at := q.ready.peek().ExpiresAt
		if at == 0 {
			break
		}
		if now == 0 {
			now = time.Now().UnixNano()
		}
		if at > now {
			break
		}
		e := q.popLocked()
		q.forgetLocked(&e)
		dead = append(dead, DeadLetter{Msg: e.Msg, Reason: ReasonExpired})
		if q.ready.len() == 0 {
			q.pageInLocked()
		}
	}
	return dead
}

// Flow control, like RabbitMQ's credit flow: when a queue that is actively
// delivering falls behind by flowHigh messages, publishers routing to it
// wait (briefly) until it is back under flowLow, so a fast publisher cannot
// outrun its consumers without bound.
const (
	flowHigh = 20000
	flowLow  = 10000
	// FlowMaxWait bounds one throttle wait, so publishing never stalls.
	FlowMaxWait = 50 * time.Millisecond
)

// Throttle returns a channel to wait on when the queue is too far behind
// its consumers, or nil.
func (q *Queue) Throttle() <-chan struct{} {
	if q.sq != nil {
		return nil // the log's write buffer holds publishers back
	}
	if q.ready.approxLen()+q.diskHint.Load() < flowHigh {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.readyCountLocked() < flowHigh || !q.progressingLocked() || len(q.consumers) == 0 || q.deleted {
		return nil
	}
	if q.drained == nil {
		q.drained = make(chan struct{})
	}
	return q.drained
}

const progressWindow = int64(100 * time.Millisecond)

// progressingLocked reports whether consumers took messages recently.
// Lock must be held.
func (q *Queue) progressingLocked() bool {
	now := time.Now().UnixNano()
	if q.directN != q.directSeen {
		// Direct hand-overs since the last look count as progress (they
		// do not read the clock themselves).
		q.directSeen = q.directN
		q.lastProgress = now
	}
	if now-q.lastProgress < progressWindow {
		return true
	}
	for _, c := range q.consumers {
		if d, ok := c.Sink.(Draining); ok && d.Draining(c) {
			return true
		}
	}
	return false
}

// releaseFlowLocked wakes throttled publishers once the backlog is low.
// Lock must be held.
func (q *Queue) releaseFlowLocked() {
	if q.drained != nil && (q.readyCountLocked() < flowLow || len(q.consumers) == 0 || q.deleted) {
		close(q.drained)
		q.drained = nil
	}
}

// deliverLocked hands ready messages to consumers with credit, dropping
// expired ones at the head into dead. Lock must be held.
func (q *Queue) deliverLocked(dead []DeadLetter) []DeadLetter {
	dead = q.expireLocked(dead)
	delivered := 0
	for q.ready.len() > 0 && len(q.consumers) > 0 {
		c := q.pickLocked()
		if c == nil {
			break
		}
		delivered++
		e := q.popLocked()
		if !c.NoAck {
			q.unacked++
		}
		q.handedLocked(&e, c.NoAck)
		c.Sink.Deliver(q, c, e)
		if q.ready.len() < q.PageWindow/2 {
			q.pageInLocked()
		}
		dead = q.expireLocked(dead)
		if q.drained != nil {
			q.releaseFlowLocked()
		}
	}
	if delivered > 0 {
		q.lastProgress = time.Now().UnixNano()
		q.reportDeliveredLocked()
	}
	q.releaseFlowLocked()
	return dead
}

// pickLocked chooses the next consumer: the highest priority among those
// with credit, strict round-robin among equals. Lock must be held.
func (q *Queue) pickLocked() *Consumer {
	if q.lim.singleActive {
		// Single active consumer: the longest-registered one gets everything;
		// the next takes over when it goes.
		if c := q.consumers[0]; c.Sink.CanTake(q, c) {
			return c
		}
		return nil
	}
	n := len(q.consumers)
	best := -1
	for i := 0; i < n; i++ {
		idx := (q.rr + i) % n
		c := q.consumers[idx]
		if best >= 0 && q.consumers[best].Priority >= c.Priority {
			continue
		}
		if c.Sink.CanTake(q, c) {
			best = idx
			if !q.mixedPrio {
				break
			}
		}
	}
	if best < 0 {
		return nil
	}
	q.rr = best + 1
	return q.consumers[best]
}

// PublishResult says what became of a published message in one queue.
type PublishResult uint8

const (
	Enqueued PublishResult = iota
	// Rejected: the queue is full and overflows with reject-publish(-dlx).
	Rejected
	// Gone: the queue was deleted.
	Gone
)

// Publish appends m. ttl is the message's own expiration in ms, or -1.
func (q *Queue) Publish(m *Message, ttl int64) PublishResult { return q.publish(m, ttl, 0) }

// PublishSeq appends m at seq, which must be above every seq the queue has
// used: a replicated queue's entries take the numbers its log gave them.
func (q *Queue) PublishSeq(m *Message, ttl int64, seq uint64) PublishResult {
	return q.publish(m, ttl, seq)
}

func (q *Queue) publish(m *Message, ttl int64, seq uint64) PublishResult {
	if q.sq != nil {
		return q.sq.publish(m)
	}
	var dead []DeadLetter
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return Gone
	}
	if q.dedup != nil && !q.dedup.enterLocked(m) {
		q.mu.Unlock()
		return Duplicate
	}
	if q.lim.ttl >= 0 && (ttl < 0 || q.lim.ttl < ttl) {
		ttl = q.lim.ttl
	}
	size := int64(len(m.Body))
	if q.lim.overflow != DropHead && q.overLimitLocked(size) {
		if q.dedup != nil {
			q.dedup.leaveLocked(m)
		}
		q.mu.Unlock()
		if q.lim.overflow == RejectPublishDLX {
			q.deadLetter([]DeadLetter{{Msg: m, Reason: ReasonMaxLen}})
		}
		return Rejected
	}
	if seq > q.nextSeq {
		q.nextSeq = seq
	} else {
		q.nextSeq++
	}
	q.stats.Published++
	e := Entry{Msg: m, Seq: q.nextSeq}
	journal := q.Journal != nil && q.Durable && (m.Persistent() || q.lim.quorum)
	if ttl != 0 && q.pagingLocked() {
		// The queue is over its in-memory window: the entry goes to the
		// paged-out tail, on disk only.
		if ttl > 0 {
			e.ExpiresAt = time.Now().UnixNano() + ttl*int64(time.Millisecond)
		}
		switch {
		case journal:
			q.Journal.Append(q.ID, e.Seq, m, e.ExpiresAt)
		case q.spool != nil:
			q.spool.SpoolWrite(q.ID, e.Seq, m, e.ExpiresAt)
		default:
			q.Journal.Spill(q.ID, e.Seq, m, e.ExpiresAt)
		}
		if q.disk.N == 0 {
			q.disk.From = e.Seq
		}
		q.disk.N++
		q.disk.Bytes += size
		q.diskHint.Store(int64(q.disk.N))
		q.readyBytes += size
		dead = q.trimLocked(dead)
		kick := len(q.consumers) > 0
		q.mu.Unlock()
		q.deadLetter(dead)
		if kick {
			q.Kick()
		}
		return Enqueued
	}
	if ttl == 0 {
		// Expiration 0: deliver only to a consumer ready now.
		dead = q.expireLocked(dead)
		if c := q.pickReadyLocked(); c != nil {
			if !c.NoAck {
				q.unacked++
				if journal {
					q.Journal.Append(q.ID, e.Seq, m, 0)
					e.Journaled = true
				}
			}
			q.handedLocked(&e, c.NoAck)
			if e.Journaled {
				q.reportDeliveredLocked()
			}
			c.Sink.Deliver(q, c, e)
		} else {
			if q.dedup != nil {
				q.dedup.leaveLocked(m)
			}
			dead = append(dead, DeadLetter{Msg: m, Reason: ReasonExpired})
		}
		q.mu.Unlock()
		q.deadLetter(dead)
		return Enqueued
	}
	if ttl > 0 {
		e.ExpiresAt = time.Now().UnixNano() + ttl*int64(time.Millisecond)
	}
	if q.readyCountLocked() == 0 && len(q.consumers) > 0 {
		// Nothing is waiting: hand the message straight to a consumer with
		// credit on the publisher's goroutine, instead of queueing it and
		// waking the queue's (one goroutine hand-off less per message).
		if c := q.pickLocked(); c != nil {
			if !c.NoAck {
				q.unacked++
				if journal {
					q.Journal.Append(q.ID, e.Seq, m, e.ExpiresAt)
					e.Journaled = true
				}
			}
			q.handedLocked(&e, c.NoAck)
			if e.Journaled {
				q.reportDeliveredLocked()
			}
			q.directN++
			c.Sink.Deliver(q, c, e)
			q.mu.Unlock()
			return Enqueued
		}
	}
	if journal {
		q.Journal.Append(q.ID, e.Seq, m, e.ExpiresAt)
		e.Journaled = true
	}
	q.ready.push(e)
	q.readyBytes += size
	dead = q.trimLocked(dead)
	kick := len(q.consumers) > 0 || (q.ready.len() == 1 && e.ExpiresAt != 0)
	q.mu.Unlock()
	q.deadLetter(dead)
	if kick {
		q.Kick()
	}
	return Enqueued
}

// trimLocked drops messages from the head while the queue is over
// x-max-length or x-max-length-bytes (drop-head). Lock must be held.
func (q *Queue) trimLocked(dead []DeadLetter) []DeadLetter {
	if q.quorum && q.lim.overflow != DropHead {
		return dead // reject-publish refuses at publish; it drops nothing
	}
	for int64(q.readyCountLocked()) > q.lim.maxLen || q.readyBytes > q.lim.maxLenBytes {
		if q.ready.len() == 0 {
			q.pageInLocked()
			if q.ready.len() == 0 {
				break
			}
		}
		old := q.popLocked()
		q.forgetLocked(&old)
		dead = append(dead, DeadLetter{Msg: old.Msg, Reason: ReasonMaxLen})
	}
	return dead
}

// pickReadyLocked picks a consumer only when no message is waiting ahead.
// Lock must be held.
func (q *Queue) pickReadyLocked() *Consumer {
	if q.readyCountLocked() > 0 || len(q.consumers) == 0 {
		return nil
	}
	return q.pickLocked()
}

// Get pops one message for basic.get; ok is false when the queue is empty.
// The returned count is the number of messages still ready.
func (q *Queue) Get(noAck bool) (e Entry, remaining int, ok bool) {
	if q.sq != nil {
		return e, 0, false // refused before it gets here
	}
	q.mu.Lock()
	q.touchLocked()
	dead := q.expireLocked(nil)
	if q.ready.len() > 0 && !q.deleted {
		e, ok = q.popLocked(), true
		if !noAck {
			q.unacked++
		}
		q.handedLocked(&e, noAck)
		if !noAck && e.Journaled {
			q.reportDeliveredLocked()
		}
		remaining = q.readyCountLocked()
	}
	q.mu.Unlock()
	q.deadLetter(dead)
	return e, remaining, ok
}

// Ack settles delivered entries: they leave the queue for good.
func (q *Queue) Ack(es []Entry) {
	if q.sq != nil {
		q.sq.ack(es)
		return
	}
	q.mu.Lock()
	q.stats.Acked += uint64(len(es))
	q.unacked -= len(es)
	for i := range es {
		q.forgetLocked(&es[i])
	}
	q.mu.Unlock()
}

// Requeue puts delivered entries back at their original positions with
// redelivered set.
func (q *Queue) Requeue(es []Entry) {
	if q.sq != nil {
		q.sq.requeue(es) // the stream keeps them anyway; the credit is back
		return
	}
	q.mu.Lock()
	if q.deleted {
		for i := range es {
			q.forgetLocked(&es[i])
		}
		q.mu.Unlock()
		return
	}
	var dead []DeadLetter
	for _, e := range es {
		e.Redelivered = true
		e.Returns++
		if q.lim.deliveryLimit >= 0 && int64(e.Returns) > q.lim.deliveryLimit {
			// Returned more often than delivery-limit allows: a poison message.
			q.forgetLocked(&e)
			dead = append(dead, DeadLetter{Msg: e.Msg, Reason: ReasonDeliveryLimit})
			continue
		}
		if e.Journaled && q.lim.deliveryLimit >= 0 {
			// The count must survive a restart, as a quorum queue's does.
			q.Journal.Returned(q.ID, e.Seq, e.Returns)
			e.ReturnsJournaled = true
		}
		q.ready.insert(e)
		q.readyBytes += int64(len(e.Msg.Body))
	}
	q.unacked -= len(es)
	q.mu.Unlock()
	q.deadLetter(dead)
	q.Kick()
}

// AddConsumer registers c. It returns false if the queue already has an
// exclusive consumer, or c is exclusive and the queue has consumers.
func (q *Queue) AddConsumer(c *Consumer) (ok bool) {
	if q.sq != nil {
		return q.sq.addConsumer(c)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleted {
		return false
	}
	if len(q.consumers) > 0 && (c.Exclusive || q.consumers[0].Exclusive) {
		return false
	}
	// Keep registration order; priorities are resolved in pickLocked.
	q.consumers = append(q.consumers, c)
	q.mixedPrio = false
	for _, o := range q.consumers {
		if o.Priority != q.consumers[0].Priority {
			q.mixedPrio = true
		}
	}
	q.hadConsumer = true
	q.touchLocked()
	q.lastProgress = time.Now().UnixNano() // presumed to drain until shown otherwise
	q.Kick()
	return true
}

// RemoveConsumer unregisters c. It reports whether it was registered.
func (q *Queue) RemoveConsumer(c *Consumer) bool {
	if q.sq != nil {
		return q.sq.removeConsumer(c)
	}
	q.mu.Lock()
	found := false
	for i, o := range q.consumers {
		if o == c {
			q.consumers = append(q.consumers[:i], q.consumers[i+1:]...)
			if q.rr > i {
				q.rr--
			}
			found = true
			break
		}
	}
	q.releaseFlowLocked()
	if found && len(q.consumers) == 0 {
		q.touchLocked()
	}
	unused := found && len(q.consumers) == 0 && q.AutoDelete && !q.deleted
	q.mu.Unlock()
	if unused && q.OnUnused != nil {
		q.OnUnused(q)
	}
	return found
}

// Reset drops every message of the queue without telling its journal
// (ready, paged out, and the count of unacked ones), keeping its consumers
// and counters: a replicated queue that stops or starts being served here
// (its log keeps the messages).
func (q *Queue) Reset() {
	q.mu.Lock()
	q.ready.clear()
	q.readyBytes = 0
	q.disk = DiskPart{}
	q.diskHint.Store(0)
	q.unacked = 0
	q.maxDelivered, q.reportedDelivered, q.watermark = 0, 0, 0
	q.mu.Unlock()
}

// Restore loads entries recovered from the journal, in Seq order, and the
// summary of the part left on disk, before the queue is used. watermark is
// the delivered watermark: entries at or below it were handed out before.
func (q *Queue) Restore(es []Entry, disk DiskPart, watermark uint64) {
	defer q.Kick() // a pass arms the expiry timer for the restored head
	q.mu.Lock()
	defer q.mu.Unlock()
	q.watermark = watermark
	if q.dedup != nil {
		es = q.dedupRestoredLocked(es)
	}
	if disk.N > 0 {
		q.disk = disk
		q.diskHint.Store(int64(disk.N))
		q.readyBytes += disk.Bytes
	}
	for _, e := range es {
		q.ready.push(e)
		q.readyBytes += int64(len(e.Msg.Body))
		if e.Seq > q.nextSeq {
			q.nextSeq = e.Seq
		}
		if e.Redelivered && e.Seq > q.maxDelivered {
			q.maxDelivered, q.reportedDelivered = e.Seq, e.Seq
		}
	}
	if disk.N > 0 && q.nextSeq < disk.Last {
		q.nextSeq = disk.Last
	}
	if q.dedup != nil {
		q.restoreDedupDiskLocked()
	}
}

// Stats are a queue's message counters since it was created (or restored).
type Stats struct {
	Published   uint64 // messages enqueued
	Delivered   uint64 // handed to consumers or basic.get
	Redelivered uint64 // of those, with the redelivered flag
	Acked       uint64
}

// Snapshot is a consistent view of a queue for listings.
type Snapshot struct {
	Ready, Unacked int
	ReadyBytes     int64
	Consumers      []Consumer
	Stats
	// Stream describes a stream queue's log; nil for other queues.
	Stream *StreamInfo
}

// Snapshot returns the queue's counts, consumers and counters.
func (q *Queue) Snapshot() Snapshot {
	if q.sq != nil {
		return q.sq.snapshot()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Snapshot{Ready: q.readyCountLocked(), Unacked: q.unacked, ReadyBytes: q.readyBytes, Stats: q.stats}
	s.Consumers = make([]Consumer, len(q.consumers))
	for i, c := range q.consumers {
		s.Consumers[i] = *c
	}
	return s
}

// Counts returns ready messages, unacked messages and consumers.
func (q *Queue) Counts() (ready, unacked, consumers int) {
	if q.sq != nil {
		// A stream's declare-ok counts no messages, as RabbitMQ's.
		q.sq.mu.Lock()
		defer q.sq.mu.Unlock()
		return 0, 0, len(q.sq.consumers)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyCountLocked(), q.unacked, len(q.consumers)
}

// Purge drops every ready message and returns how many there were.
func (q *Queue) Purge() int {
	if q.sq != nil {
		return 0 // refused before it gets here
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.ready.each(q.forgetLocked)
	disk := q.disk.N
	n := q.ready.clear() + q.dropDiskLocked()
	if q.dedup != nil && disk > 0 {
		q.dedupDiskDroppedLocked()
	}
	q.readyBytes = 0
	q.releaseFlowLocked()
	return n
}

// Delete marks the queue deleted, stops its goroutine, tells its consumers,
// and returns the number of ready messages it dropped.
func (q *Queue) Delete() int {
	if q.sq != nil {
		for _, c := range q.sq.stop(true) {
			c.Sink.Cancelled(c)
		}
		return 0
	}
	q.mu.Lock()
	if q.deleted {
		q.mu.Unlock()
		return 0
	}
	wasStopped := q.stopped
	q.deleted = true
	q.ready.each(q.forgetLocked)
	n := q.ready.clear() + q.dropDiskLocked()
	q.readyBytes = 0
	q.releaseFlowLocked()
	consumers := q.consumers
	q.consumers = nil
	q.mu.Unlock()
	if q.ready.budget != nil {
		q.ready.budget.leave(q)
	}
	if !wasStopped {
		close(q.stop)
		<-q.done
		q.timer.Stop()
		q.expTimer.Stop()
	}
	for _, c := range consumers {
		c.Sink.Cancelled(c)
	}
	return n
}

// Stop ends the delivery goroutine without touching the queue's contents,
// for broker shutdown: durable entries stay in the journal.
func (q *Queue) Stop() {
	if q.sq != nil {
		q.sq.stop(false)
		return
	}
	q.mu.Lock()
	if q.deleted || q.stopped {
		q.mu.Unlock()
		return
	}
	q.stopped = true
	q.mu.Unlock()
	if q.ready.budget != nil {
		q.ready.budget.leave(q)
	}
	close(q.stop)
	<-q.done
	q.timer.Stop()
	q.expTimer.Stop()
}

// Deleted reports whether Delete was called.
func (q *Queue) Deleted() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.deleted
}

// Peek returns up to n ready entries from position offset in delivery
// order, without taking them: browsing that changes nothing (no requeue,
// no redelivered flag). It covers the part of the queue in memory, and
// returns how many ready messages the queue holds in all.
func (q *Queue) Peek(offset, n int) ([]Entry, int) {
	if q.sq != nil {
		return q.sq.peek(offset, n)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []Entry
	i := 0
	q.ready.eachWhile(func(e *Entry) bool {
		if i >= offset {
			out = append(out, *e)
		}
		i++
		return len(out) < n
	})
	return out, q.readyCountLocked()
}
