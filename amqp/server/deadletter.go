package server

import (
	"slices"
	"sync"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// deadLetter republishes messages that left q (rejected, expired or over
// max-length) to q's dead-letter exchange, with the x-death header that
// RabbitMQ writes. It runs without any queue lock held.
func (v *Vhost) deadLetter(q *Queue, dls []queue.DeadLetter) {
	dlx, dlrk, hasRK := q.DeadLetterTarget()
	r := newRouter()
	now := time.Now()
	for _, dl := range dls {
		msg, ok := deathMessage(dl.Msg, q.Name, dl.Reason, now)
		if !ok {
			continue // a cycle of expiries: dropped, as RabbitMQ does
		}
		keys := []string{dl.Msg.RoutingKey}
		if hasRK {
			keys = []string{dlrk}
			msg.RoutingKey = dlrk
		} else if hs := dl.Msg.Headers(); len(hs) > 0 {
			keys = ccKeys(keys, hs)
		}
		msg.Exchange = dlx
		if !v.routeDeadLetter(r, msg, keys) && q.atLeastOnceDLX() {
			q.holdDeadLetter(v, msg, keys)
		}
	}
}

// routeDeadLetter publishes a dead-lettered message to the queues its
// exchange routes it to, and reports whether there was one.
func (v *Vhost) routeDeadLetter(r *router, msg *queue.Message, keys []string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	x := v.exchanges[msg.Exchange]
	if x == nil {
		return false
	}
	p := msg.Props()
	qs := v.route(r, x, keys, &p)
	for _, dq := range qs {
		v.publishTo(dq, msg, messageTTL(msg))
	}
	return len(qs) > 0
}

// dlxHeld are a quorum queue's dead-lettered messages that found no queue
// under the at-least-once strategy: they stay the queue's (RabbitMQ's
// messages_dlx) and are routed again every dlxRetry until one takes them.
type dlxHeld struct {
	mu    sync.Mutex
	msgs  []heldDeadLetter
	bytes int64
	timer *time.Timer
}

type heldDeadLetter struct {
	msg  *queue.Message
	keys []string
}

// dlxRetry is how often held dead letters are routed again.
const dlxRetry = 10 * time.Second

// atLeastOnceDLX reports whether q dead-letters at least once: a quorum
// queue with x-dead-letter-strategy at-least-once and overflow
// reject-publish (otherwise RabbitMQ falls back to at-most-once).
func (q *Queue) atLeastOnceDLX() bool {
	if !q.Quorum() {
		return false
	}
	if s, _ := q.Args["x-dead-letter-strategy"].(string); s != "at-least-once" {
		return false
	}
	eff := queue.EffectiveArgs(q.Args, policyDef(q.policy.Load()))
	o, _ := eff["x-overflow"].(string)
	return o == queue.RejectPublish
}

func (q *Queue) holdDeadLetter(v *Vhost, msg *queue.Message, keys []string) {
	q.dlx.mu.Lock()
	defer q.dlx.mu.Unlock()
	q.dlx.msgs = append(q.dlx.msgs, heldDeadLetter{msg, keys})
	q.dlx.bytes += int64(len(msg.Body))
	if q.dlx.timer == nil {
		q.dlx.timer = time.AfterFunc(dlxRetry, func() { v.retryDeadLetters(q) })
	}
}

// retryDeadLetters routes q's held dead letters again.
func (v *Vhost) retryDeadLetters(q *Queue) {
	q.dlx.mu.Lock()
	held := q.dlx.msgs
	q.dlx.msgs, q.dlx.bytes, q.dlx.timer = nil, 0, nil
	q.dlx.mu.Unlock()
	if q.Deleted() {
		return
	}
	r := newRouter()
	for _, h := range held {
		if !v.routeDeadLetter(r, h.msg, h.keys) {
			q.holdDeadLetter(v, h.msg, h.keys)
		}
	}
}

// heldDeadLetters counts q's held dead letters and their bytes.
func (q *Queue) heldDeadLetters() (int, int64) {
	q.dlx.mu.Lock()
	defer q.dlx.mu.Unlock()
	return len(q.dlx.msgs), q.dlx.bytes
}

// messageTTL returns the message's expiration in ms, or -1.
func messageTTL(m *queue.Message) int64 {
	if m.Flags()&amqp.FlagExpiration == 0 {
		return -1
	}
	n, err := ParseExpiration(m.Props().Expiration)
	if err != nil {
		return -1
	}
	return n
}

// deathMessage returns a copy of m with its x-death history updated for one
// more death in queue qname. ok is false when the message went round a cycle
// without being rejected, which RabbitMQ drops.
func deathMessage(m *queue.Message, qname, reason string, now time.Time) (*queue.Message, bool) {
	p := m.Props()
	old := p.Headers
	h := make(amqp.Table, len(old)+4)
	for k, v := range old {
		h[k] = v
	}
	var deaths []any
	if arr, ok := old["x-death"].([]any); ok {
		deaths = slices.Clone(arr)
	}
	if reason != queue.ReasonRejected {
		cycle, rejected := false, false
		for _, d := range deaths {
			t, _ := d.(amqp.Table)
			if t["queue"] == qname {
				cycle = true
			}
			if t["reason"] == queue.ReasonRejected {
				rejected = true
			}
		}
		if cycle && !rejected {
			return nil, false
		}
	}
	keys := []any{m.RoutingKey}
	if cc, ok := old["CC"].([]any); ok {
		keys = append(keys, cc...)
	}
	entry := amqp.Table{
		"count":        int64(1),
		"reason":       reason,
		"queue":        qname,
		"time":         now.Truncate(time.Second),
		"exchange":     m.Exchange,
		"routing-keys": keys,
	}
	if reason == queue.ReasonExpired && p.Flags&amqp.FlagExpiration != 0 {
		entry["original-expiration"] = p.Expiration
		p.Flags &^= amqp.FlagExpiration
		p.Expiration = ""
	}
	for i, d := range deaths {
		t, _ := d.(amqp.Table)
		if t["queue"] == qname && t["reason"] == reason {
			n, _ := amqp.Int(t["count"])
			entry["count"] = n + 1
			deaths = slices.Delete(deaths, i, i+1)
			break
		}
	}
	deaths = append([]any{entry}, deaths...)
	h["x-death"] = deaths
	if _, ok := h["x-first-death-queue"]; !ok {
		h["x-first-death-queue"] = qname
		h["x-first-death-reason"] = reason
		h["x-first-death-exchange"] = m.Exchange
	}
	p.Headers = h
	p.Flags |= amqp.FlagHeaders
	return queue.NewMessage(m.Exchange, m.RoutingKey, amqp.AppendContentHeader(nil, uint64(len(m.Body)), &p), m.Body), true
}
