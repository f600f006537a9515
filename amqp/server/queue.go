package server

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// genName returns a server-generated name: prefix + 22 url-safe characters,
// like RabbitMQ's amq.gen-… and amq.ctag-….
func genName(prefix string) string {
	b := make([]byte, 16)
	rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func errNoQueue(name, vhost string) *amqp.Error {
	return amqp.Errorf(amqp.NotFound, "no queue '%s' in vhost '%s'", name, vhost)
}

func errLocked(name, vhost string) *amqp.Error {
	return amqp.Errorf(amqp.ResourceLocked, "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.", name, vhost)
}

// queueName resolves "" to the channel's last declared queue.
func (ch *channel) queueName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	if ch.lastQueue == "" {
		return "", amqp.Errorf(amqp.NotFound, "no previously declared queue")
	}
	return ch.lastQueue, nil
}

// queueFor resolves name, checks the user may do kind on it, then looks the
// queue up.
func (ch *channel) queueFor(kind permKind, name string) (*Queue, error) {
	name, err := ch.queueName(name)
	if err != nil {
		return nil, err
	}
	if err := ch.mayQueue(kind, name); err != nil {
		return nil, err
	}
	return ch.lookupQueue(name)
}

// lookupQueue finds a queue and checks exclusive ownership.
func (ch *channel) lookupQueue(name string) (*Queue, error) {
	name, err := ch.queueName(name)
	if err != nil {
		return nil, err
	}
	v := ch.vhost()
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	if q == nil {
		return nil, errNoQueue(name, v.Name)
	}
	if q.owner != nil && q.owner != ch.conn {
		return nil, errLocked(name, v.Name)
	}
	return q, nil
}

// queueArgs are the x-arguments RabbitMQ knows for classic queues; only these
// are validated and compared on redeclare, others are ignored.
var queueArgs = []string{
	"x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes", "x-overflow",
	"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority",
	"x-single-active-consumer", "x-queue-mode", "x-queue-type", "x-queue-master-locator", "x-delivery-limit",
	"x-dead-letter-strategy", "x-quorum-initial-group-size",
}

