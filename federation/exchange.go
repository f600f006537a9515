package federation

import (
	"errors"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp/server"
)

// An exchange link, as rabbit_federation_exchange_link sets it up on the
// upstream: a durable queue "federation: X -> <this cluster>" (x-expires,
// x-message-ttl), an internal auto-delete exchange of type
// x-federation-upstream named after the queue with a suffix A or B
// (alternating at each start, so the new one is bound before the old one
// goes), bound to the queue and, from the upstream exchange, with each of
// X's bindings. Messages consumed from the queue are published into X with
// a hop prepended to x-received-from.

// boundFromHeader carries, on the upstream bindings, how much further a
// binding may propagate (the plugin's BINDING_HEADER).
const boundFromHeader = "x-bound-from"

// upstreamQueueName is the plugin's upstream_queue_name.
func (s *session) upstreamQueueName() string {
	l := s.l
	down := ""
	switch {
	case l.key.vhost != s.upVhost:
		down = ":" + l.key.vhost + ":" + l.key.name
	case l.key.name != l.upstreamName():
		down = ":" + l.key.name
	}
	return "federation: " + l.upstreamName() + " -> " + l.m.srv.EffectiveClusterName() + down
}

// upstreamBinding is the binding made upstream for a local binding of X,
// with this hop in x-bound-from; false when it goes no further (the
// plugin's update_binding: bindings obey max-hops in reverse).
func (s *session) upstreamBinding(b server.BindingInfo, internal string) (amqp.Table, bool) {
	l := s.l
	hops := l.up.MaxHops
	if prev, ok := b.Arguments[boundFromHeader].([]any); ok && len(prev) > 0 {
		first, _ := prev[0].(amqp.Table)
		ph, _ := toInt(first["hops"])
		hops = min(ph-1, l.up.MaxHops)
		for _, e := range prev {
			if t, ok := e.(amqp.Table); ok && t["cluster-name"] == s.upCluster && t["vhost"] == s.upVhost {
				hops = 0
			}
		}
	}
	if hops <= 0 {
		return nil, false
	}
	args := amqp.Table{}
	for k, v := range b.Arguments {
		args[k] = v
	}
	hop := amqp.Table{"cluster-name": l.m.srv.EffectiveClusterName(), "vhost": l.key.vhost,
		"exchange": l.key.vhost + ":" + l.key.name + " " + internal[len(internal)-1:], "hops": int16(hops)}
	prev, _ := args[boundFromHeader].([]any)
	args[boundFromHeader] = append([]any{hop}, prev...)
	return args, true
}

func toInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int8:
		return int64(n), true
	case uint8:
		return int64(n), true
	case int16:
		return int64(n), true
	case uint16:
		return int64(n), true
	case int32:
		return int64(n), true
	case uint32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

type upBinding struct {
	key  string
	args amqp.Table
}

