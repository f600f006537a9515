package federation

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/shovel"
)

// Status is one link as rabbitmq_federation_management 3.10's
// /api/federation-links shows it.
type Status struct {
	Node             string `json:"node"`
	Exchange         string `json:"exchange,omitempty"`
	UpstreamExchange string `json:"upstream_exchange,omitempty"`
	Queue            string `json:"queue,omitempty"`
	UpstreamQueue    string `json:"upstream_queue,omitempty"`
	ConsumerTag      string `json:"consumer_tag,omitempty"`
	Type             string `json:"type"` // exchange or queue
	Vhost            string `json:"vhost"`
	Upstream         string `json:"upstream"`
	ID               string `json:"id"`
	Status           string `json:"status"` // starting, running or error
	LocalConnection  string `json:"local_connection,omitempty"`
	Error            string `json:"error,omitempty"`
	URI              string `json:"uri"`
	Timestamp        string `json:"timestamp"`
}

// timestampLayout is RabbitMQ's status timestamp (local time).
const timestampLayout = "2006-01-02 15:04:05"

// key names a link: a federated exchange or queue and one of its upstreams.
type key struct {
	vhost, kind, name, upstream string // kind is "exchange" or "queue"
}

// target is what a link federates: the local exchange or queue as the
// manager last saw it.
type target struct {
	policy string // the policy that federates it
	// An exchange's declaration, for declaring it upstream when missing.
	xType                         string
	durable, autoDelete, internal bool
	args                          amqp.Table
	bindings                      []server.BindingInfo // an exchange's, as the source
	queueArgs                     amqp.Table           // a queue's arguments
}

// link moves messages from one upstream into one federated exchange or
// queue: sessions one after another, reconnect-delay apart after a failure.
type link struct {
	m   *Manager
	key key
	up  *Upstream
	eps []*shovel.Endpoint
	log *zap.Logger

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	// keep: the link stops only to run again (here or on the next
	// metadata leader, or after this broker's restart), so it leaves its
	// upstream queue and exchange, and the messages waiting there, in
	// place (RabbitMQ deletes them on a clean shutdown too).
	keep atomic.Bool

	// next is the URI to try first; only run's goroutine uses it.
	next int

	mu     sync.Mutex
	st     Status        // guarded by mu
	tgt    target        // guarded by mu: the latest bindings and declaration
	update chan struct{} // 1-slot kick: tgt changed
}

func newLink(m *Manager, k key, up *Upstream, tgt target) *link {
	l := &link{m: m, key: k, up: up, tgt: tgt, done: make(chan struct{}), update: make(chan struct{}, 1),
		log: m.log.With(zap.String(k.kind, k.name), zap.String("vhost", k.vhost), zap.String("upstream", up.Name))}
	for _, u := range up.URIs {
		if e, err := shovel.ParseURI(u); err == nil { // validated when stored
			l.eps = append(l.eps, e)
		}
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	l.setStatus("starting", "", "", nil)
	return l
}

// pause stops the link keeping its upstream resources (keep).
func (l *link) pause() {
	l.keep.Store(true)
	l.cancel()
}

// upstreamName is the exchange or queue the link consumes from upstream.
func (l *link) upstreamName() string {
	if l.key.kind == "exchange" && l.up.Exchange != "" {
		return l.up.Exchange
	}
	if l.key.kind == "queue" && l.up.Queue != "" {
		return l.up.Queue
	}
	return l.key.name
}

// id is the link's stable identifier (RabbitMQ hashes the same key).
func (l *link) id() string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%s", l.key.vhost, l.key.kind, l.key.name, l.up.Name, l.upstreamName())
	return fmt.Sprintf("%08x", h.Sum32())
}

// connectionName is the plugin's name for the link's connections.
func (l *link) connectionName() string {
	l.mu.Lock()
	p := l.tgt.policy
	l.mu.Unlock()
	return "Federation link (upstream: " + l.up.Name + ", policy: " + p + ")"
}

func (l *link) status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st
}

func (l *link) setStatus(state, localConn, errText string, ep *shovel.Endpoint) {
	st := Status{Node: l.m.srv.NodeName(), Type: l.key.kind, Vhost: l.key.vhost, Upstream: l.up.Name,
		ID: l.id(), Status: state, LocalConnection: localConn, Error: errText,
		Timestamp: time.Now().Format(timestampLayout)}
	if ep == nil && len(l.eps) > 0 {
		ep = l.eps[l.next%len(l.eps)]
	}
	if ep != nil {
		st.URI = ep.Redacted()
	}
	if l.key.kind == "exchange" {
		st.Exchange, st.UpstreamExchange = l.key.name, l.upstreamName()
	} else {
		st.Queue, st.UpstreamQueue, st.ConsumerTag = l.key.name, l.upstreamName(), l.up.ConsumerTag
	}
	l.mu.Lock()
	l.st = st
	l.mu.Unlock()
}

