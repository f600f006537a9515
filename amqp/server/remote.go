package server

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Consuming, getting and purging a queue whose home is another node. The
// client's node (A) keeps the client's channel, tags and acks as for a
// local queue; the home node (B) holds a proxy consumer on the real queue
// that forwards deliveries to A, takes A's acks, and enforces the
// consumer's prefetch, so credit and order are the queue's own. A consumer
// starts inactive on B and is activated once A has sent consume-ok, so no
// delivery overtakes it. If the nodes lose each other, B requeues what A's
// clients had not acked and A cancels those consumers (basic.cancel to
// clients that asked for cancel notifications), as RabbitMQ does when a
// queue's node goes away.

// More frame types of the broker's inter-node payloads (forward.go has the
// first two).
const (
	peerConsume   = 3  // request: id(8) flags(1) prefetch(4) priority(8) vhost queue tag
	peerActivate  = 4  // id(8)
	peerCancel    = 5  // id(8)
	peerDeliver   = 6  // id(8) dtag(8) redelivered(1) exchange key hdrLen(4) header body
	peerSettle    = 7  // id(8) how(1) n(4) dtag(8)*n; id 0: basic.get deliveries
	peerCancelled = 8  // id(8): the queue went away under the consumer
	peerGet       = 9  // request: noAck(1) vhost queue
	peerPurge     = 10 // request: vhost queue
	peerCount     = 11 // request: vhost queue
)

const (
	flagNoAck     = 1
	flagExclusive = 2
)

// PeerCaller is the request/response half of Peers (cluster.Node).
type PeerCaller interface {
	Call(ctx context.Context, node string, payload []byte) ([]byte, error)
}

// peerTimeout bounds a request to another node.
const peerTimeout = 10 * time.Second

// errHomeDown is RabbitMQ's answer for a queue whose node cannot be reached.
func errHomeDown(q *Queue, vhost string) *amqp.Error {
	return amqp.Errorf(amqp.NotFound, "home node '%s' of durable queue '%s' in vhost '%s' is down or inaccessible", q.Home(), q.Name, vhost)
}

// call sends a request to q's home node; a transport failure is RabbitMQ's
// 404 for an unreachable home.
func (ch *channel) call(q *Queue, payload []byte) ([]byte, error) {
	home := q.Home()
	if q.repl != nil && home == "" {
		home = q.waitHome(leaderWait) // a replicated queue between leaders
	}
	out, err := ch.conn.srv.callPeer(home, payload)
	if err != nil {
		return nil, errHomeDown(q, ch.vhost().Name)
	}
	return out, nil
}

// callPeer sends a request to node; to this node itself (a replicated
// queue led here) it is served in place.
func (s *Server) callPeer(node string, payload []byte) ([]byte, error) {
	if node == s.cfg.NodeName && len(payload) > 0 {
		return s.handleRemoteRequest(node, payload[0], &peerReader{b: payload[1:]}), nil
	}
	pc, ok := s.peers.(PeerCaller)
	if !ok || node == "" {
		return nil, errShort
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	return pc.Call(ctx, node, payload)
}

// sendPeer sends a one-way payload to node; to this node itself it is
// handled in place (the loopback of replicated queues' consumers).
func (s *Server) sendPeer(node string, payload []byte) error {
	if node == s.cfg.NodeName {
		s.HandlePeer(node, payload, nil)
		return nil
	}
	if s.peers == nil {
		return errShort
	}
	return s.peers.Send(node, payload)
}

// Replies to requests: status 0 is success; 1 is an AMQP error (code(2)
// textLen(2) text); basic.get's 2 is get-empty.
func replyErr(err error) []byte {
	var ae *amqp.Error
	if !errors.As(err, &ae) {
		ae = amqp.Errorf(amqp.InternalError, "%v", err)
	}
	b := []byte{1}
	b = binary.BigEndian.AppendUint16(b, ae.Code)
	b = binary.BigEndian.AppendUint16(b, uint16(min(len(ae.Text), 65535)))
	return append(b, ae.Text[:min(len(ae.Text), 65535)]...)
}

func decodeReplyErr(b []byte) error {
	if len(b) < 5 {
		return amqp.Errorf(amqp.InternalError, "malformed reply from the queue's node")
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	if len(b) < 5+n {
		return amqp.Errorf(amqp.InternalError, "malformed reply from the queue's node")
	}
	return &amqp.Error{Code: binary.BigEndian.Uint16(b[1:3]), Text: string(b[5 : 5+n])}
}

// --- the client's node (A) ---

// remoteConsumers maps the ids A gave its consumers of remote queues to
// them.
type remoteConsumers struct {
	mu   sync.Mutex
	next uint64
	byID map[uint64]*consumerInfo // guarded by mu
}

func (r *remoteConsumers) add(ci *consumerInfo) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	if r.byID == nil {
		r.byID = map[uint64]*consumerInfo{}
	}
	r.byID[r.next] = ci
	return r.next
}

func (r *remoteConsumers) take(id uint64) *consumerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	ci := r.byID[id]
	delete(r.byID, id)
	return ci
}

