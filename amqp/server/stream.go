package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/queue/stream"
)

// Stream queues (x-queue-type stream) as a client sees RabbitMQ's over AMQP
// 0-9-1 (https://www.rabbitmq.com/streams.html): durable only, never
// exclusive, auto-delete or server-named; consumers must set a prefetch and
// ack manually, and an ack gives back credit without removing anything;
// basic.get, queue.purge, auto-ack, global QoS, nack and reject are
// refused. The queue package keeps the log (queue.NewStream, queue/stream);
// this file holds the protocol side. Texts are RabbitMQ 3.10.8's.

// maxSegmentSize is RabbitMQ's bound on x-stream-max-segment-size-bytes.
const maxSegmentSize = 3_000_000_000

// streamArgs are the arguments a redeclare of a stream must repeat, in
// the order RabbitMQ compares them; others (a classic queue's) are taken
// and ignored, as RabbitMQ does.
var streamArgs = []string{"x-queue-type", "x-max-length-bytes", "x-max-age", "x-stream-max-segment-size-bytes",
	"x-initial-cluster-size", "x-queue-leader-locator"}

// streamOnlyArgs are refused on a new classic or quorum queue.
var streamOnlyArgs = []string{"x-max-age", "x-stream-max-segment-size-bytes"}

// streamRefusedArgs are other queues' arguments that a new stream refuses
// (RabbitMQ 3.10.8); others, unknown ones included, pass.
var streamRefusedArgs = []string{"x-max-length", "x-max-priority", "x-message-ttl", "x-expires",
	"x-dead-letter-exchange", "x-dead-letter-routing-key", "x-overflow", "x-single-active-consumer",
	"x-delivery-limit", "x-queue-mode", "x-queue-master-locator", "x-queue-version",
	"x-dead-letter-strategy", "x-quorum-initial-group-size", "x-max-in-memory-length"}

// validateStreamArgs checks a stream's arguments at declare.
func validateStreamArgs(args amqp.Table, name, vhost string) error {
	for _, k := range []string{"x-max-length-bytes", "x-stream-max-segment-size-bytes", "x-stream-filter-size-bytes"} {
		v, ok := args[k]
		if !ok {
			continue
		}
		n, ok := amqp.Int(v)
		if !ok {
			return invalidArg(k, name, vhost, fmt.Sprintf("\"expected integer, got %s\"", fieldTypeName(v)))
		}
		if n < 0 {
			return invalidArg(k, name, vhost, fmt.Sprintf("{value_negative,%d}", n))
		}
		if k == "x-stream-max-segment-size-bytes" && n > maxSegmentSize {
			return amqp.Errorf(amqp.PreconditionFailed, "Exceeded max value for x-stream-max-segment-size-bytes")
		}
	}
	if v, ok := args["x-max-age"]; ok {
		s, isStr := v.(string)
		if !isStr {
			return invalidArg("x-max-age", name, vhost, fmt.Sprintf("{unacceptable_type,%s}", fieldTypeName(v)))
		}
		if _, ok := queue.ParseStreamAge(s); !ok {
			return invalidArg("x-max-age", name, vhost, "invalid_max_age")
		}
	}
	return nil
}

// streamAge checks the max-age policy key.
func streamAge(v any) (any, bool) {
	s, ok := v.(string)
	if !ok {
		return v, false
	}
	_, ok = queue.ParseStreamAge(s)
	return s, ok
}

// checkTypeArgs refuses, for a queue about to be created, the arguments
// of another queue type that its type does not take, as RabbitMQ does: a
// stream's on a classic or quorum queue, most others' on a stream.
func checkTypeArgs(args amqp.Table, name, vhost string) error {
	refused, typ := streamOnlyArgs, "rabbit_classic_queue"
	switch {
	case isQuorum(args):
		typ = "rabbit_quorum_queue"
	case queue.IsStream(args):
		refused, typ = streamRefusedArgs, "rabbit_stream_queue"
	}
	for _, k := range refused {
		if _, ok := args[k]; ok {
			return amqp.Errorf(amqp.PreconditionFailed, "invalid arg '%s' for queue '%s' in vhost '%s' of queue type %s", k, name, vhost, typ)
		}
	}
	return nil
}

// errServerNamedStream is RabbitMQ's refusal of a stream with no name.
func errServerNamedStream() error {
	return amqp.Errorf(amqp.PreconditionFailed, "Cannot declare a server-named queue for type rabbit_stream_queue")
}

func errStreamUnsupported(what string, q *Queue, vhost string) error {
	return amqp.Errorf(amqp.NotImplemented, "%s not supported by stream queues queue '%s' in vhost '%s'", what, q.Name, vhost)
}

// checkStreamConsume refuses what a stream consumer may not do and checks
// its x-stream-offset.
func (ch *channel) checkStreamConsume(q *Queue, m *amqp.BasicConsume) error {
	vhost := ch.vhost().Name
	if m.NoAck {
		return errStreamUnsupported("automatic acknowledgement", q, vhost)
	}
	if ch.prefetch <= 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "consumer prefetch count is not set for 'queue '%s' in vhost '%s''", q.Name, vhost)
	}
	if ch.globalPrefetch.Load() > 0 {
		return errGlobalQoS(q, vhost)
	}
	if v, ok := m.Arguments["x-stream-offset"]; ok {
		if _, ok := queue.ParseStreamOffset(v, time.Now()); !ok {
			return invalidArg("x-stream-offset", q.Name, vhost, fmt.Sprintf("{invalid_stream_offset_arg,{%s,%s}}", fieldTypeName(v), erlangValue(v)))
		}
	}
	return checkStreamTracking(m.Arguments, q.Name, vhost)
}

