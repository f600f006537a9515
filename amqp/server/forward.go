package server

import (
	"encoding/binary"
	"errors"
	"sync"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// In a cluster a classic queue lives on its home node (the node that
// declared it, as in RabbitMQ). A message published on another node is
// routed there, on the receiving node, and each copy for a queue at home
// elsewhere is forwarded to that node over the cluster's connection (one
// binary frame per copy, batched by the transport), where it is enqueued as
// if published locally. With publisher confirms, the publish is confirmed
// once every node holding a copy has it (on disk when persistent), and
// nacked when one refused it or its node could not be reached.

// Peers carries the broker's own traffic between nodes (cluster.Node).
type Peers interface {
	// Send queues payload for node (by name); it fails at once when the
	// node is unknown or unreachable.
	Send(node string, payload []byte) error
}

// SetPeers connects the broker to the other nodes of its cluster. Call
// before Serve.
func (s *Server) SetPeers(p Peers) { s.peers = p }

// Frame types of the broker's inter-node payloads (first byte).
const (
	peerForward    = 1 // fwdID(8) vhost queue exchange key (shortstrs) ttl(8) hdrLen(4) header body
	peerForwardAck = 2 // fwdID(8) ok(1)
)

// forwards tracks forwarded copies awaiting their home node's answer, for
// publisher confirms.
type forwards struct {
	mu      sync.Mutex
	next    uint64
	pending map[uint64]forwardWait // guarded by mu
}

type forwardWait struct {
	done func(ok bool) // the answer
	// resend, when set, is called instead of done(false) when node goes
	// down: a copy for a replicated queue goes to its next leader.
	resend func()
	node   string
}

func (f *forwards) add(node string, w forwardWait) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	if f.pending == nil {
		f.pending = map[uint64]forwardWait{}
	}
	w.node = node
	f.pending[f.next] = w
	return f.next
}

func (f *forwards) take(id uint64) (forwardWait, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w, ok := f.pending[id]
	delete(f.pending, id)
	return w, ok
}

// failNode nacks every copy waiting on node (its connection went down: the
// copies may or may not have arrived, so the publisher must decide).
func (f *forwards) failNode(node string) {
	f.mu.Lock()
	var failed []forwardWait
	for id, w := range f.pending {
		if w.node == node {
			failed = append(failed, w)
			delete(f.pending, id)
		}
	}
	f.mu.Unlock()
	for _, w := range failed {
		if w.resend != nil {
			w.resend()
		} else {
			w.done(false)
		}
	}
}

// PeerDown is told when the connection to node is lost: copies forwarded
// there are nacked, consumers of its queues cancelled, and what its
// clients had not acked here requeued.
func (s *Server) PeerDown(node string) {
	s.leaderLost(node)
	s.streamLeaderLost(node)
	s.forwards.failNode(node)
	remoteCancelled(s.remotes.onNode(node))
	for _, p := range s.proxies.ofNode(node) {
		p.cancel(true)
	}
	for q, es := range s.gets.take(node, nil, true) {
		settleEntriesOf(q, es, settleRequeue)
	}
}

// forward sends a copy of msg for queue q to q's home node. With a
// confirmer it returns false when the copy could not even be sent (the
// caller counts it as refused); the answer settles seq later.
func (s *Server) forward(v *Vhost, q *Queue, msg *queue.Message, ttl int64, c *confirmer, seq uint64) bool {
	var w forwardWait
	if c != nil {
		w.done = func(ok bool) { c.settleRemote(seq, ok) }
	}
	return s.forwardTo(q.Home(), v, q, msg, ttl, w)
}

