package shovel

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// Status is one shovel as RabbitMQ 3.10's /api/shovels shows it: the
// endpoints only while it runs, a reason when it terminated.
type Status struct {
	Node            string  `json:"node"`
	Timestamp       string  `json:"timestamp"`
	Name            string  `json:"name"`
	Vhost           string  `json:"vhost"`
	Type            string  `json:"type"`
	State           string  `json:"state"` // starting, running or terminated
	Reason          string  `json:"reason,omitempty"`
	SrcURI          string  `json:"src_uri,omitempty"`
	SrcProtocol     string  `json:"src_protocol,omitempty"`
	DestProtocol    string  `json:"dest_protocol,omitempty"`
	DestURI         string  `json:"dest_uri,omitempty"`
	SrcQueue        *string `json:"src_queue,omitempty"`
	SrcExchange     *string `json:"src_exchange,omitempty"`
	SrcExchangeKey  *string `json:"src_exchange_key,omitempty"`
	DestQueue       *string `json:"dest_queue,omitempty"`
	DestExchange    *string `json:"dest_exchange,omitempty"`
	DestExchangeKey *string `json:"dest_exchange_key,omitempty"`
}

// timestampLayout is RabbitMQ's status timestamp (local time).
const timestampLayout = "2006-01-02 15:04:05"

// worker runs one shovel: sessions (a connection to each side) one after
// another, waiting between them after a failure.
type worker struct {
	m        *Manager
	key      key
	def      *Def
	src, dst []*Endpoint
	log      *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// moved counts messages acked at the source over all sessions, for a
	// numeric src-delete-after; srcNext and dstNext are the URIs to try
	// first. Only run's goroutine uses them.
	moved            int64
	srcNext, dstNext int

	mu sync.Mutex
	st Status // guarded by mu
}

func newWorker(m *Manager, k key, d *Def) *worker {
	w := &worker{m: m, key: k, def: d, done: make(chan struct{}),
		log: m.log.With(zap.String("shovel", k.name), zap.String("vhost", k.vhost))}
	for _, u := range d.SrcURIs {
		e, _ := ParseURI(u) // Parse checked every URI
		w.src = append(w.src, e)
	}
	for _, u := range d.DestURIs {
		e, _ := ParseURI(u)
		w.dst = append(w.dst, e)
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.setState("starting", "")
	return w
}

func (w *worker) status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.st
}

func (w *worker) setState(state, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.st = Status{Node: w.m.srv.NodeName(), Timestamp: time.Now().Format(timestampLayout),
		Name: w.key.name, Vhost: w.key.vhost, Type: "dynamic", State: state, Reason: reason}
}

func (w *worker) setRunning(src, dst *Endpoint) {
	d := w.def
	w.mu.Lock()
	defer w.mu.Unlock()
	st := Status{Node: w.m.srv.NodeName(), Timestamp: time.Now().Format(timestampLayout),
		Name: w.key.name, Vhost: w.key.vhost, Type: "dynamic", State: "running",
		SrcURI: src.Redacted(), SrcProtocol: "amqp091", DestProtocol: "amqp091", DestURI: dst.Redacted(),
		DestQueue: d.DestQueue, DestExchange: d.DestExchange, DestExchangeKey: d.DestExchangeKey}
	if d.SrcQueue != "" {
		st.SrcQueue = &d.SrcQueue
	} else {
		st.SrcExchange, st.SrcExchangeKey = &d.SrcExchange, &d.SrcExchangeKey
	}
	w.st = st
}

// run is the worker's goroutine; it starts after prev (the worker it
// replaces) has ended.
func (w *worker) run(prev <-chan struct{}) {
	defer close(w.done)
	base := w.def.ReconnectDelay
	var delay time.Duration // the last wait; 0 before the first
	Run(w.ctx, prev, func() (bool, time.Duration) {
		w.setState("starting", "")
		began := time.Now()
		movedBefore := w.moved
		finished, err := w.session()
		if w.ctx.Err() != nil {
			return false, 0
		}
		if finished {
			w.log.Info("shovel moved what src-delete-after asked; deleting it", zap.Int64("moved", w.moved))
			w.setState("terminated", "src-delete-after reached")
			w.m.finished(w)
			return false, 0
		}
		w.log.Warn("shovel stopped", zap.Error(err))
		w.setState("terminated", err.Error())
		if base == 0 {
			return false, 0 // reconnect-delay 0: no restart, as RabbitMQ
		}
		// Back off while sessions fail at once, doubling the wait up to
		// 8 reconnect-delays (a minute at most, unless reconnect-delay is
		// longer); a session that moved messages or lasted starts over at
		// reconnect-delay.
		if delay == 0 || w.moved > movedBefore || time.Since(began) > 4*base {
			delay = base
		} else {
			delay = min(2*delay, max(base, min(8*base, time.Minute)))
		}
		return true, delay
	})
}

