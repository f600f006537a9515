package server

import (
	"fmt"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Quorum queues (x-queue-type quorum) as a client sees RabbitMQ's: durable
// only, never exclusive or auto-delete, never server-named, no global QoS;
// every message stored whatever its delivery mode; a delivery limit (20 by
// default, as RabbitMQ 4.x) with the x-delivery-count header on
// redeliveries; two fair priority levels (4.x). The queue package does the
// queue side (queue.Queue.Quorum); this file holds the protocol side.

// isQuorum reports whether declare arguments ask for a quorum queue.
func isQuorum(args amqp.Table) bool {
	s, _ := args["x-queue-type"].(string)
	return s == "quorum"
}

// classicOnlyArgs are classic queues' arguments that a quorum queue
// refuses (RabbitMQ 3.10.8); other arguments, unknown ones included, pass.
var classicOnlyArgs = []string{"x-max-priority", "x-queue-mode", "x-queue-master-locator", "x-queue-version"}

// deliveryLimitMin is the lowest x-delivery-limit accepted: -1 (no limit)
// for a quorum queue, as RabbitMQ takes it.
func deliveryLimitMin(args amqp.Table) int64 {
	if isQuorum(args) {
		return -1
	}
	return 0
}

// validateQuorumArgs checks what differs for a quorum queue once
// validateQueueArgs passed.
func validateQuorumArgs(args amqp.Table, name, vhost string) error {
	for _, k := range classicOnlyArgs {
		if _, ok := args[k]; ok {
			return amqp.Errorf(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue", k, name, vhost)
		}
	}
	if v, ok := args["x-dead-letter-strategy"]; ok {
		if s, _ := v.(string); s != "at-most-once" && s != "at-least-once" {
			return invalidArg("x-dead-letter-strategy", name, vhost, "invalid_dlx_strategy")
		}
	}
	if v, ok := args["x-quorum-initial-group-size"]; ok {
		if n, ok := amqp.Int(v); !ok {
			return invalidArg("x-quorum-initial-group-size", name, vhost, fmt.Sprintf("{unacceptable_type,%v}", v))
		} else if n < 1 {
			return invalidArg("x-quorum-initial-group-size", name, vhost, fmt.Sprintf("{value_zero,%d}", n))
		}
	}
	return nil
}

// checkQuorumDeclare refuses the queue properties a quorum queue cannot
// have, in RabbitMQ's order, for a queue about to be created.
func checkQuorumDeclare(m *amqp.QueueDeclare, name, vhost string) error {
	switch {
	case m.AutoDelete:
		return amqp.Errorf(amqp.PreconditionFailed, "invalid property 'auto-delete' for queue '%s' in vhost '%s'", name, vhost)
	case m.Exclusive:
		return amqp.Errorf(amqp.PreconditionFailed, "invalid property 'exclusive-owner' for queue '%s' in vhost '%s'", name, vhost)
	case !m.Durable:
		return amqp.Errorf(amqp.PreconditionFailed, "invalid property 'non-durable' for queue '%s' in vhost '%s'", name, vhost)
	}
	return nil
}

// errServerNamedQuorum is RabbitMQ's refusal of queue.declare with an empty
// name and x-queue-type quorum.
func errServerNamedQuorum() error {
	return amqp.Errorf(amqp.PreconditionFailed, "Cannot declare a server-named queue for type rabbit_quorum_queue")
}

// errGlobalQoS is RabbitMQ's refusal of basic.consume on a quorum queue by
// a channel with a global prefetch (basic.qos global=true).
func errGlobalQoS(q *Queue, vhost string) error {
	return amqp.Errorf(amqp.NotImplemented, "queue '%s' in vhost '%s' does not support global qos", q.Name, vhost)
}

// deliveryHeader is the content header to deliver e with: the message's
// own, or for a quorum queue's redelivery, one carrying x-delivery-count
// (how many times it came back before).
func deliveryHeader(q *queue.Queue, e *queue.Entry) []byte {
	if e.Returns == 0 || !q.Quorum() {
		return e.Msg.Header
	}
	return withDeliveryCount(e)
}

// getHeader is the content header of a basic.get-ok: a quorum queue's
// always carries x-delivery-count, 0 the first time (RabbitMQ 3.10).
func getHeader(q *queue.Queue, e *queue.Entry) []byte {
	if !q.Quorum() {
		return e.Msg.Header
	}
	return withDeliveryCount(e)
}

func withDeliveryCount(e *queue.Entry) []byte {
	p := e.Msg.Props()
	h := make(amqp.Table, len(p.Headers)+1)
	for k, v := range p.Headers {
		h[k] = v
	}
	h["x-delivery-count"] = int64(e.Returns)
	p.Headers = h
	p.Flags |= amqp.FlagHeaders
	return amqp.AppendContentHeader(nil, uint64(len(e.Msg.Body)), &p)
}