func (r *remoteConsumers) get(id uint64) *consumerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

// onNode removes and returns the consumers of queues at home on node.
func (r *remoteConsumers) onNode(node string) []*consumerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*consumerInfo
	for id, ci := range r.byID {
		if ci.q.Home() == node && ci.q.repl == nil { // a replicated queue's consumers attach to its next leader
			out = append(out, ci)
			delete(r.byID, id)
		}
	}
	return out
}

// remoteConsume is basic.consume on a queue at home elsewhere.
func (ch *channel) remoteConsume(m *amqp.BasicConsume, q *Queue, tag string, prio int64) error {
	s := ch.conn.srv
	ci := &consumerInfo{ch: ch, q: q, prefetch: ch.prefetch}
	ci.c = &queue.Consumer{Tag: tag, NoAck: m.NoAck, Exclusive: m.Exclusive, Priority: prio, Sink: ch, Owner: ci}
	if q.IsStream() {
		ci.c.Args = m.Arguments // its x-stream-offset and filter, for the home's reader
	}
	ci.remote = s.remotes.add(ci)
	out, err := ch.call(q, consumeRequest(ci, ch.vhost().Name, 0, ci.c.Args))
	if err == nil && (len(out) == 0 || out[0] != 0) {
		err = decodeReplyErr(out)
	}
	if err != nil {
		s.remotes.take(ci.remote)
		return err
	}
	ch.mu.Lock()
	ch.consumers[tag] = ci
	ch.mu.Unlock()
	if !m.NoWait {
		ch.sendMethod(&amqp.BasicConsumeOk{ConsumerTag: tag})
	}
	ci.active.Store(true)
	a := []byte{peerActivate}
	s.sendPeer(q.Home(), binary.BigEndian.AppendUint64(a, ci.remote)) // a lost node cancels the consumer
	return nil
}

// consumeRequest is the peerConsume request attaching ci to its queue's
// home; base (above 0 for an attachment again) is the first delivery tag
// less one.
func consumeRequest(ci *consumerInfo, vhost string, base uint64, args amqp.Table) []byte {
	var flags byte
	if ci.c.NoAck {
		flags |= flagNoAck
	}
	if ci.c.Exclusive {
		flags |= flagExclusive
	}
	b := []byte{peerConsume}
	b = binary.BigEndian.AppendUint64(b, ci.remote)
	b = append(b, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(max(ci.prefetch, 0)))
	b = binary.BigEndian.AppendUint64(b, uint64(ci.c.Priority))
	b = appendShortstr(b, vhost)
	b = appendShortstr(b, ci.q.Name)
	b = appendShortstr(b, ci.c.Tag)
	if base > 0 || len(args) > 0 {
		b = binary.BigEndian.AppendUint64(b, base)
	}
	if len(args) > 0 {
		b = amqp.AppendTable(b, args) // a stream consumer's arguments
	}
	return b
}

// cancelRemote tells the home node a consumer of A is gone.
func (s *Server) cancelRemote(ci *consumerInfo) {
	if s.remotes.take(ci.remote) == nil || s.peers == nil {
		return
	}
	b := []byte{peerCancel}
	s.sendPeer(ci.q.Home(), binary.BigEndian.AppendUint64(b, ci.remote))
}