// connect tries the URIs in turn, from *next on, and leaves *next on the
// one that connected.
func (w *worker) connect(eps []*Endpoint, next *int) (*amqp.Connection, *Endpoint, error) {
	// A URI without a vhost opens "/" (uri.go).
	props := amqp.Table{"connection_name": "Shovel " + w.key.name, "product": "Warren shovel"}
	c, j, err := DialFirst(w.ctx, w.m.srv, eps, *next, "/", props)
	if err != nil {
		*next = (*next + 1) % len(eps)
		return nil, nil, fmt.Errorf("%w: %w", errNoURI, err)
	}
	*next = j
	return c, eps[j], nil
}

// ensureQueue declares a queue passively and, when it does not exist,
// durable with args: an existing queue of any type is used as it is
// (RabbitMQ's ensure_queue).
func ensureQueue(c *amqp.Connection, name string, args map[string]any) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	_, err = ch.QueueDeclarePassive(name, false, false, false, false, nil)
	var ae *amqp.Error
	if errors.As(err, &ae) && ae.Code == amqp.NotFound {
		if ch, err = c.Channel(); err != nil {
			return err
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table(args))
	}
	if err != nil {
		return err
	}
	return ch.Close()
}

// session moves messages over one connection to each side until an error,
// the shovel's end (finished) or its deletion.
func (w *worker) session() (finished bool, err error) {
	d := w.def
	srcConn, srcEP, err := w.connect(w.src, &w.srcNext)
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	defer srcConn.Close()
	dstConn, dstEP, err := w.connect(w.dst, &w.dstNext)
	if err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	defer dstConn.Close()
	// Deleting the shovel closes both connections: whatever waits on them
	// returns.
	stop := context.AfterFunc(w.ctx, func() { srcConn.Close(); dstConn.Close() })
	defer stop()

	queue := d.SrcQueue
	if queue != "" {
		if err := ensureQueue(srcConn, queue, d.SrcQueueArgs); err != nil {
			return false, fmt.Errorf("source queue %q: %w", queue, err)
		}
	}
	sch, err := srcConn.Channel()
	if err != nil {
		return false, fmt.Errorf("source: %w", err)
	}
	if queue == "" {
		q, err := sch.QueueDeclare("", false, false, true, false, nil)
		if err != nil {
			return false, fmt.Errorf("source: %w", err)
		}
		queue = q.Name
		if err := sch.QueueBind(queue, d.SrcExchangeKey, d.SrcExchange, false, nil); err != nil {
			return false, fmt.Errorf("source exchange %q: %w", d.SrcExchange, err)
		}
	}
	remaining := int64(-1) // no limit
	switch d.DeleteAfter {
	case Never:
	case QueueLength:
		q, err := sch.QueueDeclarePassive(queue, false, false, false, false, nil)
		if err != nil {
			return false, fmt.Errorf("source queue %q: %w", queue, err)
		}
		remaining = int64(q.Messages)
	default:
		remaining = max(d.DeleteAfter-w.moved, 0)
	}
	if remaining == 0 {
		return true, nil
	}

	if d.DestQueue != nil {
		if err := ensureQueue(dstConn, *d.DestQueue, d.DestQueueArgs); err != nil {
			return false, fmt.Errorf("destination queue %q: %w", *d.DestQueue, err)
		}
	}
	dch, err := dstConn.Channel()
	if err != nil {
		return false, fmt.Errorf("destination: %w", err)
	}
	var confirms chan amqp.Confirmation
	window := 0 // unconfirmed publishes allowed (on-confirm)
	if d.AckMode == OnConfirm {
		if err := dch.Confirm(false); err != nil {
			return false, fmt.Errorf("destination: %w", err)
		}
		// Room for every confirm that can be outstanding: the client's
		// reader must never wait on this loop, which may itself wait in a
		// publish. The prefetch bounds them; with none (0), the window.
		window = d.Prefetch
		if window == 0 {
			window = 4096
		}
		confirms = dch.NotifyPublish(make(chan amqp.Confirmation, window+1))
	}
	noAck := d.AckMode == NoAck
	if !noAck {
		if err := sch.Qos(d.Prefetch, 0, false); err != nil {
			return false, fmt.Errorf("source: %w", err)
		}
	}
	srcClosed := srcConn.NotifyClose(make(chan *amqp.Error, 1))
	dstClosed := dstConn.NotifyClose(make(chan *amqp.Error, 1))
	schClosed := sch.NotifyClose(make(chan *amqp.Error, 1))
	dchClosed := dch.NotifyClose(make(chan *amqp.Error, 1))
	deliveries, err := sch.Consume(queue, "", noAck, false, false, false, amqp.Table(d.SrcConsumerArgs))
	if err != nil {
		return false, fmt.Errorf("source: consuming from %q: %w", queue, err)
	}
	w.setRunning(srcEP, dstEP)
	w.log.Info("shovel running", zap.String("src", srcEP.Redacted()), zap.String("dest", dstEP.Redacted()))

	f := forwarder{w: w, src: srcEP, dst: dstEP}
	var (
		published int64    // forwarded over these connections, nacked ones excepted
		moved     int64    // acked at the source over these connections
		pending   []uint64 // source tags of unconfirmed publishes, in order
	)
	closed := func(side string, e *amqp.Error) error {
		if e == nil {
			return fmt.Errorf("%s closed", side)
		}
		return fmt.Errorf("%s closed: %w", side, e)
	}
	count := func(n int64) {
		moved += n
		w.moved += n
	}
	for {
		if remaining > 0 && moved >= remaining {
			return true, nil
		}
		in := deliveries
		if confirms != nil && len(pending) >= window {
			in = nil // the window is full: wait for confirms
		}
		select {
		case <-w.ctx.Done():
			return false, w.ctx.Err()
		case e := <-srcClosed:
			return false, closed("source connection", e)
		case e := <-dstClosed:
			return false, closed("destination connection", e)
		case e := <-schClosed:
			return false, closed("source channel", e)
		case e := <-dchClosed:
			return false, closed("destination channel", e)
		case dl, ok := <-in:
			if !ok {
				return false, errors.New("source consumer cancelled")
			}
			if remaining > 0 && published >= remaining {
				continue // beyond the limit: left unacked, requeued at close
			}
			if err := f.publish(dch, &dl); err != nil {
				return false, fmt.Errorf("destination: publishing: %w", err)
			}
			published++
			switch d.AckMode {
			case OnConfirm:
				pending = append(pending, dl.DeliveryTag)
			case OnPublish:
				if err := sch.Ack(dl.DeliveryTag, false); err != nil {
					return false, fmt.Errorf("source: ack: %w", err)
				}
				count(1)
			case NoAck:
				count(1)
			}
		case c, ok := <-confirms:
			if !ok {
				return false, errors.New("destination channel closed")
			}
			// Take every confirm there is, then ack the source once up to
			// the last confirmed (a multiple ack).
			var ackTo uint64
			var n int64
			for {
				if len(pending) == 0 {
					return false, fmt.Errorf("destination confirmed publish %d that was not sent", c.DeliveryTag)
				}
				tag := pending[0]
				pending = pending[1:]
				if c.Ack {
					ackTo, n = tag, n+1
				} else {
					// Refused at the destination: back to the source queue
					// (RabbitMQ's shovel nacks it too).
					if ackTo != 0 {
						if err := sch.Ack(ackTo, true); err != nil {
							return false, fmt.Errorf("source: ack: %w", err)
						}
						count(n)
						ackTo, n = 0, 0
					}
					if err := sch.Nack(tag, false, true); err != nil {
						return false, fmt.Errorf("source: nack: %w", err)
					}
					published--
				}
				more := false
				select {
				case c, more = <-confirms:
				default:
				}
				if !more {
					break
				}
			}
			if ackTo != 0 {
				if err := sch.Ack(ackTo, true); err != nil {
					return false, fmt.Errorf("source: ack: %w", err)
				}
				count(n)
			}
		}
	}
}

