package server

import (
	"slices"
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
		v.mu.RLock()
		x := v.exchanges[dlx]
		if x != nil {
			p := msg.Props()
			for _, dq := range v.route(r, x, keys, &p) {
				v.publishTo(dq, msg, messageTTL(msg))
			}
		}
		v.mu.RUnlock()
	}
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