// setTarget hands the link the exchange's current bindings.
func (l *link) setTarget(t target) {
	l.mu.Lock()
	l.tgt = t
	l.mu.Unlock()
	select {
	case l.update <- struct{}{}:
	default:
	}
}

func (l *link) target() target {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tgt
}

// run is the link's goroutine; it starts after prev (the link it
// replaces) has ended.
func (l *link) run(prev <-chan struct{}) {
	defer close(l.done)
	shovel.Run(l.ctx, prev, func() (bool, time.Duration) {
		l.setStatus("starting", "", "", nil)
		err := l.session()
		if l.ctx.Err() != nil {
			return false, 0
		}
		l.log.Warn("federation link failed", zap.Error(err))
		l.setStatus("error", "", err.Error(), nil)
		if len(l.eps) > 0 {
			l.next = (l.next + 1) % len(l.eps)
		}
		return true, max(l.up.ReconnectDelay, 100*time.Millisecond)
	})
}

// session connects and moves messages as the link's kind does, until an
// error or the link's end.
func (l *link) session() error {
	s, err := l.open()
	if err != nil {
		return err
	}
	defer s.close()
	if l.key.kind == "exchange" {
		return l.exchangeSession(s)
	}
	return l.queueSession(s)
}

// session is what both kinds of link hold while connected.
type session struct {
	l          *link
	local, up  *amqp.Connection
	ep         *shovel.Endpoint
	dch, uch   *amqp.Channel // local publishing, upstream consuming
	confirms   chan amqp.Confirmation
	pending    []uint64 // upstream tags of unconfirmed local publishes, in order
	upCluster  string   // the upstream's cluster_name server property
	upVhost    string
	closedErrs []chan *amqp.Error
}

// open connects to this broker and to the upstream (the URIs in turn) and
// opens the channels.
func (l *link) open() (*session, error) {
	s := &session{l: l}
	props := amqp.Table{"connection_name": l.connectionName(), "product": "Warren federation"}
	localEP, _ := shovel.ParseURI("amqp://")
	var err error
	if s.local, err = localEP.Dial(l.ctx, l.m.srv, l.key.vhost, props); err != nil {
		return nil, fmt.Errorf("local connection: %w", err)
	}
	up, j, err := shovel.DialFirst(l.ctx, l.m.srv, l.eps, l.next, l.key.vhost, props)
	if err != nil {
		s.local.Close()
		return nil, fmt.Errorf("upstream: %w", err)
	}
	l.next, s.up, s.ep = j, up, l.eps[j]
	s.upVhost = s.ep.Vhost(l.key.vhost)
	s.upCluster, _ = s.up.Properties["cluster_name"].(string)
	if s.dch, err = s.local.Channel(); err == nil {
		s.uch, err = s.up.Channel()
	}
	if err == nil && l.up.AckMode == OnConfirm {
		if err = s.dch.Confirm(false); err == nil {
			s.confirms = s.dch.NotifyPublish(make(chan amqp.Confirmation, l.up.Prefetch+64))
		}
	}
	if err == nil && l.up.AckMode != NoAck {
		err = s.uch.Qos(l.up.Prefetch, 0, false)
	}
	if err != nil {
		s.close()
		return nil, err
	}
	s.closedErrs = []chan *amqp.Error{
		s.local.NotifyClose(make(chan *amqp.Error, 1)), s.up.NotifyClose(make(chan *amqp.Error, 1)),
		s.dch.NotifyClose(make(chan *amqp.Error, 1)), s.uch.NotifyClose(make(chan *amqp.Error, 1)),
	}
	return s, nil
}

func (s *session) close() {
	if s.up != nil {
		s.up.Close()
	}
	s.local.Close()
}

// closed merges the close notifications into one channel.
func (s *session) closed() <-chan error {
	out := make(chan error, len(s.closedErrs))
	names := []string{"local connection", "upstream connection", "local channel", "upstream channel"}
	for i, c := range s.closedErrs {
		go func() {
			e, ok := <-c
			if !ok || e == nil {
				out <- fmt.Errorf("%s closed", names[i])
				return
			}
			out <- fmt.Errorf("%s closed: %w", names[i], e)
		}()
	}
	return out
}

// disposable runs fn on a channel of its own, closed after: a refusal
// closes only that channel.
func disposable(c *amqp.Connection, fn func(ch *amqp.Channel) error) error {
	ch, err := c.Channel()
	if err != nil {
		return err
	}
	err = fn(ch)
	if err == nil {
		ch.Close()
	}
	return err
}

func isCode(err error, code int) bool {
	var ae *amqp.Error
	return errors.As(err, &ae) && ae.Code == code
}