// forwarder turns a delivery from the source into a publish to the
// destination.
type forwarder struct {
	w        *worker
	src, dst *Endpoint
}

func (f *forwarder) publish(ch *amqp.Channel, dl *amqp.Delivery) error {
	d := f.w.def
	p := amqp.Publishing{
		Headers: dl.Headers, ContentType: dl.ContentType, ContentEncoding: dl.ContentEncoding,
		DeliveryMode: dl.DeliveryMode, Priority: dl.Priority, CorrelationId: dl.CorrelationId,
		ReplyTo: dl.ReplyTo, Expiration: dl.Expiration, MessageId: dl.MessageId, Timestamp: dl.Timestamp,
		Type: dl.Type, UserId: dl.UserId, AppId: dl.AppId, Body: dl.Body,
	}
	setProperties(&p, d.PublishProperties)
	exchange, key := dl.Exchange, dl.RoutingKey
	if d.DestQueue != nil {
		exchange, key = "", *d.DestQueue
	} else {
		if d.DestExchange != nil {
			exchange = *d.DestExchange
		}
		if d.DestExchangeKey != nil {
			key = *d.DestExchangeKey
		}
	}
	if d.AddForwardHeaders {
		p.Headers = f.forwardHeaders(p.Headers)
	}
	if d.AddTimestampHeader {
		p.Headers = cloneHeaders(p.Headers)
		p.Headers["x-shovelled-timestamp"] = time.Now().Unix()
	}
	return ch.PublishWithContext(f.w.ctx, exchange, key, false, false, p)
}

