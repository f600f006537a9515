package server

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// chanState is a channel's position in its state machine.
type chanState uint8

const (
	chanOpen      chanState = iota
	chanAwaitHdr            // basic.publish seen, content header next
	chanAwaitBody           // header seen, body frames next
	chanClosing             // we sent channel.close, awaiting close-ok
)

func (s chanState) String() string {
	return [...]string{"open", "await-header", "await-body", "closing"}[s]
}

// consumerInfo is the channel's side of one consumer (queue.Consumer.Owner).
type consumerInfo struct {
	ch       *channel
	q        *Queue
	c        *queue.Consumer
	prefetch int32
	unacked  atomic.Int32
	// active is set once consume-ok is queued.
	active atomic.Bool
	// remote is the id of a consumer of a queue at home on another node
	// (remote.go), 0 for a local queue.
	remote uint64
	// attach counts the times a replicated queue's consumer attached to a
	// leader (replica.go).
	attach atomic.Uint64
	// streamNext is, for a consumer of a stream at home on another node,
	// the offset after the last one delivered (0 before any): where it
	// resumes if it attaches to another member (stream_replica.go).
	streamNext atomic.Uint64
}

// unackedEntry is one delivery awaiting ack. c is nil for basic.get.
type unackedEntry struct {
	tag   uint64
	q     *Queue
	e     queue.Entry
	c     *consumerInfo
	acked bool
	at    int64 // Server.clock at delivery (consumer_timeout.go)
	// home delivered it (this node, or the queue's home elsewhere): a
	// replicated queue's delivery from a leader that is gone is not settled
	// (replica.go).
	home string
}

type channel struct {
	id   uint16
	conn *conn

	// Owned by the connection's reader goroutine.
	state      chanState
	pub        pendingPublish
	lastQueue  string
	confirm    bool
	publishSeq uint64
	confirms   confirmer
	tx         bool
	txPubs     []txPublish
	txAcks     []txAck
	r          *router
	checker    *checker // the user's permissions, taken at first use and after a change
	prefetch   int32    // for new consumers (basic.qos global=false)
	// Direct reply-to consumer: its tag and the token in reply addresses.
	// Written by the reader; repliers read them under mu.
	replyTag, replyToken string

	// Guarded by mu.
	mu          sync.Mutex
	nextTag     uint64
	unacked     []unackedEntry // ordered by tag
	unackedHead int
	consumers   map[string]*consumerInfo
	closed      bool
	// While this channel deletes a queue, cancel notifications wait until
	// its queue.delete-ok is out, the order RabbitMQ's clients see.
	holdCancels bool
	heldCancels []string

	globalPrefetch atomic.Int32
	unackedN       atomic.Int32
	timedOut       atomic.Int64 // set by the consumer-timeout sweep: the timeout exceeded (ms)

	// For listings and statistics, read by other goroutines.
	stats      chanStats
	modeFlags  atomic.Uint32 // modeConfirm | modeTx
	prefetchNA atomic.Int32  // mirrors prefetch
}

const (
	modeConfirm = 1 << iota
	modeTx
)

// chanStats are a channel's message counters.
type chanStats struct {
	published, confirmed, returned atomic.Uint64
}

type pendingPublish struct {
	m      amqp.BasicPublish
	header []byte
	buf    []byte // header + body, allocated once per message
	size   uint64
	props  amqp.Properties
	// msg is the message built from props, until the next one (headersOf).
	msg *queue.Message
}

type txPublish struct {
	m   amqp.BasicPublish
	msg *queue.Message
}

type txAck struct {
	tag               uint64
	multiple, requeue bool
	nack              bool
}

func newChannel(c *conn, id uint16) *channel {
	ch := &channel{id: id, conn: c, consumers: map[string]*consumerInfo{}, r: newRouter()}
	ch.r.holdDelayed = true
	ch.confirms.ch = ch
	if c.user != nil && c.vhost != nil {
		ch.checker = c.srv.newChecker(c.user, c.vhost.Name)
	}
	return ch
}

func (ch *channel) vhost() *Vhost { return ch.conn.vhost }

func (ch *channel) sendMethod(m amqp.Method) { ch.conn.sendMethod(ch.id, m) }

