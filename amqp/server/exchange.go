package server

import (
	"fmt"
	"strings"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
)

func errNoExchange(name, vhost string) *amqp.Error {
	return amqp.Errorf(amqp.NotFound, "no exchange '%s' in vhost '%s'", name, vhost)
}

func errDefaultExchange() *amqp.Error {
	return amqp.Errorf(amqp.AccessRefused, "operation not permitted on the default exchange")
}

func (ch *channel) exchangeDeclare(m *amqp.ExchangeDeclare) error {
	v := ch.vhost()
	if m.Exchange == "" {
		return errDefaultExchange()
	}
	if m.Passive {
		v.mu.RLock()
		_, ok := v.exchanges[m.Exchange]
		v.mu.RUnlock()
		if !ok {
			return errNoExchange(m.Exchange, v.Name)
		}
		if !m.NoWait {
			ch.sendMethod(&amqp.ExchangeDeclareOk{})
		}
		return nil
	}
	kind := m.Type
	if kind == DelayedType {
		t, err := delayedTypeOf(m.Arguments)
		if err != nil {
			return err
		}
		kind = t
	}
	if kind == FederationUpstreamType {
		if err := validateUpstreamArgs(m.Arguments); err != nil {
			return err
		}
	}
	matcher, ok := matcherOf(kind, m.Arguments)
	if !ok {
		return amqp.Errorf(amqp.CommandInvalid, "unknown exchange type '%s'", m.Type)
	}
	if err := configurePicker(matcher, m.Arguments); err != nil {
		return err
	}
	if err := validateDedupArgs(m.Arguments); err != nil {
		return err
	}
	if err := ch.mayExchange(permConfigure, m.Exchange); err != nil {
		return err
	}
	ae, _ := m.Arguments["alternate-exchange"].(string)
	if ae != "" {
		if err := ch.mayExchange(permRead, m.Exchange); err != nil {
			return err
		}
		if err := ch.mayExchange(permWrite, ae); err != nil {
			return err
		}
	}
	if err := v.declareExchange(m, matcher); err != nil {
		return err
	}
	if ch.conn.group != 0 {
		v.replicateNewDedup(ch.conn.srv, m.Exchange, ch.conn.group, ch.conn.members)
	}
	if m.Durable {
		v.syncDefs()
	}
	if !m.NoWait {
		ch.sendMethod(&amqp.ExchangeDeclareOk{})
	}
	return nil
}

// declareExchange creates the exchange or checks an existing one against m.
func (v *Vhost) declareExchange(m *amqp.ExchangeDeclare, matcher exchange.Matcher[dest]) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if x, ok := v.exchanges[m.Exchange]; ok {
		// An existing exchange, amq.* included, is only checked for
		// equivalence: a different type is 406 "inequivalent arg 'type'"
		// (rabbit_channel's exchange.declare calls
		// rabbit_exchange:assert_equivalence on whatever the lookup found;
		// observed on RabbitMQ 3.10.8 for amq.direct redeclared as fanout).
		if err := exchangeEquivalent(x, m, v.Name); err != nil {
			return err
		}
		return nil // not the typed nil *amqp.Error, which a non-nil error would carry
	}
	// The reserved prefix is checked only when the declare would create the
	// exchange (rabbit_channel: check_name on lookup's not_found branch).
	if strings.HasPrefix(m.Exchange, "amq.") {
		return amqp.Errorf(amqp.AccessRefused, "exchange name '%s' contains reserved prefix 'amq.*'", m.Exchange)
	}
	x := &Exchange{
		Name: m.Exchange, Kind: m.Type, Durable: m.Durable, AutoDelete: m.AutoDelete,
		Internal: m.Internal, Args: m.Arguments, m: matcher,
	}
	x.pick, _ = matcher.(exchange.Picker[dest])
	x.dedup = v.newDedupCache(x)
	x.policy = v.policyFor("exchanges", x.Name)
	x.AE = exchangeAE(x)
	if x.Kind == DelayedType {
		var id uint64
		if v.store != nil {
			id = v.nextQueueID()
		}
		x.delay = newDelayer(v, x, id)
		x.delay.start()
	}
	v.exchanges[m.Exchange] = x
	v.persistExchange(x)
	v.topologyChanged()
	return nil
}

func inequivalent(arg, kind, name, vhost string, received, current any) *amqp.Error {
	return amqp.Errorf(amqp.PreconditionFailed, "inequivalent arg '%s' for %s '%s' in vhost '%s': received '%v' but current is '%v'",
		arg, kind, name, vhost, received, current)
}

