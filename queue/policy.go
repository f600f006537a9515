package queue

import (
	"math"

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
}

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