// forwardTo sends a copy of msg for q to node; w.done (if set) is called
// with the answer. It returns false when the copy could not be sent (then
// w.done is not called).
func (s *Server) forwardTo(node string, v *Vhost, q *Queue, msg *queue.Message, ttl int64, w forwardWait) bool {
	var id uint64
	if w.done != nil {
		id = s.forwards.add(node, w)
	}
	b := make([]byte, 0, 64+len(v.Name)+len(q.Name)+len(msg.Exchange)+len(msg.RoutingKey)+len(msg.Header)+len(msg.Body))
	b = append(b, peerForward)
	b = binary.BigEndian.AppendUint64(b, id)
	b = appendShortstr(b, v.Name)
	b = appendShortstr(b, q.Name)
	b = appendShortstr(b, msg.Exchange)
	b = appendShortstr(b, msg.RoutingKey)
	b = binary.BigEndian.AppendUint64(b, uint64(ttl))
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg.Header)))
	b = append(b, msg.Header...)
	b = append(b, msg.Body...)
	if s.peers == nil || node == "" || s.peers.Send(node, b) != nil {
		if id != 0 {
			s.forwards.take(id)
		}
		return false
	}
	return true
}

var errShort = errors.New("short peer frame")

type peerReader struct {
	b   []byte
	err error
}

