package server

import (
	"strconv"
	"strings"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// basicPublish starts a publish: the content header comes next.
func (ch *channel) basicPublish() error {
	if ch.pub.m.Immediate {
		return amqp.Errorf(amqp.NotImplemented, "immediate=true").For(&ch.pub.m)
	}
	if err := ch.mayExchange(permWrite, ch.pub.m.Exchange); err != nil {
		return err
	}
	ch.conn.waitAlarm()
	ch.state = chanAwaitHdr
	return nil
}

func (ch *channel) handleHeader(p []byte) error {
	h, err := amqp.DecodeContentHeader(p)
	if err != nil {
		return amqp.Errorf(amqp.FrameError, "malformed content header")
	}
	if h.ClassID != amqp.ClassBasic {
		return amqp.Errorf(amqp.FrameError, "content header for class %d, expected %d", h.ClassID, amqp.ClassBasic)
	}
	if h.BodySize > ch.conn.srv.cfg.MaxMessageSize {
		ch.state = chanOpen
		return amqp.Errorf(amqp.PreconditionFailed, "message size %d is larger than configured max size %d", h.BodySize, ch.conn.srv.cfg.MaxMessageSize).For(&ch.pub.m)
	}
	// One allocation holds the raw header and the body.
	buf := make([]byte, len(p), len(p)+int(h.BodySize))
	copy(buf, p)
	ch.pub.header = buf
	ch.pub.buf = buf[len(p):]
	ch.pub.size = h.BodySize
	ch.pub.props = h.Properties
	if h.BodySize == 0 {
		return ch.completePublish()
	}
	ch.state = chanAwaitBody
	return nil
}

func (ch *channel) handleBody(p []byte) error {
	if uint64(len(ch.pub.buf))+uint64(len(p)) > ch.pub.size {
		return amqp.Errorf(amqp.FrameError, "body larger than the %d bytes the content header declared", ch.pub.size)
	}
	ch.pub.buf = append(ch.pub.buf, p...)
	if uint64(len(ch.pub.buf)) == ch.pub.size {
		return ch.completePublish()
	}
	return nil
}

// completePublish routes a fully received message.
func (ch *channel) completePublish() error {
	ch.state = chanOpen
	pm := &ch.pub.m
	msg := ch.conn.newMessage(pm, ch.pub.header, ch.pub.buf)
	ch.pub.msg = msg
	ch.pub.header, ch.pub.buf = nil, nil
	ch.stats.published.Add(1)
	var seq uint64
	if ch.confirm {
		ch.publishSeq++
		seq = ch.publishSeq
	}
	if err := ch.checkPublish(pm, msg); err != nil {
		return err
	}
	if ch.tx {
		ch.txPubs = append(ch.txPubs, txPublish{m: *pm, msg: msg})
		return nil
	}
	return ch.route(pm, msg, seq)
}

// checkPublish validates what RabbitMQ checks before routing.
func (ch *channel) checkPublish(pm *amqp.BasicPublish, msg *queue.Message) error {
	p := &ch.pub.props
	if p.Flags&amqp.FlagUserID != 0 && p.UserID != ch.conn.user.Name && !ch.perms().impersonator {
		return amqp.Errorf(amqp.PreconditionFailed, "user_id property set to '%s' but authenticated user was '%s'", p.UserID, ch.conn.user.Name).For(pm)
	}
	if p.Flags&amqp.FlagReplyTo != 0 && p.ReplyTo == replyQueue {
		if err := ch.rewriteReplyTo(pm, msg); err != nil {
			return err
		}
	}
	if p.Flags&amqp.FlagExpiration != 0 {
		if _, err := ParseExpiration(p.Expiration); err != nil {
			return amqp.Errorf(amqp.PreconditionFailed, "invalid expiration '%s': %v", p.Expiration, err).For(pm)
		}
	}
	return nil
}

// ParseExpiration parses the expiration property: a non-negative integer
// number of milliseconds as a decimal string.
func ParseExpiration(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || s == "" || s[0] == '+' {
		if err == nil {
			err = strconv.ErrSyntax
		}
		return 0, err
	}
	return n, nil
}

// route delivers msg to the queues its exchange routes it to, sends
// basic.return for an unroutable mandatory message, and confirms seq.
func (ch *channel) route(pm *amqp.BasicPublish, msg *queue.Message, seq uint64) error {
	v := ch.vhost()
	keys := [1]string{pm.RoutingKey}
	routeKeys := keys[:]
	hdrs := ch.headersOf(msg)
	if len(hdrs) > 0 {
		routeKeys = ccKeys(routeKeys, hdrs)
		if _, ok := hdrs["BCC"]; ok {
			stripBCC(msg)
		}
	}
	v.mu.RLock()
	x, ok := v.exchanges[pm.Exchange]
	if !ok {
		v.mu.RUnlock()
		return errNoExchange(pm.Exchange, v.Name).For(pm)
	}
	if x.Internal {
		v.mu.RUnlock()
		return amqp.Errorf(amqp.AccessRefused, "cannot publish to internal exchange '%s' in vhost '%s'", pm.Exchange, v.Name).For(pm)
	}
	var commit *commitWait // a cluster's deduplicating exchange: the id's commit, when the confirm waits for it
	if x.dedup != nil && x.dedup.grp != nil {
		// A cluster's deduplicating exchange: its group decides, without
		// the vhost's lock held meanwhile (dedup_group.go).
		if id, ttl, ok := x.dedup.idOf(ch.propsOf(msg)); ok {
			grp := x.dedup.grp
			v.mu.RUnlock()
			var dup bool
			dup, commit, _ = grp.verdict(id, ttl) // no verdict: routed
			v.mu.RLock()
			if x, ok = v.exchanges[pm.Exchange]; !ok {
				v.mu.RUnlock()
				return errNoExchange(pm.Exchange, v.Name).For(pm)
			}
			ch.r.verdict = verdictNew
			if dup {
				ch.r.verdict = verdictDup
			}
		}
	}
	if x.delay != nil {
		if delay, ok := delayOf(hdrs); ok {
			v.mu.RUnlock()
			if dup := ch.r.verdict == verdictDup; dup || ch.r.verdict != 0 {
				ch.r.verdict = 0
				if dup { // a cluster's duplicate is not held
					if seq != 0 {
						ch.confirms.add(seq, confirmAck)
					}
					return nil
				}
			}
			// Held until due and routed then. Unlike the plugin, a mandatory
			// message is not returned at once: it has not failed to route.
			persisted := x.delay.add(msg, delay)
			if seq != 0 {
				if commit != nil {
					ch.confirmAfter(seq, commit, persisted)
					return nil
				}
				state := confirmAck
				if persisted {
					state = confirmWaiting
				}
				ch.confirms.add(seq, state)
			}
			return nil
		}
	}
	qs := v.route(ch.r, x, routeKeys, ch.propsOf(msg))
	if t := v.trace.Load(); t != nil {
		t.tracePublish(ch, pm.Exchange, routeKeys, msg, qs)
	}
	if len(qs) == 0 && pm.Exchange == "" && strings.HasPrefix(pm.RoutingKey, replyPrefix) {
		if ch.conn.srv.deliverReply(pm.RoutingKey, msg) {
			v.mu.RUnlock()
			if seq != 0 {
				ch.confirms.add(seq, confirmAck)
			}
			return nil
		}
	}
	ttl := messageTTL(msg)
	rejected, persisted, streamed := false, false, false
	durable := ch.conn.srv.store != nil
	if durable {
		msg.StoreInline = oneStoring(qs, msg)
	}
	remoteN := 0
	for _, q := range qs {
		if q.replicated() || q.remote(v.node) {
			remoteN++ // replicated or forwarded to its home node below (forward.go)
			continue
		}
		switch q.Publish(msg, ttl) {
		case queue.Rejected:
			rejected = true
		case queue.Enqueued:
			if q.IsStream() {
				// Confirmed once the stream's log has synced it (stream.go).
				streamed = true
				if seq != 0 {
					ch.confirms.waitStream(q)
				}
				continue
			}
			persisted = persisted || durable && q.Durable && (msg.Persistent() || q.Quorum())
		}
	}
	held := holdDelayed(ch.r, msg)
	persisted = persisted || held == heldPersisted
	if remoteN > 0 {
		ch.forwardCopies(v, qs, remoteN, msg, ttl, seq, rejected, persisted, commit)
		seq = 0 // its confirm is settled by the answers
	}
	v.mu.RUnlock()
	// Flow control: wait (bounded) for queues far behind their consumers,
	// and for replicated queues' logs (flowgate.go).
	flow := false
	for _, q := range qs {
		if w := q.Throttle(); w != nil {
			flow = true
			t := time.NewTimer(queue.FlowMaxWait)
			select {
			case <-w:
			case <-t.C:
			}
			t.Stop()
		}
	}
	if remoteN > 0 {
		if w1, w2 := flowWait(ch.conn, qs), ch.conn.srv.peerWait(ch.conn, qs); w1 || w2 {
			flow = true
			ch.conn.flowWaited = true
		}
	}
	if flow {
		ch.conn.flowAt.Store(time.Now().UnixNano())
	}
	if rejected && seq != 0 {
		// A full reject-publish queue nacks the whole publish; other queues
		// keep their copies (RabbitMQ does the same).
		ch.confirms.add(seq, confirmNack)
		return nil
	}
	if len(qs) == 0 && held == notHeld && pm.Mandatory {
		ch.stats.returned.Add(1)
		ch.conn.send(func(b []byte) []byte {
			b = amqp.AppendMethodFrame(b, ch.id, &amqp.BasicReturn{ReplyCode: amqp.NoRoute, ReplyText: "NO_ROUTE", Exchange: pm.Exchange, RoutingKey: pm.RoutingKey})
			return amqp.AppendContent(b, ch.id, msg.Header, msg.Body, ch.conn.frameMax)
		})
	}
	if seq != 0 {
		switch {
		case commit != nil:
			ch.confirmAfter(seq, commit, persisted) // a cluster: no stream there
		case persisted || streamed:
			// Acked once the store (and any stream's log) has synced the
			// batch holding it.
			ch.confirms.needStore = ch.confirms.needStore || persisted
			ch.confirms.add(seq, confirmWaiting)
		default:
			ch.confirms.add(seq, confirmAck)
		}
	}
	return nil
}

// confirmAfter confirms publish seq once commit fires (and the store's
// sync, when persisted): a cluster's deduplicating exchange remembers the
// id of every message it confirms (dedup_group.go).
func (ch *channel) confirmAfter(seq uint64, commit *commitWait, persisted bool) {
	c := &ch.confirms
	n := 1
	if persisted {
		n++
	}
	c.addRemote(seq, n)
	if persisted {
		ch.conn.srv.store.AfterSync(func() { c.settleRemote(seq, true) })
	}
	commit.then(func(ok bool) { c.settleRemote(seq, ok) })
}

// ccKeys adds the routing keys of the CC and BCC headers (arrays of strings).
func ccKeys(keys []string, hdrs map[string]any) []string {
	for _, h := range [...]string{"CC", "BCC"} {
		arr, ok := hdrs[h].([]any)
		if !ok {
			continue
		}
		for _, v := range arr {
			if s, ok := v.(string); ok {
				keys = append(keys, s)
			}
		}
	}
	return keys
}

// stripBCC re-encodes the content header without the BCC header, which
// RabbitMQ removes before delivery.
func stripBCC(msg *queue.Message) {
	p := msg.Props()
	h := make(amqp.Table, len(p.Headers))
	for k, v := range p.Headers {
		if k != "BCC" {
			h[k] = v
		}
	}
	p.Headers = h
	msg.SetProps(&p)
}

func (ch *channel) basicConsume(m *amqp.BasicConsume) error {
	if m.Queue == replyQueue {
		return ch.replyConsume(m)
	}
	q, err := ch.queueFor(permRead, m.Queue)
	if err != nil {
		return err
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = genName("amq.ctag-")
	}
	ch.mu.Lock()
	_, dup := ch.consumers[tag]
	ch.mu.Unlock()
	if dup {
		return amqp.Errorf(amqp.NotAllowed, "attempt to reuse consumer tag '%s'", tag)
	}
	if q.Quorum() && ch.globalPrefetch.Load() > 0 {
		return errGlobalQoS(q, ch.vhost().Name)
	}
	if q.IsStream() {
		if err := ch.checkStreamConsume(q, m); err != nil {
			return err
		}
	}
	prio, _ := amqp.Int(m.Arguments["x-priority"])
	if q.repl != nil || q.remote(ch.vhost().node) {
		// A replicated queue's consumers all go through its leader as
		// other nodes' do (this node's through the loopback), so that they
		// move with the leadership.
		return ch.remoteConsume(m, q, tag, prio)
	}
	ci := &consumerInfo{ch: ch, q: q, prefetch: ch.prefetch}
	c := &queue.Consumer{Tag: tag, NoAck: m.NoAck, Exclusive: m.Exclusive, Priority: prio, Sink: ch, Owner: ci, Args: m.Arguments}
	ci.c = c
	ch.mu.Lock()
	ch.consumers[tag] = ci
	ch.mu.Unlock()
	// The consumer is registered inactive, so no delivery can overtake
	// consume-ok; it becomes eligible once consume-ok is queued.
	if !q.AddConsumer(c) {
		ch.mu.Lock()
		delete(ch.consumers, tag)
		ch.mu.Unlock()
		if q.Deleted() {
			return errNoQueue(q.Name, ch.vhost().Name)
		}
		return amqp.Errorf(amqp.AccessRefused, "queue '%s' in vhost '%s' in exclusive use", q.Name, ch.vhost().Name)
	}
	if m.NoWait {
		ci.active.Store(true)
	} else {
		// Eligible as consume-ok is queued, under the connection's output
		// lock: no delivery overtakes it, and no client can see it (and
		// publish elsewhere) while the consumer is still inactive.
		ch.conn.send(func(b []byte) []byte {
			b = amqp.AppendMethodFrame(b, ch.id, &amqp.BasicConsumeOk{ConsumerTag: tag})
			ci.active.Store(true)
			return b
		})
	}
	q.Kick()
	return nil
}

func (ch *channel) basicCancel(m *amqp.BasicCancel) error {
	if ch.replyTag != "" && m.ConsumerTag == ch.replyTag {
		ch.replyRelease()
		if !m.NoWait {
			ch.sendMethod(&amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		}
		return nil
	}
	ch.mu.Lock()
	ci := ch.consumers[m.ConsumerTag]
	delete(ch.consumers, m.ConsumerTag)
	ch.mu.Unlock()
	if ci != nil && ci.remote != 0 {
		ch.conn.srv.cancelRemote(ci)
	} else if ci != nil {
		ci.q.RemoveConsumer(ci.c)
	}
	if !m.NoWait {
		ch.sendMethod(&amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
	}
	return nil
}

func (ch *channel) basicGet(m *amqp.BasicGet) error {
	q, err := ch.queueFor(permRead, m.Queue)
	if err != nil {
		return err
	}
	if q.IsStream() {
		return errStreamUnsupported("basic.get", q, ch.vhost().Name)
	}
	if q.repl != nil || q.remote(ch.vhost().node) {
		return ch.remoteGet(m, q)
	}
	// Tag assignment and the frames go out under the channel lock, like a
	// delivery, so tags stay in wire order.
	ch.mu.Lock()
	e, remaining, ok := q.Get(m.NoAck)
	if !ok {
		ch.mu.Unlock()
		ch.sendMethod(&amqp.BasicGetEmpty{})
		return nil
	}
	ch.nextTag++
	tag := ch.nextTag
	if !m.NoAck {
		ch.unacked = append(ch.unacked, unackedEntry{tag: tag, q: q, e: e, at: ch.conn.srv.clock.Load(), home: ch.conn.srv.cfg.NodeName})
		ch.unackedN.Add(1)
	}
	msg := e.Msg
	if t := ch.vhost().trace.Load(); t != nil {
		t.traceDeliver(ch, q.Name, msg, e.Redelivered)
	}
	ch.conn.send(func(b []byte) []byte {
		b = amqp.AppendMethodFrame(b, ch.id, &amqp.BasicGetOk{DeliveryTag: tag, Redelivered: e.Redelivered, Exchange: msg.Exchange, RoutingKey: msg.RoutingKey, MessageCount: uint32(remaining)})
		return amqp.AppendContent(b, ch.id, getHeader(q.Queue, &e), msg.Body, ch.conn.frameMax)
	})
	ch.mu.Unlock()
	return nil
}

// oneStoring reports whether exactly one of qs stores msg (a durable queue
// for a persistent message, a quorum queue for any): then it is stored
// inline in that queue's entry.
func oneStoring(qs []*Queue, msg *queue.Message) bool {
	if msg.Persistent() {
		return oneDurable(qs)
	}
	n := 0
	for _, q := range qs {
		if q.Quorum() {
			n++
		}
	}
	return n == 1
}

// oneDurable reports whether exactly one of qs is durable: a persistent
// message going there is stored inline in that queue's entry.
func oneDurable(qs []*Queue) bool {
	n := 0
	for _, q := range qs {
		if q.Durable {
			n++
		}
	}
	return n == 1
}