func cloneHeaders(h amqp.Table) amqp.Table {
	out := make(amqp.Table, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	return out
}

// forwardHeaders prepends this hop to the x-shovelled array, with
// RabbitMQ's keys (rabbit_shovel_util:update_headers).
func (f *forwarder) forwardHeaders(h amqp.Table) amqp.Table {
	d, k := f.w.def, f.w.key
	by := f.w.m.srv.ClusterName() // RabbitMQ's cluster name: the node's unless set
	if by == "" {
		by = f.w.m.srv.NodeName()
	}
	hop := amqp.Table{
		"shovelled-by": by,
		"shovel-type":  "dynamic",
		"shovel-name":  k.name,
		"shovel-vhost": k.vhost,
		"src-uri":      f.src.Redacted(),
		"dest-uri":     f.dst.Redacted(),
	}
	if d.SrcQueue != "" {
		hop["src-queue"] = d.SrcQueue
	} else {
		hop["src-exchange"], hop["src-exchange-key"] = d.SrcExchange, d.SrcExchangeKey
	}
	for name, v := range map[string]*string{"dest-queue": d.DestQueue, "dest-exchange": d.DestExchange, "dest-exchange-key": d.DestExchangeKey} {
		if v != nil {
			hop[name] = *v
		}
	}
	out := cloneHeaders(h)
	prev, _ := out["x-shovelled"].([]any)
	out["x-shovelled"] = append([]any{hop}, prev...)
	return out
}

// setProperties applies dest-publish-properties.
func setProperties(p *amqp.Publishing, props map[string]any) {
	for k, v := range props {
		s, _ := v.(string)
		n, _ := number(v)
		switch k {
		case "content_type":
			p.ContentType = s
		case "content_encoding":
			p.ContentEncoding = s
		case "delivery_mode":
			p.DeliveryMode = uint8(n)
		case "priority":
			p.Priority = uint8(n)
		case "correlation_id":
			p.CorrelationId = s
		case "reply_to":
			p.ReplyTo = s
		case "expiration":
			p.Expiration = s
		case "message_id":
			p.MessageId = s
		case "timestamp":
			p.Timestamp = time.Unix(int64(n), 0)
		case "type":
			p.Type = s
		case "user_id":
			p.UserId = s
		case "app_id":
			p.AppId = s
		}
	}
}