func (l *link) exchangeSession(s *session) error {
	closed := s.closed()
	tgt := l.target()
	upX := l.upstreamName()
	q := s.upstreamQueueName()

	// The queue, and the consumer on it.
	qargs := amqp.Table{"x-internal-purpose": "federation"}
	if l.up.Expires > 0 {
		qargs["x-expires"] = l.up.Expires
	}
	if l.up.MessageTTL >= 0 {
		qargs["x-message-ttl"] = l.up.MessageTTL
	}
	if _, err := s.uch.QueueDeclare(q, true, false, false, false, qargs); err != nil {
		return fmt.Errorf("upstream queue %q: %w", q, err)
	}
	deliveries, err := s.uch.Consume(q, "", l.up.AckMode == NoAck, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consuming from upstream queue %q: %w", q, err)
	}

	// The upstream exchange, declared as X is when it is missing.
	err = disposable(s.up, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclarePassive(upX, tgt.xType, tgt.durable, tgt.autoDelete, tgt.internal, false, nil)
	})
	if isCode(err, amqp.NotFound) {
		err = disposable(s.up, func(ch *amqp.Channel) error {
			return ch.ExchangeDeclare(upX, tgt.xType, tgt.durable, tgt.autoDelete, tgt.internal, false, tgt.args)
		})
	}
	if err != nil {
		return fmt.Errorf("upstream exchange %q: %w", upX, err)
	}

	// The internal exchange: x-federation-upstream, or fanout where the
	// upstream does not know that type (then this side filters alone).
	old := l.m.activeSuffix(l.key)
	suffix := map[string]string{"A": "B", "B": "A"}[old]
	internal, oldInternal := q+" "+suffix, q+" "+old
	cmd, err := s.up.Channel()
	if err != nil {
		return err
	}
	_ = disposable(s.up, func(ch *amqp.Channel) error { return ch.ExchangeDelete(internal, false, false) })
	purpose := amqp.Table{"x-internal-purpose": "federation"}
	err = disposable(s.up, func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare(internal, server.FederationUpstreamType, true, true, true, false, amqp.Table{
			"x-max-hops": l.up.MaxHops, "x-downstream-name": l.m.srv.EffectiveClusterName(),
			"x-downstream-vhost": l.key.vhost, "x-internal-purpose": "federation"})
	})
	if isCode(err, amqp.CommandInvalid) {
		err = cmd.ExchangeDeclare(internal, "fanout", true, true, true, false, purpose)
	}
	if err != nil {
		return fmt.Errorf("upstream exchange %q: %w", internal, err)
	}
	if err := cmd.QueueBind(q, "", internal, false, nil); err != nil {
		return fmt.Errorf("binding %q to %q upstream: %w", q, internal, err)
	}
	l.m.setActiveSuffix(l.key, suffix)
	applied := map[string]upBinding{}
	sync := func(bs []server.BindingInfo) error {
		want := map[string]upBinding{}
		for _, b := range bs {
			if args, ok := s.upstreamBinding(b, internal); ok {
				want[b.RoutingKey+"\x00"+canon(args)] = upBinding{b.RoutingKey, args}
			}
		}
		for k, b := range want {
			if _, ok := applied[k]; ok {
				continue
			}
			if err := cmd.ExchangeBind(internal, b.key, upX, false, b.args); err != nil {
				return fmt.Errorf("binding upstream %q to %q: %w", upX, internal, err)
			}
			applied[k] = b
		}
		for k, b := range applied {
			if _, ok := want[k]; ok {
				continue
			}
			if err := cmd.ExchangeUnbind(internal, b.key, upX, false, b.args); err != nil {
				return fmt.Errorf("unbinding upstream %q from %q: %w", upX, internal, err)
			}
			delete(applied, k)
		}
		return nil
	}
	if err := sync(tgt.bindings); err != nil {
		return err
	}
	_ = disposable(s.up, func(ch *amqp.Channel) error { return ch.ExchangeDelete(oldInternal, false, false) })

	l.setStatus("running", l.connectionName(), "", s.ep)
	l.log.Info("federation link running", zap.String("uri", s.ep.Redacted()), zap.String("upstream_queue", q))
	local := l.m.srv.EffectiveClusterName()
	for {
		select {
		case <-l.ctx.Done():
			s.settle()
			if !l.up.KeepResources && !l.keep.Load() {
				s.cleanup(q, internal)
			}
			return l.ctx.Err()
		case err := <-closed:
			return err
		case <-l.update:
			if err := sync(l.target().bindings); err != nil {
				return err
			}
		case dl, ok := <-deliveries:
			if !ok {
				return errors.New("upstream consumer cancelled")
			}
			// The upstream may not have filtered (a fanout), so check here
			// too whether the message already came this way.
			if !shouldForward(dl.Headers, l.up.MaxHops, local, l.key.vhost) {
				if err := s.drop(&dl); err != nil {
					return err
				}
				continue
			}
			hdr := receivedFrom(dl.Headers, s.hop("exchange", l.key.name, dl.Redelivered))
			if err := s.forward(&dl, l.key.name, dl.RoutingKey, hdr); err != nil {
				return err
			}
		case c, ok := <-s.confirms:
			if err := s.confirmed(c, ok); err != nil {
				return err
			}
		}
	}
}

// shouldForward is server.ShouldForward on headers as the client decodes
// them.
func shouldForward(h amqp.Table, maxHops int64, name, vhost string) bool {
	hops, ok := h[server.FederationHeader].([]any)
	if !ok {
		return true
	}
	if int64(len(hops)) >= maxHops {
		return false
	}
	for _, e := range hops {
		if t, ok := e.(amqp.Table); ok && t["cluster-name"] == name && t["vhost"] == vhost {
			return false
		}
	}
	return true
}

// cleanup deletes the link's upstream queue and internal exchange when it
// stops for good (its exchange, policy or upstream went), as the plugin's
// terminate does unless resource-cleanup-mode is never. Unlike the plugin,
// a link that stops only to run again (this broker stopping, another node
// taking the links over, a restart) keeps them, with the messages waiting
// there. An unresponsive upstream gets a few seconds.
func (s *session) cleanup(q, internal string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = disposable(s.up, func(ch *amqp.Channel) error { _, err := ch.QueueDelete(q, false, false, false); return err })
		_ = disposable(s.up, func(ch *amqp.Channel) error { return ch.ExchangeDelete(internal, false, false) })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.up.Close() // unblocks the calls
		<-done
	}
}