func (r *peerReader) u64() uint64 {
	if len(r.b) < 8 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *peerReader) u32() uint32 {
	if len(r.b) < 4 {
		r.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *peerReader) shortstr() string {
	if len(r.b) < 1 || len(r.b) < 1+int(r.b[0]) {
		r.err = errShort
		return ""
	}
	n := int(r.b[0])
	v := string(r.b[1 : 1+n])
	r.b = r.b[1+n:]
	return v
}

func (r *peerReader) bytes(n uint32) []byte {
	if uint64(len(r.b)) < uint64(n) {
		r.err = errShort
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// HandlePeer takes one payload another node sent this broker; reply is set
// for a request. It runs on the cluster connection's reader and must not
// block: requests are served on a goroutine of their own.
func (s *Server) HandlePeer(from string, payload []byte, reply func([]byte, error)) {
	if len(payload) == 0 {
		if reply != nil {
			reply(nil, errShort)
		}
		return
	}
	r := &peerReader{b: payload[1:]}
	if reply != nil {
		go func() { reply(s.handleRemoteRequest(from, payload[0], r), nil) }()
		return
	}
	switch payload[0] {
	case peerActivate:
		if p := s.proxies.get(proxyKey{from, r.u64()}); p != nil && r.err == nil {
			p.active.Store(true)
			p.q.Kick()
		}
	case peerCancel:
		if p := s.proxies.get(proxyKey{from, r.u64()}); p != nil && r.err == nil {
			p.cancel(false)
		}
	case peerDeliver:
		s.remoteDelivery(from, r)
	case peerSettle:
		id := r.u64()
		how := r.bytes(1)
		n := r.u32()
		if r.err != nil || uint64(len(r.b)) < 8*uint64(n) {
			return
		}
		tags := make([]uint64, n)
		for i := range tags {
			tags[i] = r.u64()
		}
		if id == 0 {
			for q, es := range s.gets.take(from, tags, false) {
				settleEntriesOf(q, es, int(how[0]))
			}
		} else if p := s.proxies.get(proxyKey{from, id}); p != nil {
			p.settle(int(how[0]), tags)
		}
	case peerCancelled:
		if ci := s.remotes.take(r.u64()); ci != nil && r.err == nil {
			remoteCancelled([]*consumerInfo{ci})
		}
	case peerForward:
		id := r.u64()
		vhost, qname, exch, key := r.shortstr(), r.shortstr(), r.shortstr(), r.shortstr()
		ttl := int64(r.u64())
		header := r.bytes(r.u32())
		body := r.b
		if r.err != nil {
			s.log.Warn("malformed forwarded message", zapNode(from))
			return
		}
		ok := s.enqueueForwarded(vhost, qname, exch, key, header, body, ttl, func(ok bool) {
			if id != 0 {
				s.answerForward(from, id, ok)
			}
		})
		if !ok && id != 0 {
			s.answerForward(from, id, false)
		}
	case peerDedupDone:
		s.handleDedupDone(r)
	case peerForwardAck:
		id := r.u64()
		ok := r.bytes(1)
		if r.err != nil {
			return
		}
		if w, found := s.forwards.take(id); found {
			w.done(ok[0] == 1)
		}
	}
}

func (s *Server) answerForward(to string, id uint64, ok bool) {
	b := make([]byte, 0, 10)
	b = append(b, peerForwardAck)
	b = binary.BigEndian.AppendUint64(b, id)
	if ok {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	if s.peers != nil {
		s.peers.Send(to, b) // a lost answer is a lost connection: the sender nacks
	}
}

// enqueueForwarded puts a forwarded copy into its queue here. done is
// called with the outcome once it is settled (after the sync for a
// persistent message in a durable queue); false means it was refused at
// once (no such queue).
func (s *Server) enqueueForwarded(vhost, qname, exch, key string, header, body []byte, ttl int64, done func(bool)) bool {
	s.mu.Lock()
	v := s.vhosts[vhost]
	s.mu.Unlock()
	if v == nil {
		return false
	}
	if _, err := amqp.DecodeContentHeader(header); err != nil {
		return false
	}
	// The frame's payload is ours to keep (transport.Handler).
	msg := queue.NewMessage(exch, key, header, body)
	v.mu.RLock()
	q := v.queues[qname]
	if q != nil && q.replicated() {
		// A replicated queue or stream: proposed here if this node leads
		// its group, else sent on to the leader.
		v.mu.RUnlock()
		q.publishReplicated(msg, ttl, done)
		return true
	}
	if q == nil || q.remote(v.node) {
		v.mu.RUnlock()
		return false
	}
	durable := (msg.Persistent() || q.Quorum()) && s.store != nil && q.Durable
	msg.StoreInline = durable
	res := q.Publish(msg, ttl)
	v.mu.RUnlock()
	switch {
	case res == queue.Rejected:
		done(false)
	case durable && res == queue.Enqueued:
		s.store.AfterSync(func() { done(true) })
	default:
		done(true)
	}
	return true
}

// remote reports whether q lives on another node than node.
func (q *Queue) remote(node string) bool { return q.Home() != node }

// homeNode is this node's name as q knows it (its vhost's node).
func (q *Queue) homeNode() string {
	if q.srv == nil {
		return q.Home()
	}
	return q.srv.cfg.NodeName
}

// forwardCopies sends msg to the home nodes of the remote queues among qs
// and, for a confirmed publish (seq > 0), records what its confirm waits
// for: every node's answer, and the local sync when a local copy was
// persisted. Vhost read lock held.
func (ch *channel) forwardCopies(v *Vhost, qs []*Queue, remoteN int, msg *queue.Message, ttl int64, seq uint64, rejected, persisted bool, commit *commitWait) {
	s := ch.conn.srv
	var c *confirmer
	if seq != 0 {
		c = &ch.confirms
		if rejected {
			ch.confirms.add(seq, confirmNack)
			c = nil
		} else {
			n := remoteN
			if persisted {
				n++
			}
			if commit != nil {
				n++ // the deduplication id's commit (dedup_group.go)
			}
			// Recorded before anything is sent, so no answer can come first.
			c.addRemote(seq, n)
		}
	}
	for _, q := range qs {
		switch {
		case q.replicated():
			var done func(bool)
			if c != nil {
				done = func(ok bool) { c.settleRemote(seq, ok) }
			}
			q.publishReplicated(msg, ttl, done)
		case q.remote(v.node) && !s.forward(v, q, msg, ttl, c, seq) && c != nil:
			c.settleRemote(seq, false)
		}
	}
	if c != nil && persisted {
		s.store.AfterSync(func() { c.settleRemote(seq, true) })
	}
	if c != nil && commit != nil {
		commit.then(func(ok bool) { c.settleRemote(seq, ok) })
	}
}

func zapNode(node string) zap.Field { return zap.String("node", node) }

// publishTo enqueues a message the broker itself routes (dead-lettered,
// delayed, traced) into q, forwarding it when q lives on another node
// (without a confirm: as RabbitMQ's at-most-once dead-lettering). Vhost
// read lock held.
func (v *Vhost) publishTo(q *Queue, msg *queue.Message, ttl int64) queue.PublishResult {
	if q.replicated() {
		q.publishReplicated(msg, ttl, nil)
		return queue.Enqueued
	}
	if q.remote(v.node) {
		v.srv.forward(v, q, msg, ttl, nil, 0)
		return queue.Enqueued
	}
	return q.Publish(msg, ttl)
}