// settleRemote sends acks, requeues or rejections of deliveries from a
// remote queue to its home node, per consumer.
func settleRemote(q *Queue, es []unackedEntry, how int) {
	s := q.srv
	if s == nil || s.peers == nil {
		return
	}
	byID := map[uint64][]uint64{}
	for _, u := range es {
		if u.acked {
			continue
		}
		var id uint64
		if u.c != nil {
			id = u.c.remote
		}
		byID[id] = append(byID[id], u.e.Seq)
	}
	for id, tags := range byID {
		b := make([]byte, 0, 14+8*len(tags))
		b = append(b, peerSettle)
		b = binary.BigEndian.AppendUint64(b, id)
		b = append(b, byte(how))
		b = binary.BigEndian.AppendUint32(b, uint32(len(tags)))
		for _, t := range tags {
			b = binary.BigEndian.AppendUint64(b, t)
		}
		s.sendPeer(q.Home(), b) // a lost node requeues them on its side
	}
}

// remoteDelivery hands a delivery from the home node to its consumer here.
func (s *Server) remoteDelivery(from string, r *peerReader) {
	id, dtag := r.u64(), r.u64()
	red := r.bytes(1)
	exch, key := r.shortstr(), r.shortstr()
	header := r.bytes(r.u32())
	body := r.b
	if r.err != nil {
		return
	}
	ci := s.remotes.get(id)
	if ci == nil {
		// Cancelled meanwhile (its channel closed, or it followed a new
		// leader): the home node keeps a cancelled consumer's deliveries
		// for their acks, so this one, which no client will see, goes back
		// to its queue.
		b := binary.BigEndian.AppendUint64([]byte{peerSettle}, id)
		b = append(b, settleRequeue)
		b = binary.BigEndian.AppendUint32(b, 1)
		s.sendPeer(from, binary.BigEndian.AppendUint64(b, dtag))
		return
	}
	h, err := amqp.DecodeContentHeader(header)
	if err != nil {
		return
	}
	if ci.q.IsStream() {
		if off, ok := h.Properties.Headers["x-stream-offset"].(int64); ok {
			ci.streamNext.Store(uint64(off) + 1)
		}
	}
	msg := queue.NewMessage(exch, key, header, body)
	ci.ch.deliver(ci.q.Queue, ci.c, queue.Entry{Msg: msg, Seq: dtag, Redelivered: red[0] == 1}, from)
}

// remoteCancelled ends consumers whose queue or node went away, telling
// clients that asked for cancel notifications.
func remoteCancelled(cis []*consumerInfo) {
	for _, ci := range cis {
		ci.ch.Cancelled(ci.c)
	}
}

// remoteGet is basic.get on a queue at home elsewhere.
func (ch *channel) remoteGet(m *amqp.BasicGet, q *Queue) error {
	b := []byte{peerGet, 0}
	if m.NoAck {
		b[1] = 1
	}
	b = appendShortstr(b, ch.vhost().Name)
	b = appendShortstr(b, q.Name)
	out, err := ch.call(q, b)
	if err != nil {
		return err
	}
	switch {
	case len(out) == 0:
		return amqp.Errorf(amqp.InternalError, "malformed reply from the queue's node")
	case out[0] == 1:
		return decodeReplyErr(out)
	case out[0] == 2:
		ch.sendMethod(&amqp.BasicGetEmpty{})
		return nil
	}
	r := &peerReader{b: out[1:]}
	dtag := r.u64()
	red := r.bytes(1)
	remaining := r.u32()
	exch, key := r.shortstr(), r.shortstr()
	header := r.bytes(r.u32())
	body := r.b
	if r.err != nil {
		return amqp.Errorf(amqp.InternalError, "malformed reply from the queue's node")
	}
	ch.mu.Lock()
	ch.nextTag++
	tag := ch.nextTag
	if !m.NoAck {
		ch.unacked = append(ch.unacked, unackedEntry{tag: tag, q: q, e: queue.Entry{Seq: dtag}, at: ch.conn.srv.clock.Load(), home: q.Home()})
		ch.unackedN.Add(1)
	}
	ch.conn.send(func(b []byte) []byte {
		b = amqp.AppendMethodFrame(b, ch.id, &amqp.BasicGetOk{DeliveryTag: tag, Redelivered: red[0] == 1, Exchange: exch, RoutingKey: key, MessageCount: remaining})
		return amqp.AppendContent(b, ch.id, header, body, ch.conn.frameMax)
	})
	ch.mu.Unlock()
	return nil
}