// handleFrame runs the channel's state machine for one frame.
func (ch *channel) handleFrame(f amqp.Frame) error {
	if ch.state == chanClosing {
		// Spec 2.3.7: after sending close, discard all but close and
		// close-ok. A close that crossed ours is answered, and we still wait
		// for the close-ok to our own close before freeing the channel id.
		if f.Type == amqp.FrameMethod {
			cls, mid, _ := amqp.MethodIDs(f.Payload)
			if cls == amqp.ClassChannel && mid == 41 {
				ch.conn.dropChannel(ch.id)
			} else if cls == amqp.ClassChannel && mid == 40 {
				ch.sendMethod(&amqp.ChannelCloseOk{})
			}
		}
		return nil
	}
	var err error
	switch f.Type {
	case amqp.FrameMethod:
		if ch.state != chanOpen {
			return amqp.Errorf(amqp.UnexpectedFrame, "expected content frame, got method frame instead")
		}
		err = ch.handleMethod(f.Payload)
	case amqp.FrameHeader:
		if ch.state != chanAwaitHdr {
			return amqp.Errorf(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
		}
		err = ch.handleHeader(f.Payload)
	case amqp.FrameBody:
		if ch.state != chanAwaitBody {
			return amqp.Errorf(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
		}
		err = ch.handleBody(f.Payload)
	}
	if err == nil {
		return nil
	}
	ae, ok := err.(*amqp.Error)
	if !ok || ae.Hard() {
		return err
	}
	ch.closeWith(ae)
	return nil
}

// closeWith closes the channel with a soft error.
func (ch *channel) closeWith(e *amqp.Error) {
	ch.conn.log.Debug("closing channel")
	ch.release()
	ch.state = chanClosing
	ch.sendMethod(&amqp.ChannelClose{ReplyCode: e.Code, ReplyText: e.Text, ClassID: e.ClassID, MethodID: e.MethodID})
}

// release cancels the channel's consumers and requeues its unacked messages.
func (ch *channel) release() {
	ch.flushConfirms()
	ch.confirms.close()
	ch.mu.Lock()
	consumers := ch.consumers
	ch.consumers = map[string]*consumerInfo{}
	if !ch.closed {
		ch.conn.srv.closedStats.add(&ch.stats)
	}
	ch.closed = true
	ch.mu.Unlock()
	ch.replyRelease()
	for _, ci := range consumers {
		if ci.remote != 0 {
			ch.conn.srv.cancelRemote(ci)
			continue
		}
		ci.q.RemoveConsumer(ci.c)
	}
	ch.mu.Lock()
	pending := ch.unacked[ch.unackedHead:]
	ch.unacked, ch.unackedHead = nil, 0
	ch.unackedN.Store(0)
	ch.mu.Unlock()
	settleEntries(pending, settleRequeue)
	ch.txPubs, ch.txAcks = nil, nil
}

func (ch *channel) handleMethod(p []byte) error {
	cls, mid, _ := amqp.MethodIDs(p)
	if cls == amqp.ClassBasic && mid == 40 {
		// Hot path: decode publish into the channel's own struct.
		if err := amqp.DecodeMethodInto(&ch.pub.m, p); err != nil {
			return err
		}
		return ch.basicPublish()
	}
	m, err := amqp.DecodeMethod(p)
	if err != nil {
		return err
	}
	if err := ch.dispatch(m); err != nil {
		if ae, ok := err.(*amqp.Error); ok && ae.ClassID == 0 {
			return ae.For(m)
		}
		return err
	}
	return nil
}

func (ch *channel) dispatch(m amqp.Method) error {
	if ch.replicated(m) {
		return ch.proposeMethod(m)
	}
	switch m := m.(type) {
	case *amqp.ChannelOpen:
		return amqp.Errorf(amqp.ChannelError, "second 'channel.open' seen")
	case *amqp.ChannelClose:
		ch.release()
		ch.sendMethod(&amqp.ChannelCloseOk{})
		ch.conn.dropChannel(ch.id)
		return nil
	case *amqp.ChannelCloseOk:
		return nil
	case *amqp.ChannelFlow:
		if !m.Active {
			return amqp.Errorf(amqp.NotImplemented, "active=false")
		}
		ch.sendMethod(&amqp.ChannelFlowOk{Active: true})
		return nil
	case *amqp.ChannelFlowOk:
		return nil
	case *amqp.ExchangeDeclare:
		return ch.exchangeDeclare(m)
	case *amqp.ExchangeDelete:
		return ch.exchangeDelete(m)
	case *amqp.ExchangeBind:
		return ch.exchangeBind(m)
	case *amqp.ExchangeUnbind:
		return ch.exchangeUnbind(m)
	case *amqp.QueueDeclare:
		return ch.queueDeclare(m)
	case *amqp.QueueBind:
		return ch.queueBind(m)
	case *amqp.QueueUnbind:
		return ch.queueUnbind(m)
	case *amqp.QueuePurge:
		return ch.queuePurge(m)
	case *amqp.QueueDelete:
		return ch.queueDelete(m)
	case *amqp.BasicQos:
		return ch.basicQos(m)
	case *amqp.BasicConsume:
		return ch.basicConsume(m)
	case *amqp.BasicCancel:
		return ch.basicCancel(m)
	case *amqp.BasicGet:
		return ch.basicGet(m)
	case *amqp.BasicAck:
		return ch.settle(txAck{tag: m.DeliveryTag, multiple: m.Multiple})
	case *amqp.BasicNack:
		return ch.settle(txAck{tag: m.DeliveryTag, multiple: m.Multiple, requeue: m.Requeue, nack: true})
	case *amqp.BasicReject:
		return ch.settle(txAck{tag: m.DeliveryTag, requeue: m.Requeue, nack: true})
	case *amqp.BasicRecover:
		return ch.basicRecover(m.Requeue)
	case *amqp.BasicRecoverAsync:
		return ch.basicRecover(m.Requeue)
	case *amqp.ConfirmSelect:
		if ch.tx {
			return amqp.Errorf(amqp.PreconditionFailed, "cannot switch from tx to confirm mode")
		}
		ch.confirm = true
		ch.modeFlags.Or(modeConfirm)
		if !m.Nowait {
			ch.sendMethod(&amqp.ConfirmSelectOk{})
		}
		return nil
	case *amqp.TxSelect:
		if ch.confirm {
			return amqp.Errorf(amqp.PreconditionFailed, "cannot switch from confirm to tx mode")
		}
		ch.tx = true
		ch.modeFlags.Or(modeTx)
		ch.sendMethod(&amqp.TxSelectOk{})
		return nil
	case *amqp.TxCommit:
		return ch.txCommit()
	case *amqp.TxRollback:
		if !ch.tx {
			return amqp.Errorf(amqp.PreconditionFailed, "channel is not transactional")
		}
		ch.txPubs, ch.txAcks = nil, nil
		ch.sendMethod(&amqp.TxRollbackOk{})
		return nil
	}
	return amqp.Errorf(amqp.CommandInvalid, "unexpected method %s", m.Name())
}

// --- delivery (queue.Sink) ---

// CanTake implements queue.Sink.
func (ch *channel) CanTake(q *queue.Queue, c *queue.Consumer) bool {
	ci := c.Owner.(*consumerInfo)
	if !ci.active.Load() {
		return false
	}
	if !c.NoAck {
		if ci.prefetch > 0 && ci.unacked.Load() >= ci.prefetch {
			return false
		}
		if g := ch.globalPrefetch.Load(); g > 0 && ch.unackedN.Load() >= g {
			return false
		}
	}
	return !ch.conn.full(q)
}

// Draining implements queue.Draining: the consumer's connection is full
// but still writing.
func (ch *channel) Draining(*queue.Consumer) bool { return ch.conn.draining() }

// Deliver implements queue.Sink: assigns the delivery tag and queues the
// frames, under the channel lock so tags reach the wire in order.
func (ch *channel) Deliver(q *queue.Queue, c *queue.Consumer, e queue.Entry) {
	ch.deliver(q, c, e, ch.conn.srv.cfg.NodeName)
}

// deliver sends a delivery that home made (this node, or another's
// through remoteDelivery).
func (ch *channel) deliver(q *queue.Queue, c *queue.Consumer, e queue.Entry, home string) {
	ci := c.Owner.(*consumerInfo)
	ch.mu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	if !c.NoAck {
		ch.unacked = append(ch.unacked, unackedEntry{tag: tag, q: ci.q, e: e, c: ci, at: ch.conn.srv.clock.Load(), home: home})
		ci.unacked.Add(1)
		ch.unackedN.Add(1)
	}
	m := e.Msg
	if t := ch.vhost().trace.Load(); t != nil {
		t.traceDeliver(ch, q.Name, m, e.Redelivered)
	}
	ch.conn.send(func(b []byte) []byte {
		b = appendDeliver(b, ch.id, c.Tag, tag, e.Redelivered, m.Exchange, m.RoutingKey)
		return amqp.AppendContent(b, ch.id, deliveryHeader(q, &e), m.Body, ch.conn.frameMax)
	})
	ch.mu.Unlock()
}

// Cancelled implements queue.Sink: the queue was deleted under the consumer.
func (ch *channel) Cancelled(c *queue.Consumer) {
	ch.mu.Lock()
	_, ok := ch.consumers[c.Tag]
	delete(ch.consumers, c.Tag)
	closed := ch.closed
	if ok && !closed && ch.conn.capCancel && ch.holdCancels {
		ch.heldCancels = append(ch.heldCancels, c.Tag)
		ok = false
	}
	ch.mu.Unlock()
	if ok && !closed && ch.conn.capCancel {
		ch.sendMethod(&amqp.BasicCancel{ConsumerTag: c.Tag, NoWait: true})
	}
}

// holdCancelNotifications makes cancel notifications wait (see holdCancels).
func (ch *channel) holdCancelNotifications() {
	ch.mu.Lock()
	ch.holdCancels = true
	ch.mu.Unlock()
}

// releaseCancelNotifications sends the cancels held since
// holdCancelNotifications.
func (ch *channel) releaseCancelNotifications() {
	ch.mu.Lock()
	held := ch.heldCancels
	ch.holdCancels, ch.heldCancels = false, nil
	ch.mu.Unlock()
	for _, tag := range held {
		ch.sendMethod(&amqp.BasicCancel{ConsumerTag: tag, NoWait: true})
	}
}

// --- acks ---

// settle applies an ack, nack or reject (deferred to commit in tx mode).
func (ch *channel) settle(a txAck) error {
	if ch.tx {
		// Validate now so a bad tag fails at once, as RabbitMQ does.
		ch.mu.Lock()
		ok := a.tag == 0 && a.multiple || ch.findLocked(a.tag) >= 0
		ch.mu.Unlock()
		if !ok {
			return amqp.Errorf(amqp.PreconditionFailed, "unknown delivery tag %d", a.tag)
		}
		ch.txAcks = append(ch.txAcks, a)
		return nil
	}
	return ch.applySettle(a)
}

// findLocked returns the index of the live entry with tag, or -1.
// Lock must be held.
func (ch *channel) findLocked(tag uint64) int {
	live := ch.unacked[ch.unackedHead:]
	i := sort.Search(len(live), func(i int) bool { return live[i].tag >= tag })
	if i < len(live) && live[i].tag == tag && !live[i].acked {
		return ch.unackedHead + i
	}
	return -1
}

func (ch *channel) applySettle(a txAck) error {
	var taken []unackedEntry
	var single [1]unackedEntry
	ch.mu.Lock()
	if a.multiple {
		end := len(ch.unacked)
		if a.tag != 0 {
			live := ch.unacked[ch.unackedHead:]
			end = ch.unackedHead + sort.Search(len(live), func(i int) bool { return live[i].tag > a.tag })
			// As RabbitMQ: the tag itself must be outstanding.
			if ch.findLocked(a.tag) < 0 {
				ch.mu.Unlock()
				return amqp.Errorf(amqp.PreconditionFailed, "unknown delivery tag %d", a.tag)
			}
		}
		taken = make([]unackedEntry, 0, end-ch.unackedHead)
		for i := ch.unackedHead; i < end; i++ {
			if !ch.unacked[i].acked {
				taken = append(taken, ch.unacked[i])
			}
			ch.unacked[i] = unackedEntry{}
		}
		ch.unackedHead = end
	} else {
		i := ch.findLocked(a.tag)
		if i < 0 {
			ch.mu.Unlock()
			return amqp.Errorf(amqp.PreconditionFailed, "unknown delivery tag %d", a.tag)
		}
		single[0] = ch.unacked[i]
		taken = single[:]
		if i == ch.unackedHead {
			ch.unacked[i] = unackedEntry{}
			ch.unackedHead++
		} else {
			ch.unacked[i].acked = true
			ch.unacked[i].e = queue.Entry{}
		}
	}
	// Skip tombstones at the head and compact.
	for ch.unackedHead < len(ch.unacked) && ch.unacked[ch.unackedHead].acked {
		ch.unacked[ch.unackedHead] = unackedEntry{}
		ch.unackedHead++
	}
	if ch.unackedHead == len(ch.unacked) {
		ch.unacked, ch.unackedHead = ch.unacked[:0], 0
	} else if ch.unackedHead > 1024 && ch.unackedHead*2 > len(ch.unacked) {
		n := copy(ch.unacked, ch.unacked[ch.unackedHead:])
		clear(ch.unacked[n:])
		ch.unacked, ch.unackedHead = ch.unacked[:n], 0
	}
	ch.unackedN.Add(-int32(len(taken)))
	for i := range taken {
		if taken[i].c != nil {
			taken[i].c.unacked.Add(-1)
		}
	}
	ch.mu.Unlock()

	if a.nack {
		for i := range taken {
			if q := taken[i].q; q != nil && q.IsStream() {
				// RabbitMQ closes the channel; the others go back.
				settleEntries(taken, settleRequeue)
				return errStreamUnsupported("basic.nack and basic.reject", q, ch.vhost().Name)
			}
		}
	}
	switch {
	case a.nack && a.requeue:
		settleEntries(taken, settleRequeue)
	case a.nack:
		settleEntries(taken, settleDeadLetter)
	default:
		settleEntries(taken, settleAck)
	}
	ch.kickConsumers()
	return nil
}

// How settleEntries hands entries back to their queues.
const (
	settleAck        = iota // acked: they leave the queue
	settleRequeue           // back to their original positions
	settleDeadLetter        // rejected without requeue: acked, then dead-lettered
)

// settleEntries hands entries back to their queues, one call per run of
// entries from the same queue (a run of one needs no allocation). Acked
// tombstones are skipped. A queue may get several calls when deliveries
// from several queues interleave; each call keeps its entries' order.
func settleEntries(es []unackedEntry, how int) {
	var one [1]queue.Entry
	for i := 0; i < len(es); {
		j := i + 1
		for j < len(es) && es[j].q == es[i].q {
			j++
		}
		batch := one[:0]
		if j-i > 1 {
			batch = make([]queue.Entry, 0, j-i)
		}
		for _, u := range es[i:j] {
			if !u.acked {
				batch = append(batch, u.e)
			}
		}
		if q := es[i].q; q.repl != nil {
			settleReplicated(q, es[i:j], how)
		} else if q.remote(q.homeNode()) {
			settleRemote(q, es[i:j], how)
		} else if len(batch) > 0 {
			settleBatch(q, batch, how)
		}
		i = j
	}
}

// settleBatch acks, requeues or dead-letters entries of one local queue.
func settleBatch(q *Queue, es []queue.Entry, how int) {
	switch how {
	case settleAck:
		q.Ack(es)
	case settleRequeue:
		q.Requeue(es)
	case settleDeadLetter:
		q.Ack(es)
		q.DeadLetterRejected(es)
	}
}

// kickConsumers wakes the queues this channel consumes from: credit came back.
func (ch *channel) kickConsumers() {
	ch.mu.Lock()
	for _, ci := range ch.consumers {
		ci.q.Kick()
	}
	ch.mu.Unlock()
}

func (ch *channel) basicRecover(requeue bool) error {
	if !requeue {
		return amqp.Errorf(amqp.NotImplemented, "requeue=false")
	}
	ch.mu.Lock()
	pending := ch.unacked[ch.unackedHead:]
	ch.unacked, ch.unackedHead = nil, 0
	ch.unackedN.Store(0)
	for i := range pending {
		if pending[i].c != nil && !pending[i].acked {
			pending[i].c.unacked.Add(-1)
		}
	}
	ch.mu.Unlock()
	settleEntries(pending, settleRequeue)
	ch.sendMethod(&amqp.BasicRecoverOk{})
	ch.kickConsumers()
	return nil
}

func (ch *channel) basicQos(m *amqp.BasicQos) error {
	if m.PrefetchSize != 0 {
		return amqp.Errorf(amqp.NotImplemented, "prefetch_size!=0 (%d)", m.PrefetchSize)
	}
	if m.Global {
		ch.globalPrefetch.Store(int32(m.PrefetchCount))
	} else {
		ch.prefetch = int32(m.PrefetchCount)
		ch.prefetchNA.Store(ch.prefetch)
	}
	ch.sendMethod(&amqp.BasicQosOk{})
	ch.kickConsumers()
	return nil
}

// --- confirms and transactions ---

// flushConfirms sends the confirms that are ready, coalesced.
func (ch *channel) flushConfirms() {
	if ch.confirm {
		ch.confirms.flush()
	}
}

func (ch *channel) txCommit() error {
	if !ch.tx {
		return amqp.Errorf(amqp.PreconditionFailed, "channel is not transactional")
	}
	pubs, acks := ch.txPubs, ch.txAcks
	ch.txPubs, ch.txAcks = nil, nil
	for i := range pubs {
		if err := ch.route(&pubs[i].m, pubs[i].msg, 0); err != nil {
			return err
		}
	}
	for _, a := range acks {
		if err := ch.applySettle(a); err != nil {
			return err
		}
	}
	ch.sendMethod(&amqp.TxCommitOk{})
	return nil
}