// checkStreamTracking checks a named stream consumer's arguments
// (Warren's, queue/streamtrack.go): x-stream-consumer-name a string of 1
// to 255 bytes, x-stream-automatic-offset-tracking a boolean.
func checkStreamTracking(args amqp.Table, name, vhost string) error {
	if v, ok := args[queue.StreamConsumerNameArg]; ok {
		s, isStr := v.(string)
		switch {
		case !isStr:
			return invalidArg(queue.StreamConsumerNameArg, name, vhost, fmt.Sprintf("{unacceptable_type,%s}", fieldTypeName(v)))
		case s == "" || len(s) > stream.MaxNameLen:
			return invalidArg(queue.StreamConsumerNameArg, name, vhost, fmt.Sprintf("\"a name of 1 to %d bytes expected\"", stream.MaxNameLen))
		}
	}
	if v, ok := args[queue.StreamAutoTrackingArg]; ok {
		if _, isBool := v.(bool); !isBool {
			return invalidArg(queue.StreamAutoTrackingArg, name, vhost, fmt.Sprintf("{unacceptable_type,%s}", fieldTypeName(v)))
		}
	}
	return nil
}

// ForgetStreamConsumer forgets the stored offset of the named consumer
// consumer of stream queue in vhost, for user, who needs configure
// permission on the queue (as to delete it). found is false when there is
// no such stream or name.
func (s *Server) ForgetStreamConsumer(user, vhost, queue, consumer string) (found bool, err error) {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil {
		return false, ErrAccessRefused
	}
	if err := s.newChecker(u, vhost).check(permConfigure, "queue", queue); err != nil {
		return false, err
	}
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		q := v.queues[queue]
		v.mu.RUnlock()
		if q != nil {
			return q.ForgetStreamConsumer(consumer), nil
		}
	}
	return false, nil
}

// erlangValue prints v as RabbitMQ's error texts show a value.
func erlangValue(v any) string {
	if s, ok := v.(string); ok {
		return "<<" + strconv.Quote(s) + ">>"
	}
	return fmt.Sprint(v)
}

// streamDir is where stream queue id keeps its log: <data dir>/streams/<id>
// with a store, else under a temporary directory removed at shutdown
// (a broker without a store keeps nothing across restarts).
func (s *Server) streamDir(id uint64) (string, error) {
	s.streamsOnce.Do(func() {
		if s.store != nil && s.cfg.DataDir != "" {
			s.streamsRoot = filepath.Join(s.cfg.DataDir, "streams")
			return
		}
		dir, err := os.MkdirTemp("", "warren-streams-")
		if err != nil {
			s.streamsErr = err
			return
		}
		s.streamsRoot, s.streamsTemp = dir, true
	})
	if s.streamsErr != nil {
		return "", s.streamsErr
	}
	return filepath.Join(s.streamsRoot, queue.StreamDirName(id)), nil
}

// removeStreamsTemp removes the temporary streams directory at shutdown.
func (s *Server) removeStreamsTemp() {
	s.streamsOnce.Do(func() {}) // orders the reads after a first use
	if s.streamsTemp {
		os.RemoveAll(s.streamsRoot)
	}
}

// sweepStreams removes the logs of streams that no longer exist (deleted
// while the broker was down, or half-deleted by a crash).
func (s *Server) sweepStreams(live map[uint64]bool) {
	if s.store == nil || s.cfg.DataDir == "" {
		return
	}
	root := filepath.Join(s.cfg.DataDir, "streams")
	ents, err := os.ReadDir(root)
	if err != nil {
		return // none yet
	}
	for _, e := range ents {
		id, err := strconv.ParseUint(e.Name(), 10, 64)
		if err != nil || live[id] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(root, e.Name())); err != nil {
			s.log.Sugar().Warnf("removing the log of deleted stream %d: %v", id, err)
		}
	}
}

// newStreamQueue opens the log of a stream queue and builds the queue,
// wired to this vhost as newQueue wires others; cfg.ID is assigned when
// zero (a declare) and kept when set (a restore). Lock must be held.
func (v *Vhost) newStreamQueue(cfg queue.Config) (*Queue, error) {
	if cfg.ID == 0 {
		cfg.ID = v.nextQueueID()
	}
	dir, err := v.srv.streamDir(cfg.ID)
	if err != nil {
		return nil, err
	}
	cfg.StreamDir = dir
	p, def := v.queuePolicy(cfg.Name)
	cfg.Policy = def
	qq, err := queue.NewStream(cfg)
	if err != nil {
		return nil, err
	}
	q := &Queue{Queue: qq, srv: v.srv}
	q.setHome(v.node)
	q.policy.Store(p)
	v.attachQueue(q)
	return q, nil
}
