package server

import (
	"sync"
	"sync/atomic"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// Firehose tracing, as RabbitMQ's (rabbitmq.com/firehose.html): with
// tracing on for a vhost, every message a client publishes is copied to the
// vhost's amq.rabbitmq.trace exchange with routing key publish.<exchange>,
// and every message delivered to a client (consume or get) with
// deliver.<queue>. The copy carries the original body and, in its headers,
// exchange_name, routing_keys, properties (the original properties as a
// table), node, vhost, connection, channel and user, plus routed_queues on a
// publish and redelivered (0 or 1) on a delivery. Messages that came through
// the trace exchange are not traced again.
//
// A vhost with tracing off pays one atomic load per publish and delivery.
// With it on, copies are handed to the vhost's tracer goroutine (a slice
// under a mutex and a 1-slot kick), which routes them: deliveries happen
// under a queue's lock, where routing into other queues would break the
// lock order (LOCKING.md).

const traceExchange = "amq.rabbitmq.trace"

// tracePending bounds the copies waiting for the tracer; beyond it copies
// are dropped (and counted) rather than letting memory grow without bound.
const tracePending = 1 << 16

type tracer struct {
	v    *Vhost
	node string

	mu      sync.Mutex
	pending []*queue.Message // guarded by mu

	dropped atomic.Uint64
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func startTracer(v *Vhost, node string) *tracer {
	t := &tracer{v: v, node: node, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// close stops the tracer goroutine and waits for it; copies not yet routed
// are dropped.
func (t *tracer) close() {
	close(t.stop)
	<-t.done
}

func (t *tracer) run() {
	defer close(t.done)
	r := newRouter()
	keys := make([]string, 1)
	for {
		select {
		case <-t.stop:
			return
		case <-t.kick:
		}
		t.mu.Lock()
		batch := t.pending
		t.pending = nil
		t.mu.Unlock()
		v := t.v
		for _, m := range batch {
			keys[0] = m.RoutingKey
			v.mu.RLock()
			if x := v.exchanges[traceExchange]; x != nil {
				for _, q := range v.route(r, x, keys, nil) {
					v.publishTo(q, m, -1)
				}
			}
			v.mu.RUnlock()
		}
	}
}

// add hands a copy to the tracer goroutine.
func (t *tracer) add(m *queue.Message) {
	t.mu.Lock()
	if len(t.pending) >= tracePending {
		t.mu.Unlock()
		t.dropped.Add(1)
		return
	}
	t.pending = append(t.pending, m)
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// copyOf builds a trace message for m with the headers every copy has.
func (t *tracer) copyOf(ch *channel, key string, m *queue.Message, keys []string, extra amqp.Table) *queue.Message {
	rks := make([]any, len(keys))
	for i, k := range keys {
		rks[i] = k
	}
	props := m.Props()
	h := amqp.Table{
		"exchange_name": m.Exchange,
		"routing_keys":  rks,
		"properties":    propertiesTable(&props),
		"node":          t.node,
		"vhost":         t.v.Name,
		"connection":    ch.conn.name,
		"channel":       int32(ch.id),
		"user":          ch.conn.user.Name,
	}
	for k, v := range extra {
		h[k] = v
	}
	p := amqp.Properties{Flags: amqp.FlagHeaders, Headers: h}
	return queue.NewMessage(traceExchange, key, amqp.AppendContentHeader(nil, uint64(len(m.Body)), &p), m.Body)
}

// tracePublish copies a message a client published to exchange, routed
// with keys (the routing key, then CC and BCC) to qs.
func (t *tracer) tracePublish(ch *channel, exchange string, keys []string, m *queue.Message, qs []*Queue) {
	if exchange == traceExchange {
		return
	}
	routed := make([]any, len(qs))
	for i, q := range qs {
		routed[i] = q.Name
	}
	c := *m
	c.Exchange = exchange
	t.add(t.copyOf(ch, "publish."+exchange, &c, keys, amqp.Table{"routed_queues": routed}))
}

// traceDeliver copies a message delivered from queue qname to a client.
func (t *tracer) traceDeliver(ch *channel, qname string, m *queue.Message, redelivered bool) {
	if m.Exchange == traceExchange {
		return
	}
	r := int32(0)
	if redelivered {
		r = 1
	}
	keys := ccKeys([]string{m.RoutingKey}, m.Headers())
	t.add(t.copyOf(ch, "deliver."+qname, m, keys, amqp.Table{"redelivered": r}))
}

// propertiesTable is the table form of the properties that are set, with
// RabbitMQ's field names.
func propertiesTable(p *amqp.Properties) amqp.Table {
	t := amqp.Table{}
	f := p.Flags
	set := func(flag uint16, name string, v any) {
		if f&flag != 0 {
			t[name] = v
		}
	}
	set(amqp.FlagContentType, "content_type", p.ContentType)
	set(amqp.FlagContentEncoding, "content_encoding", p.ContentEncoding)
	set(amqp.FlagHeaders, "headers", p.Headers)
	// RabbitMQ writes the octet fields as signed 32-bit integers.
	set(amqp.FlagDeliveryMode, "delivery_mode", int32(p.DeliveryMode))
	set(amqp.FlagPriority, "priority", int32(p.Priority))
	set(amqp.FlagCorrelationID, "correlation_id", p.CorrelationID)
	set(amqp.FlagReplyTo, "reply_to", p.ReplyTo)
	set(amqp.FlagExpiration, "expiration", p.Expiration)
	set(amqp.FlagMessageID, "message_id", p.MessageID)
	set(amqp.FlagTimestamp, "timestamp", p.Timestamp)
	set(amqp.FlagType, "type", p.Type)
	set(amqp.FlagUserID, "user_id", p.UserID)
	set(amqp.FlagAppID, "app_id", p.AppID)
	return t
}

// setTracing turns firehose tracing of vhost on or off; it is stored with
// the vhost and survives restarts.
func (s *Server) setTracing(vhost string, on bool) error {
	s.mu.Lock()
	v := s.vhosts[vhost]
	if v == nil {
		s.mu.Unlock()
		return ErrNotFound
	}
	v.setTracingLocked(on, s.nodeName())
	rec := v.recordLocked()
	s.mu.Unlock()
	s.persist(store.KindVhost, vhost, rec)
	return nil
}

// Tracing reports whether firehose tracing is on for vhost.
func (s *Server) Tracing(vhost string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vhosts[vhost]
	return v != nil && v.trace.Load() != nil
}

// setTracingLocked starts or stops the vhost's tracer. Server lock held
// (it serializes changes).
func (v *Vhost) setTracingLocked(on bool, node string) {
	old := v.trace.Load()
	switch {
	case on && old == nil:
		v.trace.Store(startTracer(v, node))
	case !on && old != nil:
		v.trace.Store(nil)
		old.close()
	}
}
