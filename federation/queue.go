package federation

import (
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/shovel"
)

// A queue link (rabbit_federation_queue_link) consumes from the upstream
// queue only while the federated queue is empty and has consumers
// (RabbitMQ's consumer_state_changed: run, else pause), with priority -1
// so that the upstream's own consumers go first, and publishes what it
// gets into the queue through the default exchange.

// pollEvery is how often a queue link looks at its queue's state.
const pollEvery = 100 * time.Millisecond

// wantsMessages is RabbitMQ's run condition for a federated queue.
func (l *link) wantsMessages() bool {
	q, ok := l.m.srv.Queue(l.key.vhost, l.key.name)
	return ok && q.Ready == 0 && len(q.Consumers) > 0
}

func (l *link) queueSession(s *session) error {
	closed := s.closed()
	upQ := l.upstreamName()
	// Declared as the local queue is when it is missing.
	if err := shovel.EnsureQueue(s.up, upQ, l.target().queueArgs); err != nil {
		return fmt.Errorf("upstream queue %q: %w", upQ, err)
	}
	l.setStatus("running", l.connectionName(), "", s.ep)
	l.log.Info("federation link running", zap.String("uri", s.ep.Redacted()))

	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var deliveries <-chan amqp.Delivery
	consuming := false
	for {
		select {
		case <-l.ctx.Done():
			s.settle()
			return l.ctx.Err()
		case err := <-closed:
			return err
		case <-l.update:
		case <-tick.C:
			run := l.wantsMessages()
			switch {
			case run && !consuming && deliveries == nil: // the last consumer's deliveries all forwarded
				d, err := s.uch.Consume(upQ, l.up.ConsumerTag, l.up.AckMode == NoAck, false, false, false,
					amqp.Table{"x-priority": int32(-1)})
				if err != nil {
					return fmt.Errorf("consuming from upstream queue %q: %w", upQ, err)
				}
				deliveries, consuming = d, true
			case !run && consuming:
				if err := s.uch.Cancel(l.up.ConsumerTag, false); err != nil {
					return err
				}
				consuming = false
			}
		case dl, ok := <-deliveries:
			if !ok {
				deliveries = nil // cancelled (by us, or the upstream queue went)
				if consuming {
					return fmt.Errorf("upstream consumer on %q cancelled", upQ)
				}
				continue
			}
			hdr := s.queueHeaders(&dl)
			if err := s.forward(&dl, "", l.key.name, hdr); err != nil {
				return err
			}
		case c, ok := <-s.confirms:
			if err := s.confirmed(c, ok); err != nil {
				return err
			}
		}
	}
}

// queueHeaders is the queue link's update_headers: the first hop records
// where the message was first published (x-original-exchange and
// x-original-routing-key), every hop counts its visits from this upstream,
// and CC becomes x-original-cc so that it is not routed on again.
func (s *session) queueHeaders(dl *amqp.Delivery) amqp.Table {
	h := amqp.Table{}
	for k, v := range dl.Headers {
		if k == "CC" {
			k = "x-original-cc"
		}
		h[k] = v
	}
	hop := amqp.Table{"uri": s.ep.Redacted(), "queue": s.l.key.name, "redelivered": dl.Redelivered}
	count := int64(0)
	been, ok := h[server.FederationHeader].([]any)
	if !ok {
		h["x-original-exchange"] = dl.Exchange
		h["x-original-routing-key"] = dl.RoutingKey
	} else {
		var rest []any
		for _, e := range been {
			t, isTable := e.(amqp.Table)
			if isTable && t["uri"] == hop["uri"] && t["queue"] == hop["queue"] {
				count, _ = toInt(t["visit-count"])
				continue
			}
			rest = append(rest, e)
		}
		h[server.FederationHeader] = rest
	}
	hop["visit-count"] = count + 1
	return receivedFrom(h, hop)
}