func exchangeEquivalent(x *Exchange, m *amqp.ExchangeDeclare, vhost string) *amqp.Error {
	switch {
	case x.Kind != m.Type:
		return inequivalent("type", "exchange", x.Name, vhost, m.Type, x.Kind)
	case x.Durable != m.Durable:
		return inequivalent("durable", "exchange", x.Name, vhost, m.Durable, x.Durable)
	case x.AutoDelete != m.AutoDelete:
		return inequivalent("auto_delete", "exchange", x.Name, vhost, m.AutoDelete, x.AutoDelete)
	case x.Internal != m.Internal:
		return inequivalent("internal", "exchange", x.Name, vhost, m.Internal, x.Internal)
	}
	ae, _ := m.Arguments["alternate-exchange"].(string)
	if cur, _ := x.Args["alternate-exchange"].(string); ae != cur {
		return inequivalent("alternate-exchange", "exchange", x.Name, vhost, ae, cur)
	}
	if x.Kind == DelayedType {
		dt, _ := m.Arguments["x-delayed-type"].(string)
		if cur := x.routingKind(); dt != cur {
			return inequivalent("x-delayed-type", "exchange", x.Name, vhost, dt, cur)
		}
	}
	return nil
}

func (ch *channel) exchangeDelete(m *amqp.ExchangeDelete) error {
	v := ch.vhost()
	if m.Exchange == "" {
		return errDefaultExchange()
	}
	// RabbitMQ (rabbit_channel, check_exchange_deletion) refuses this
	// before it checks permissions.
	if strings.HasPrefix(m.Exchange, "amq.") {
		return amqp.Errorf(amqp.AccessRefused, "deletion of system exchange '%s' in vhost '%s' not allowed", m.Exchange, v.Name)
	}
	if err := ch.mayExchange(permConfigure, m.Exchange); err != nil {
		return err
	}
	v.mu.Lock()
	if x, ok := v.exchanges[m.Exchange]; ok {
		if m.IfUnused && x.m.Len() > 0 {
			v.mu.Unlock()
			return amqp.Errorf(amqp.PreconditionFailed, "exchange '%s' in vhost '%s' in use", m.Exchange, v.Name)
		}
		v.deleteExchangeLocked(x)
	}
	v.mu.Unlock()
	v.syncDefs()
	if !m.NoWait {
		ch.sendMethod(&amqp.ExchangeDeleteOk{})
	}
	return nil
}

// lookupBindingEnds finds the source and destination exchanges of an
// exchange-to-exchange binding. Lock must be held.
func (v *Vhost) lookupExchanges(dst, src string) (*Exchange, *Exchange, error) {
	if dst == "" || src == "" {
		return nil, nil, errDefaultExchange()
	}
	d, ok := v.exchanges[dst]
	if !ok {
		return nil, nil, errNoExchange(dst, v.Name)
	}
	s, ok := v.exchanges[src]
	if !ok {
		return nil, nil, errNoExchange(src, v.Name)
	}
	return d, s, nil
}

func validateBindArgs(x *Exchange, key string, args amqp.Table) error {
	if x.routingKind() == exchange.ConsistentHash {
		return validateWeight(key)
	}
	if x.routingKind() != exchange.Headers {
		return nil
	}
	if v, ok := args["x-match"]; ok && !exchange.ValidXMatch(v) {
		return amqp.Errorf(amqp.PreconditionFailed, "Invalid x-match field value %s; expected all, any, all-with-x, or any-with-x", fmtArg(v))
	}
	return nil
}

func fmtArg(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("<<\"%s\">>", s)
	}
	return fmt.Sprint(v)
}

// mayBindExchanges checks write on the destination, then read on the source.
func (ch *channel) mayBindExchanges(dst, src string) error {
	if err := ch.mayExchange(permWrite, dst); err != nil {
		return err
	}
	return ch.mayExchange(permRead, src)
}

func (ch *channel) exchangeBind(m *amqp.ExchangeBind) error {
	if err := ch.mayBindExchanges(m.Destination, m.Source); err != nil {
		return err
	}
	v := ch.vhost()
	v.mu.Lock()
	d, s, err := v.lookupExchanges(m.Destination, m.Source)
	if err == nil {
		err = validateBindArgs(s, m.RoutingKey, m.Arguments)
	}
	if err == nil {
		v.bind(s, d, m.RoutingKey, m.Arguments)
	}
	v.mu.Unlock()
	if err != nil {
		return err
	}
	v.syncDefs()
	if !m.NoWait {
		ch.sendMethod(&amqp.ExchangeBindOk{})
	}
	return nil
}

func (ch *channel) exchangeUnbind(m *amqp.ExchangeUnbind) error {
	if err := ch.mayBindExchanges(m.Destination, m.Source); err != nil {
		return err
	}
	v := ch.vhost()
	v.mu.Lock()
	d, s, err := v.lookupExchanges(m.Destination, m.Source)
	if err == nil {
		v.unbind(s, d, m.RoutingKey, m.Arguments)
	}
	v.mu.Unlock()
	if err != nil {
		return err
	}
	v.syncDefs()
	if !m.NoWait {
		ch.sendMethod(&amqp.ExchangeUnbindOk{})
	}
	return nil
}