// remoteCounts asks the home node for a queue's ready messages and
// consumers (a passive declare); remotePurge purges it there.
func (ch *channel) remoteCounts(q *Queue, op byte) (uint32, uint32, error) {
	b := []byte{op}
	b = appendShortstr(b, ch.vhost().Name)
	b = appendShortstr(b, q.Name)
	out, err := ch.call(q, b)
	if err != nil {
		return 0, 0, err
	}
	if len(out) == 0 || out[0] != 0 {
		return 0, 0, decodeReplyErr(out)
	}
	r := &peerReader{b: out[1:]}
	a, c := r.u32(), r.u32()
	return a, c, r.err
}

// --- the home node (B) ---

type proxyKey struct {
	node string
	id   uint64
}

// proxies are this node's consumers on behalf of other nodes' clients; id
// 0 of each node holds its basic.get deliveries.
type proxies struct {
	mu    sync.Mutex
	byKey map[proxyKey]*proxyConsumer // guarded by mu
}

func (p *proxies) get(k proxyKey) *proxyConsumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byKey[k]
}

func (p *proxies) put(k proxyKey, pc *proxyConsumer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey == nil {
		p.byKey = map[proxyKey]*proxyConsumer{}
	}
	p.byKey[k] = pc
}

// remove drops pc's entry (not a newer proxy's under the same key).
func (p *proxies) remove(k proxyKey, pc *proxyConsumer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byKey[k] == pc {
		delete(p.byKey, k)
	}
}

// ofNode removes and returns the proxies of node.
func (p *proxies) ofNode(node string) []*proxyConsumer {
	return p.takeWhere(func(k proxyKey, _ *proxyConsumer) bool { return k.node == node })
}

// takeWhere removes and returns the proxies match selects.
func (p *proxies) takeWhere(match func(proxyKey, *proxyConsumer) bool) []*proxyConsumer {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*proxyConsumer
	for k, pc := range p.byKey {
		if match(k, pc) {
			out = append(out, pc)
			delete(p.byKey, k)
		}
	}
	return out
}

// proxyConsumer consumes a local queue for a client on another node: a
// queue.Sink that forwards deliveries.
type proxyConsumer struct {
	s        *Server
	key      proxyKey
	q        *Queue
	c        *queue.Consumer // nil for the basic.get holder
	noAck    bool
	prefetch int
	active   atomic.Bool

	mu      sync.Mutex
	next    uint64                 // guarded by mu
	unacked map[uint64]queue.Entry // guarded by mu
	gone    bool                   // cancelled; removed once nothing is unacked. Guarded by mu
}

// live reports whether p is attached (not cancelled).
func (p *proxyConsumer) live() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.gone
}

// CanTake implements queue.Sink: the client's prefetch, counted here.
func (p *proxyConsumer) CanTake(*queue.Queue, *queue.Consumer) bool {
	if !p.active.Load() {
		return false
	}
	if p.noAck || p.prefetch == 0 {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.unacked) < p.prefetch
}

// track records an entry handed to the other node and returns its tag.
func (p *proxyConsumer) track(e queue.Entry, noAck bool) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	if !noAck {
		if p.unacked == nil {
			p.unacked = map[uint64]queue.Entry{}
		}
		p.unacked[p.next] = e
	}
	return p.next
}