// forward publishes a delivery into this broker (exchange, key) with the
// headers hdr, and acks it upstream as the ack mode says.
func (s *session) forward(dl *amqp.Delivery, exchange, key string, hdr amqp.Table) error {
	p := amqp.Publishing{
		Headers: hdr, ContentType: dl.ContentType, ContentEncoding: dl.ContentEncoding,
		DeliveryMode: dl.DeliveryMode, Priority: dl.Priority, CorrelationId: dl.CorrelationId,
		ReplyTo: dl.ReplyTo, Expiration: dl.Expiration, MessageId: dl.MessageId, Timestamp: dl.Timestamp,
		Type: dl.Type, AppId: dl.AppId, Body: dl.Body,
	}
	if s.l.up.TrustUserID {
		p.UserId = dl.UserId
	}
	if err := s.dch.PublishWithContext(s.l.ctx, exchange, key, false, false, p); err != nil {
		return fmt.Errorf("publishing locally: %w", err)
	}
	switch s.l.up.AckMode {
	case OnConfirm:
		s.pending = append(s.pending, dl.DeliveryTag)
	case OnPublish:
		return s.uch.Ack(dl.DeliveryTag, false)
	}
	return nil
}

// drop acks upstream a message that is not forwarded (loop or hops).
func (s *session) drop(dl *amqp.Delivery) error {
	if s.l.up.AckMode == NoAck {
		return nil
	}
	return s.uch.Ack(dl.DeliveryTag, false)
}

// confirmed settles upstream what this broker confirmed: acks up to the
// last confirmed one at once, nacks (requeues) what it refused. ok is
// false when the confirms channel closed: the local channel did.
func (s *session) confirmed(c amqp.Confirmation, ok bool) error {
	if !ok {
		return errors.New("local channel closed")
	}
	var ackTo uint64
	for {
		if len(s.pending) == 0 {
			return fmt.Errorf("local confirm %d of a publish never sent", c.DeliveryTag)
		}
		tag := s.pending[0]
		s.pending = s.pending[1:]
		if c.Ack {
			ackTo = tag
		} else {
			if ackTo != 0 {
				if err := s.uch.Ack(ackTo, true); err != nil {
					return err
				}
				ackTo = 0
			}
			if err := s.uch.Nack(tag, false, true); err != nil {
				return err
			}
		}
		more := false
		select {
		case c, more = <-s.confirms:
		default:
		}
		if !more {
			break
		}
	}
	if ackTo != 0 {
		return s.uch.Ack(ackTo, true)
	}
	return nil
}

// settleWait bounds how long a stopping link waits for this broker's
// confirms of what it forwarded.
const settleWait = 5 * time.Second

// settle is a session's end when its link stops: what it forwarded and
// this broker confirms (within settleWait) is acked upstream, then the
// upstream channel closes, which hands back only what was never forwarded.
// Without it a link stopping between a local confirm and its ack upstream
// left there a message already delivered here, delivered again at the
// next run: a clean stop must not duplicate.
func (s *session) settle() {
	limit := time.After(settleWait)
	for len(s.pending) > 0 {
		select {
		case c, ok := <-s.confirms:
			if s.confirmed(c, ok) != nil {
				return
			}
		case <-limit:
			return
		}
	}
	closed := make(chan struct{})
	go func() {
		s.uch.Close() // returns once the upstream has the acks
		close(closed)
	}()
	select {
	case <-closed:
	case <-limit: // an unresponsive upstream: the connection's close follows
	}
}

// receivedFrom prepends this hop to a message's x-received-from.
func receivedFrom(h amqp.Table, hop amqp.Table) amqp.Table {
	out := make(amqp.Table, len(h)+1)
	for k, v := range h {
		out[k] = v
	}
	prev, _ := out[server.FederationHeader].([]any)
	out[server.FederationHeader] = append([]any{hop}, prev...)
	return out
}

// hop is the x-received-from entry of a message from the upstream this
// connection pair reads (update_routing_headers): kind is "exchange" or "queue", name
// the local one.
func (s *session) hop(kind, name string, redelivered bool) amqp.Table {
	t := amqp.Table{"uri": s.ep.Redacted(), kind: name, "redelivered": redelivered}
	if s.upCluster != "" {
		t["cluster-name"] = s.upCluster
	}
	if kind == "exchange" {
		t["vhost"] = s.upVhost
	}
	return t
}

// sortedKeys is for deterministic binding keys.
func sortedKeys(t amqp.Table) []string {
	ks := make([]string, 0, len(t))
	for k := range t {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// canon writes a table deterministically (nested maps too: fmt sorts
// their keys).
func canon(t amqp.Table) string {
	var b strings.Builder
	for _, k := range sortedKeys(t) {
		fmt.Fprintf(&b, "%q=%v;", k, t[k])
	}
	return b.String()
}
