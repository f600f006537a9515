package queue

import (
	"math"
	"time"

	"github.com/warren-mq/warren/amqp"
)

// Overflow behaviours for x-overflow.
const (
	DropHead         = "drop-head"
	RejectPublish    = "reject-publish"
	RejectPublishDLX = "reject-publish-dlx"
)

// Dead-letter reasons as RabbitMQ writes them in x-death.
const (
	ReasonRejected = "rejected"
	ReasonExpired  = "expired"
	ReasonMaxLen   = "maxlen"
	// ReasonDeliveryLimit is a quorum queue's reason for a message returned
	// more often than its delivery-limit allows.
	ReasonDeliveryLimit = "delivery_limit"
)

// limits are a queue's effective x-arguments, read once at declaration.
type limits struct {
	ttl         int64 // ms; -1 none
	maxLen      int64 // -1 none
	maxLenBytes int64 // -1 none
	overflow    string
	dlx         string
	hasDLX      bool
	expires     int64 // ms; -1 none
	maxPriority int   // 0: not a priority queue
	// singleActive: x-single-active-consumer.
	singleActive bool
	// deliveryLimit: returns allowed before a message is dead-lettered; -1 none.
	deliveryLimit int64
	dlrk          string
	hasDLRK       bool
	// quorum: x-queue-type quorum. Every message is stored, whatever its
	// delivery mode; priorities are two fair levels; the delivery limit
	// defaults to DefaultDeliveryLimit.
	quorum bool
}

// DefaultDeliveryLimit is a quorum queue's delivery-limit when neither an
// argument nor a policy sets one (RabbitMQ 4.x; a negative limit turns it
// off).
const DefaultDeliveryLimit = 20

func intArg(args amqp.Table, k string) int64 {
	if v, ok := args[k]; ok {
		if n, ok := amqp.Int(v); ok {
			return n
		}
	}
	return -1
}

func parseLimits(args amqp.Table) limits {
	l := limits{
		ttl:         intArg(args, "x-message-ttl"),
		maxLen:      intArg(args, "x-max-length"),
		maxLenBytes: intArg(args, "x-max-length-bytes"),
		overflow:    DropHead,
	}
	if s, ok := args["x-overflow"].(string); ok && s != "" {
		l.overflow = s
	}
	l.dlx, l.hasDLX = args["x-dead-letter-exchange"].(string)
	l.dlrk, l.hasDLRK = args["x-dead-letter-routing-key"].(string)
	l.deliveryLimit = intArg(args, "x-delivery-limit")
	if l.quorum = args["x-queue-type"] == "quorum"; l.quorum {
		if l.overflow == RejectPublishDLX {
			l.overflow = DropHead // a quorum queue takes it as drop-head (RabbitMQ 3.10)
		}
		if _, set := args["x-delivery-limit"]; !set {
			l.deliveryLimit = DefaultDeliveryLimit
		} else if l.deliveryLimit < 0 {
			l.deliveryLimit = -1
		}
	}
	l.expires = intArg(args, "x-expires")
	if p := intArg(args, "x-max-priority"); p > 0 {
		l.maxPriority = int(min(p, 255))
	}
	l.singleActive, _ = args["x-single-active-consumer"].(bool)
	if l.maxLen < 0 {
		l.maxLen = math.MaxInt64
	}
	if l.maxLenBytes < 0 {
		l.maxLenBytes = math.MaxInt64
	}
	return l
}

// DeadLetter is one message leaving a queue for its dead-letter exchange.
type DeadLetter struct {
	Msg    *Message
	Reason string
}

// Policy keys and the queue arguments they stand for.
var policyArgs = map[string]string{
	"message-ttl":             "x-message-ttl",
	"expires":                 "x-expires",
	"max-length":              "x-max-length",
	"max-length-bytes":        "x-max-length-bytes",
	"overflow":                "x-overflow",
	"dead-letter-exchange":    "x-dead-letter-exchange",
	"dead-letter-routing-key": "x-dead-letter-routing-key",
	"delivery-limit":          "x-delivery-limit",
}

// minWins are the keys where the lower of argument and policy applies;
// for the others the queue's own argument wins.
var minWins = map[string]bool{
	"x-message-ttl": true, "x-expires": true, "x-max-length": true, "x-max-length-bytes": true, "x-delivery-limit": true,
}

// EffectiveArgs resolves a queue's arguments against a policy definition
// key by key, as RabbitMQ does: the lower value for message-ttl, expires,
// max-length, max-length-bytes (and delivery-limit); the queue argument for
// dead-letter-exchange, dead-letter-routing-key and overflow.
func EffectiveArgs(args amqp.Table, def map[string]any) amqp.Table {
	if len(def) == 0 {
		return args
	}
	out := make(amqp.Table, len(args)+len(def))
	for k, v := range args {
		out[k] = v
	}
	for pk, pv := range def {
		k, ok := policyArgs[pk]
		if !ok {
			continue
		}
		cur, has := out[k]
		switch {
		case !has:
			out[k] = pv
		case minWins[k]:
			a, aok := amqp.Int(cur)
			b, bok := amqp.Int(pv)
			if aok && bok && b < a {
				out[k] = pv
			}
		}
	}
	return out
}

// SetPolicy applies a policy definition (nil for none) to the queue at
// once: a lower max-length trims now, a new TTL applies to the messages
// that follow, a new expires restarts its countdown.
func (q *Queue) SetPolicy(def map[string]any) {
	if q.sq != nil {
		q.sq.setPolicy(def)
		return
	}
	eff := EffectiveArgs(q.Args, def)
	q.mu.Lock()
	l := parseLimits(eff)
	// Declared-only properties keep their declared values.
	l.maxPriority, l.singleActive = q.lim.maxPriority, q.lim.singleActive
	q.lim = l
	dead := q.trimLocked(nil)
	if q.lim.expires > 0 && len(q.consumers) == 0 {
		q.expTimer.Reset(time.Duration(q.lim.expires) * time.Millisecond)
	}
	q.mu.Unlock()
	q.deadLetter(dead)
	q.Kick()
}

// DeadLetterTarget is the queue's effective dead-letter exchange and
// routing key (hasRK false: the message's own keys).
func (q *Queue) DeadLetterTarget() (dlx, rk string, hasRK bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lim.dlx, q.lim.dlrk, q.lim.hasDLRK
}
