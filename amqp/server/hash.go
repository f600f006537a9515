package server

import (
	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
)

// The one-destination exchange types (x-consistent-hash, x-modulus-hash,
// x-random): their matchers are exchange.Pickers, and the router asks them
// for one destination per message instead of matching every binding.

// configurePicker applies a consistent-hash exchange's hash-header or
// hash-property argument to its matcher, refusing invalid ones with 406 as
// the plugin's validate/1 does.
func configurePicker(m exchange.Matcher[dest], args amqp.Table) *amqp.Error {
	if _, ok := m.(exchange.Picker[dest]); !ok {
		return nil
	}
	src, err := exchange.HashSourceOf(args)
	if err != nil {
		return amqp.Errorf(amqp.PreconditionFailed, "%s", err.Error())
	}
	exchange.SetHashSource(m, src)
	return nil
}

// validateWeight checks a consistent-hash binding key (the bucket weight),
// 406 with the plugin's texts (validate_binding/2, observed on 3.10.8).
func validateWeight(key string) error {
	if _, err := exchange.ParseWeight(key); err != nil {
		return amqp.Errorf(amqp.PreconditionFailed, "%s", err.Error())
	}
	return nil
}

// pickFrom routes through a one-destination exchange. Each such exchange
// routes a message once, on the message's first routing key, however many
// CC keys or exchange-to-exchange paths reach it: the plugins hash the head
// of the routing keys (observed on 3.10.8: 40 messages with 5 CC keys each
// put 40 copies in the four queues, not 240).
func (r *router) pickFrom(x *Exchange) {
	for _, p := range r.picked {
		if p == x {
			return
		}
	}
	r.picked = append(r.picked, x)
	if d, ok := x.pick.Pick(r.firstKey, r.props); ok {
		r.emit(d)
	}
}