func invalidArg(arg, name, vhost, why string) *amqp.Error {
	return amqp.Errorf(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s': %s", arg, name, vhost, why)
}

// validateQueueArgs checks the x-arguments as RabbitMQ does at declare.
func validateQueueArgs(args amqp.Table, name, vhost string) error {
	if queue.IsStream(args) {
		return validateStreamArgs(args, name, vhost) // a classic queue's arguments are ignored
	}
	intArg := func(k string, minimum int64) error {
		v, ok := args[k]
		if !ok {
			return nil
		}
		n, ok := amqp.Int(v)
		if !ok {
			return invalidArg(k, name, vhost, fmt.Sprintf("{unacceptable_type,%v}", v))
		}
		if n < minimum {
			if minimum == 1 {
				return invalidArg(k, name, vhost, fmt.Sprintf("{value_zero,%d}", n))
			}
			return invalidArg(k, name, vhost, fmt.Sprintf("{value_negative,%d}", n))
		}
		return nil
	}
	for _, c := range []struct {
		k   string
		min int64
	}{{"x-message-ttl", 0}, {"x-expires", 1}, {"x-max-length", 0}, {"x-max-length-bytes", 0}, {"x-max-priority", 0}, {"x-delivery-limit", deliveryLimitMin(args)}} {
		if err := intArg(c.k, c.min); err != nil {
			return err
		}
	}
	if v, ok := args["x-max-priority"]; ok {
		if n, _ := amqp.Int(v); n > 255 {
			return invalidArg("x-max-priority", name, vhost, fmt.Sprintf("{value_too_large,%d,255}", n))
		}
	}
	if v, ok := args["x-overflow"]; ok {
		s, _ := v.(string)
		switch s {
		case "drop-head", "reject-publish", "reject-publish-dlx":
		default:
			return invalidArg("x-overflow", name, vhost, fmt.Sprintf("{unacceptable_value,%v}", v))
		}
	}
	if _, ok := args["x-dead-letter-routing-key"]; ok {
		if _, ok := args["x-dead-letter-exchange"]; !ok {
			return invalidArg("x-dead-letter-routing-key", name, vhost, "Key 'x-dead-letter-exchange' is mandatory if 'x-dead-letter-routing-key' is set")
		}
	}
	if v, ok := args["x-single-active-consumer"]; ok {
		if _, isBool := v.(bool); !isBool {
			return invalidArg("x-single-active-consumer", name, vhost, fmt.Sprintf("{unacceptable_type,%v}", v))
		}
	}
	if v, ok := args["x-queue-type"]; ok {
		switch s, _ := v.(string); s {
		case "classic":
		case "quorum":
			return validateQuorumArgs(args, name, vhost)
		case "stream":
			return validateStreamArgs(args, name, vhost)
		default:
			return invalidArg("x-queue-type", name, vhost, fmt.Sprintf("\"unsupported queue type '%v'\"", v))
		}
	}
	return nil
}

func argEqual(a, b any) bool {
	if x, ok := amqp.Int(a); ok {
		y, ok := amqp.Int(b)
		return ok && x == y
	}
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

func queueEquivalent(q *Queue, m *amqp.QueueDeclare, vhost string) *amqp.Error {
	if q.Durable != m.Durable {
		return inequivalent("durable", "queue", q.Name, vhost, m.Durable, q.Durable)
	}
	if q.AutoDelete != m.AutoDelete {
		return inequivalent("auto_delete", "queue", q.Name, vhost, m.AutoDelete, q.AutoDelete)
	}
	compared := queueArgs
	if q.IsStream() {
		compared = streamArgs
	}
	for _, k := range compared {
		a, aok := m.Arguments[k]
		b, bok := q.Args[k]
		if aok != bok || aok && !argEqual(a, b) {
			// RabbitMQ names the types only when one side has none.
			ra, rb := describeArg(a, aok), describeArg(b, bok)
			if aok && bok {
				ra, rb = fmt.Sprintf("'%v'", a), fmt.Sprintf("'%v'", b)
			}
			return amqp.Errorf(amqp.PreconditionFailed, "inequivalent arg '%s' for queue '%s' in vhost '%s': received %s but current is %s",
				k, q.Name, vhost, ra, rb)
		}
	}
	return nil
}

func describeArg(v any, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprintf("the value '%v' of type '%s'", v, fieldTypeName(v))
}

func fieldTypeName(v any) string {
	switch v.(type) {
	case string:
		return "longstr"
	case int8, uint8, int16, uint16, int32:
		return "signedint"
	case int64, uint32:
		return "long"
	case bool:
		return "bool"
	}
	return fmt.Sprintf("%T", v)
}

func (ch *channel) queueDeclare(m *amqp.QueueDeclare) error {
	v := ch.vhost()
	name := m.Queue
	if m.Passive {
		if name == replyQueue {
			// The pseudo-queue exists, empty, with its one consumer.
			if !m.NoWait {
				ch.sendMethod(&amqp.QueueDeclareOk{Queue: name, ConsumerCount: 1})
			}
			return nil
		}
		if name == "" {
			name = ch.lastQueue
		}
		q, err := ch.lookupQueue(name)
		if err != nil {
			if name == "" {
				return errNoQueue(name, v.Name)
			}
			return err
		}
		if !q.Quorum() {
			q.Touch() // a passive declare counts as use for a classic queue's x-expires (not a quorum queue's)
		}
		ready, _, consumers := q.Counts()
		if q.remote(v.node) {
			r, c, err := ch.remoteCounts(q, peerCount)
			if err != nil {
				return err
			}
			ready, consumers = int(r), int(c)
		}
		ch.lastQueue = q.Name
		if !m.NoWait {
			ch.sendMethod(&amqp.QueueDeclareOk{Queue: q.Name, MessageCount: uint32(ready), ConsumerCount: uint32(consumers)})
		}
		return nil
	}
	if name == "" {
		if isQuorum(m.Arguments) {
			return errServerNamedQuorum()
		}
		if queue.IsStream(m.Arguments) {
			return errServerNamedStream()
		}
		name = genName("amq.gen-")
	} else if strings.HasPrefix(name, "amq.") && !ch.conn.generated {
		return amqp.Errorf(amqp.AccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", name)
	}
	if err := ch.mayQueue(permConfigure, name); err != nil {
		return err
	}
	if err := validateQueueArgs(m.Arguments, name, v.Name); err != nil {
		return err
	}
	if dlx, ok := m.Arguments["x-dead-letter-exchange"].(string); ok {
		if err := ch.mayQueue(permRead, name); err != nil {
			return err
		}
		if err := ch.mayExchange(permWrite, dlx); err != nil {
			return err
		}
	}
	v.mu.Lock()
	q := v.queues[name]
	if q != nil {
		if q.owner != nil && q.owner != ch.conn {
			v.mu.Unlock()
			return errLocked(name, v.Name)
		}
		if err := queueEquivalent(q, m, v.Name); err != nil {
			v.mu.Unlock()
			return err
		}
	} else {
		if isQuorum(m.Arguments) || queue.IsStream(m.Arguments) {
			if err := checkQuorumDeclare(m, name, v.Name); err != nil {
				v.mu.Unlock()
				return err
			}
		}
		if err := checkTypeArgs(m.Arguments, name, v.Name); err != nil {
			v.mu.Unlock()
			return err
		}
		if err := v.checkQueueLimitLocked(name); err != nil {
			v.mu.Unlock()
			return err
		}
		var owner *conn
		if m.Exclusive {
			owner = ch.conn
		}
		cfg := queue.Config{
			Name: name, Vhost: v.Name, Durable: m.Durable, Exclusive: m.Exclusive,
			AutoDelete: m.AutoDelete, Args: m.Arguments,
		}
		if queue.IsStream(cfg.Args) {
			var err error
			if q, err = v.newStreamQueue(cfg); err != nil {
				v.mu.Unlock()
				ch.conn.log.Error("creating a stream's log", zap.String("queue", name), zap.Error(err))
				return amqp.Errorf(amqp.InternalError, "cannot create the log of stream '%s' in vhost '%s'", name, v.Name)
			}
			if ch.conn.group != 0 {
				v.replicateStream(q, ch.conn.group, ch.conn.members) // declared through the cluster
			}
		} else if ch.conn.group != 0 {
			q = v.newReplicatedQueue(cfg, ch.conn.group, ch.conn.members)
		} else {
			q = v.newQueue(cfg, owner)
		}
		if h := ch.conn.home; h != "" && !q.replicated() {
			q.setHome(h) // declared through the cluster by that node (meta.go)
		}
		v.persistQueue(q)
		if q.repl != nil {
			go q.repl.start()
		}
		if q.srepl != nil {
			go q.srepl.start()
		}
	}
	v.mu.Unlock()
	if q.Durable {
		v.syncDefs()
	}
	q.Touch()
	ready, _, consumers := q.Counts()
	ch.lastQueue = name
	if !m.NoWait {
		ch.sendMethod(&amqp.QueueDeclareOk{Queue: name, MessageCount: uint32(ready), ConsumerCount: uint32(consumers)})
	}
	return nil
}

func (ch *channel) queueBind(m *amqp.QueueBind) error {
	q, err := ch.queueFor(permWrite, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.mayExchange(permRead, m.Exchange); err != nil {
		return err
	}
	v := ch.vhost()
	key := m.RoutingKey
	if m.Queue == "" && key == "" {
		key = q.Name // spec: empty queue and key bind by the last queue's name
	}
	if m.Exchange == "" {
		return errDefaultExchange()
	}
	v.mu.Lock()
	x, ok := v.exchanges[m.Exchange]
	if !ok {
		v.mu.Unlock()
		return errNoExchange(m.Exchange, v.Name)
	}
	if err := validateBindArgs(x, m.RoutingKey, m.Arguments); err != nil {
		v.mu.Unlock()
		return err
	}
	if v.queues[q.Name] != q {
		v.mu.Unlock()
		return errNoQueue(q.Name, v.Name)
	}
	v.bind(x, q, key, m.Arguments)
	v.mu.Unlock()
	if q.Durable && x.Durable {
		v.syncDefs()
	}
	if !m.NoWait {
		ch.sendMethod(&amqp.QueueBindOk{})
	}
	return nil
}

func (ch *channel) queueUnbind(m *amqp.QueueUnbind) error {
	q, err := ch.queueFor(permWrite, m.Queue)
	if err != nil {
		return err
	}
	if err := ch.mayExchange(permRead, m.Exchange); err != nil {
		return err
	}
	if m.Exchange == "" {
		return errDefaultExchange()
	}
	v := ch.vhost()
	v.mu.Lock()
	x, ok := v.exchanges[m.Exchange]
	if !ok {
		v.mu.Unlock()
		return errNoExchange(m.Exchange, v.Name)
	}
	v.unbind(x, q, m.RoutingKey, m.Arguments)
	v.mu.Unlock()
	if q.Durable && x.Durable {
		v.syncDefs()
	}
	ch.sendMethod(&amqp.QueueUnbindOk{})
	return nil
}

func (ch *channel) queuePurge(m *amqp.QueuePurge) error {
	q, err := ch.queueFor(permRead, m.Queue)
	if err != nil {
		return err
	}
	if q.IsStream() {
		return errStreamUnsupported("queue.purge", q, ch.vhost().Name)
	}
	var n int
	if q.remote(ch.vhost().node) {
		purged, _, err := ch.remoteCounts(q, peerPurge)
		if err != nil {
			return err
		}
		n = int(purged)
	} else {
		n = q.Purge()
	}
	if !m.NoWait {
		ch.sendMethod(&amqp.QueuePurgeOk{MessageCount: uint32(n)})
	}
	return nil
}

// checkDeletable refuses a queue.delete whose if-unused or if-empty fails,
// with the queue's counts from its home node.
func (ch *channel) checkDeletable(m *amqp.QueueDelete) error {
	q, err := ch.queueFor(permConfigure, m.Queue)
	if err != nil {
		return nil // the delete itself answers (a missing queue is deleted quietly)
	}
	v := ch.vhost()
	ready, _, consumers := q.Counts()
	if q.remote(v.node) {
		r, c, err := ch.remoteCounts(q, peerCount)
		if err != nil {
			return err
		}
		ready, consumers = int(r), int(c)
	}
	if m.IfUnused && consumers > 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "queue '%s' in vhost '%s' in use", q.Name, v.Name)
	}
	if m.IfEmpty && ready > 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "queue '%s' in vhost '%s' is not empty", q.Name, v.Name)
	}
	return nil
}

func (ch *channel) queueDelete(m *amqp.QueueDelete) error {
	q, err := ch.queueFor(permConfigure, m.Queue)
	if err != nil {
		if ae, ok := err.(*amqp.Error); ok && ae.Code == amqp.NotFound && m.Queue != "" {
			// Deleting a missing queue succeeds quietly (RabbitMQ 3.x).
			if !m.NoWait {
				ch.sendMethod(&amqp.QueueDeleteOk{})
			}
			return nil
		}
		return err
	}
	v := ch.vhost()
	ready, _, consumers := q.Counts()
	if m.IfUnused && consumers > 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "queue '%s' in vhost '%s' in use", q.Name, v.Name)
	}
	if m.IfEmpty && ready > 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "queue '%s' in vhost '%s' is not empty", q.Name, v.Name)
	}
	if q.owner != nil {
		q.owner.removeExclusive(q)
	}
	ch.holdCancelNotifications()
	defer ch.releaseCancelNotifications()
	n := v.deleteQueue(q)
	if q.Durable {
		v.syncDefs()
	}
	if !m.NoWait {
		ch.sendMethod(&amqp.QueueDeleteOk{MessageCount: uint32(n)})
	}
	return nil
}