// Deliver implements queue.Sink (queue lock held): the frame is queued for
// the consumer's node; if that fails the entry is requeued off the lock.
func (p *proxyConsumer) Deliver(q *queue.Queue, c *queue.Consumer, e queue.Entry) {
	dtag := p.track(e, c.NoAck)
	m := e.Msg
	hdr := deliveryHeader(q, &e)
	b := make([]byte, 0, 40+len(m.Exchange)+len(m.RoutingKey)+len(hdr)+len(m.Body))
	b = append(b, peerDeliver)
	b = binary.BigEndian.AppendUint64(b, p.key.id)
	b = binary.BigEndian.AppendUint64(b, dtag)
	if e.Redelivered {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendShortstr(b, m.Exchange)
	b = appendShortstr(b, m.RoutingKey)
	b = binary.BigEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	b = append(b, m.Body...)
	if err := p.s.sendPeer(p.key.node, b); err != nil && !c.NoAck {
		go p.settle(settleRequeue, []uint64{dtag})
	}
}

// Cancelled implements queue.Sink: the queue was deleted.
func (p *proxyConsumer) Cancelled(*queue.Consumer) {
	p.s.proxies.remove(p.key, p)
	b := []byte{peerCancelled}
	p.s.sendPeer(p.key.node, binary.BigEndian.AppendUint64(b, p.key.id))
}

// settle applies the other node's ack, requeue or rejection.
func (p *proxyConsumer) settle(how int, tags []uint64) {
	p.mu.Lock()
	es := make([]queue.Entry, 0, len(tags))
	for _, t := range tags {
		if e, ok := p.unacked[t]; ok {
			es = append(es, e)
			delete(p.unacked, t)
		}
	}
	done := p.gone && len(p.unacked) == 0
	p.mu.Unlock()
	if done {
		p.s.proxies.remove(p.key, p)
	}
	if len(es) > 0 {
		settleEntriesOf(p.q, es, how) // and credit came back
	}
}

// cancel stops the consumer; its unacked deliveries wait for their acks
// (requeue all when the node is lost).
func (p *proxyConsumer) cancel(requeueAll bool) {
	if p.c != nil {
		p.q.RemoveConsumer(p.c)
	}
	p.mu.Lock()
	p.gone = true
	var es []queue.Entry
	if requeueAll {
		for _, e := range p.unacked {
			es = append(es, e)
		}
		p.unacked = nil
	}
	empty := len(p.unacked) == 0
	p.mu.Unlock()
	if empty && !requeueAll {
		p.s.proxies.remove(p.key, p)
	}
	if len(es) > 0 {
		p.q.Requeue(es)
	}
}

// abandon drops the consumer and forgets its deliveries without touching
// the queue: a replicated queue that stops being served here (its messages
// are dropped from memory, the next leader has them).
func (p *proxyConsumer) abandon() {
	if p.c != nil {
		p.q.RemoveConsumer(p.c)
	}
	p.mu.Lock()
	p.gone = true
	p.unacked = nil
	p.mu.Unlock()
	p.s.proxies.remove(p.key, p)
}

// localQueue finds a queue that lives here.
func (s *Server) localQueue(vhost, name string) (*Queue, error) {
	s.mu.Lock()
	v := s.vhosts[vhost]
	s.mu.Unlock()
	if v == nil {
		return nil, amqp.Errorf(amqp.NotFound, "no vhost '%s'", vhost)
	}
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	if q == nil || q.remote(v.node) {
		return nil, errNoQueue(name, vhost)
	}
	return q, nil
}

// handleRemoteRequest serves another node's consume, get, purge or count
// request (off the connection's reader: it may wait for the queue's lock).
func (s *Server) handleRemoteRequest(from string, op byte, r *peerReader) []byte {
	switch op {
	case peerAPI:
		h := s.peerAPI.Load()
		if h == nil {
			return nil
		}
		out, err := (*h)(r.b)
		if err != nil {
			return nil
		}
		return out
	case peerDedup:
		return s.handleDedup(from, r)
	case peerConsume:
		id := r.u64()
		flags := r.bytes(1)
		prefetch := r.u32()
		prio := int64(r.u64())
		vhost, qname, tag := r.shortstr(), r.shortstr(), r.shortstr()
		if r.err != nil {
			return replyErr(amqp.Errorf(amqp.FrameError, "malformed consume"))
		}
		var base uint64 // first delivery tag - 1: a consumer attached again starts above its old tags
		if len(r.b) >= 8 {
			base = r.u64()
		}
		var args amqp.Table
		if len(r.b) > 0 {
			var err error
			if args, err = amqp.DecodeTable(r.b); err != nil {
				return replyErr(amqp.Errorf(amqp.FrameError, "malformed consume"))
			}
		}
		q, err := s.localQueue(vhost, qname)
		if err != nil {
			return replyErr(err)
		}
		p := &proxyConsumer{s: s, key: proxyKey{from, id}, q: q, noAck: flags[0]&flagNoAck != 0, prefetch: int(prefetch), next: base}
		if old := s.proxies.get(p.key); old != nil {
			if old.q == q && old.live() {
				// Attached here already, and the queue has run here since
				// (a replicated queue that stops running here drops its
				// proxies): the consumer's node saw a change of leader
				// that was none here, such as its member learning the
				// leader after the consumer attached. The attachment
				// stands, with its unacked deliveries.
				return []byte{0}
			}
			// The consumer attached again (it followed a new leader here):
			// the old attachment's deliveries go back to the queue.
			old.cancel(true)
		}
		p.c = &queue.Consumer{Tag: tag, NoAck: p.noAck, Exclusive: flags[0]&flagExclusive != 0, Priority: prio, Sink: p, Owner: p, Args: args}
		s.proxies.put(p.key, p)
		if !q.AddConsumer(p.c) {
			s.proxies.remove(p.key, p)
			if q.Deleted() {
				return replyErr(errNoQueue(qname, vhost))
			}
			return replyErr(amqp.Errorf(amqp.AccessRefused, "queue '%s' in vhost '%s' in exclusive use", qname, vhost))
		}
		return []byte{0}
	case peerGet:
		noAck := r.bytes(1)
		vhost, qname := r.shortstr(), r.shortstr()
		if r.err != nil {
			return replyErr(amqp.Errorf(amqp.FrameError, "malformed get"))
		}
		q, err := s.localQueue(vhost, qname)
		if err != nil {
			return replyErr(err)
		}
		e, remaining, ok := q.Get(noAck[0] == 1)
		if !ok {
			return []byte{2}
		}
		var dtag uint64
		if noAck[0] == 1 {
			dtag = 0
		} else {
			dtag = s.gets.track(from, q, e)
		}
		m := e.Msg
		hdr := getHeader(q.Queue, &e)
		b := []byte{0}
		b = binary.BigEndian.AppendUint64(b, dtag)
		if e.Redelivered {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(remaining))
		b = appendShortstr(b, m.Exchange)
		b = appendShortstr(b, m.RoutingKey)
		b = binary.BigEndian.AppendUint32(b, uint32(len(hdr)))
		b = append(b, hdr...)
		return append(b, m.Body...)
	case peerPurge, peerCount:
		vhost, qname := r.shortstr(), r.shortstr()
		if r.err != nil {
			return replyErr(amqp.Errorf(amqp.FrameError, "malformed request"))
		}
		q, err := s.localQueue(vhost, qname)
		if err != nil {
			return replyErr(err)
		}
		var a, c int
		if op == peerPurge {
			a = q.Purge()
		} else {
			q.Touch()
			a, _, c = q.Counts()
		}
		b := []byte{0}
		b = binary.BigEndian.AppendUint32(b, uint32(a))
		return binary.BigEndian.AppendUint32(b, uint32(c))
	}
	return replyErr(amqp.Errorf(amqp.NotImplemented, "unknown request %d", op))
}

// gets holds other nodes' unacked basic.get deliveries: per node, tag to
// queue and entry. They are settled with consumer id 0.
type gets struct {
	mu     sync.Mutex
	next   uint64
	byNode map[string]map[uint64]gotEntry // guarded by mu
}

type gotEntry struct {
	q *Queue
	e queue.Entry
}

func (g *gets) track(node string, q *Queue, e queue.Entry) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.next++
	if g.byNode == nil {
		g.byNode = map[string]map[uint64]gotEntry{}
	}
	if g.byNode[node] == nil {
		g.byNode[node] = map[uint64]gotEntry{}
	}
	g.byNode[node][g.next] = gotEntry{q, e}
	return g.next
}

// take removes tags of node (all of them with all set) and groups their
// entries by queue.
func (g *gets) take(node string, tags []uint64, all bool) map[*Queue][]queue.Entry {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[*Queue][]queue.Entry{}
	m := g.byNode[node]
	if all {
		for _, ge := range m {
			out[ge.q] = append(out[ge.q], ge.e)
		}
		delete(g.byNode, node)
		return out
	}
	for _, t := range tags {
		if ge, ok := m[t]; ok {
			out[ge.q] = append(out[ge.q], ge.e)
			delete(m, t)
		}
	}
	return out
}

// settleEntriesOf settles another node's deliveries of a queue here; the
// credit they held comes back, so the queue is woken.
func settleEntriesOf(q *Queue, es []queue.Entry, how int) {
	settleBatch(q, es, how)
	q.Kick()
}
