package server

import (
	"time"

	"github.com/warren-mq/warren/amqp"
)

// Consumer timeout (RabbitMQ core since 3.8.15; per queue since 3.12): a
// delivery left unacknowledged longer than the timeout closes its channel
// with 406 and requeues the channel's deliveries, so a stuck worker does not
// hold messages for ever. The timeout is the queue's x-consumer-timeout
// argument, else its policy's consumer-timeout, else Config.ConsumerTimeout
// (default 30 minutes, as RabbitMQ's consumer_timeout); 0 or false turns it
// off.
//
// It costs no timer per delivery: a delivery records the coarse clock (one
// atomic load), and one goroutine per server ticks every sweepInterval,
// advancing the clock and looking at each channel's oldest unacked delivery
// only (deliveries are kept in tag order), as RabbitMQ's channel tick
// evaluates the head of its unacked queue (rabbit_channel
// evaluate_consumer_timeout). RabbitMQ ticks once a minute
// (channel_tick_interval); Warren every second.

// defaultConsumerTimeout is RabbitMQ's consumer_timeout default.
const defaultConsumerTimeout = 30 * time.Minute

// sweepInterval is how often channels are checked, and the clock's grain.
const sweepInterval = time.Second

// consumerTimeoutText is RabbitMQ 3.10.8's text (observed with
// consumer_timeout 2000, for a consumer and for basic.get alike).
const consumerTimeoutText = "delivery acknowledgement on channel %d timed out. Timeout value used: %d ms. This timeout value can be configured, see consumers doc guide to learn more"

// timeoutValue reads a consumer timeout setting: milliseconds, with 0 or
// false for off (returned as 0); ok is false for anything else.
func timeoutValue(v any) (int64, bool) {
	if b, isBool := v.(bool); isBool {
		return 0, !b
	}
	if n, isInt := amqp.Int(v); isInt {
		return n, n >= 0
	}
	if n, isNum := policyInt(v); isNum {
		return n, n >= 0
	}
	return 0, false
}

// policyTimeout validates the consumer-timeout policy key.
func policyTimeout(v any) (any, bool) {
	n, ok := timeoutValue(v)
	return n, ok
}

// consumerTimeout is the timeout in ms that applies to deliveries from q;
// 0 is off.
func (s *Server) consumerTimeout(q *Queue) int64 {
	if v, ok := q.Args["x-consumer-timeout"]; ok {
		if n, ok := timeoutValue(v); ok {
			return n
		}
	}
	if p := q.policy.Load(); p != nil {
		if v, ok := p.Definition["consumer-timeout"]; ok {
			if n, ok := timeoutValue(v); ok {
				return n
			}
		}
	}
	if s.cfg.ConsumerTimeout < 0 {
		return 0
	}
	return s.cfg.ConsumerTimeout.Milliseconds()
}

// sweepConsumerTimeouts runs until stop is closed.
func (s *Server) sweepConsumerTimeouts(stop <-chan struct{}) {
	defer s.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			s.clock.Store(now.UnixMilli())
			s.sweepOnce(now.UnixMilli())
		}
	}
}

func (s *Server) sweepOnce(now int64) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		snap := c.chanSnap.Load()
		if snap == nil {
			continue
		}
		expired := false
		for _, ch := range *snap {
			if t := ch.oldestOverdue(now); t > 0 {
				ch.timedOut.Store(t)
				expired = true
			}
		}
		if expired {
			c.wakeForTimeout()
		}
	}
}

// oldestOverdue returns the timeout (ms) the channel's oldest unacked
// delivery has exceeded, or 0. A delivery's stamp is up to one sweep
// interval older than the delivery, so the check allows one more interval:
// a channel is never closed early.
func (ch *channel) oldestOverdue(now int64) int64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed || ch.unackedHead >= len(ch.unacked) {
		return 0
	}
	e := &ch.unacked[ch.unackedHead]
	t := ch.conn.srv.consumerTimeout(e.q)
	if t > 0 && now-e.at >= t+sweepInterval.Milliseconds() {
		return t
	}
	return 0
}

// wakeForTimeout makes the reader close the channels marked timed out: at
// its next frame, or at once if it is waiting for input. A read deadline
// in the past wakes it, and is set only while it waits between frames (a
// timeout in the middle of a frame would lose the frame's start).
func (c *conn) wakeForTimeout() {
	select {
	case c.timeoutKick <- struct{}{}:
	default:
	}
	c.rmu.Lock()
	if c.blocked {
		c.woken = true
		c.nc.SetReadDeadline(time.Now())
	}
	c.rmu.Unlock()
}

// waitInput blocks until input arrives or a wake-up (reader only, with
// nothing buffered). The frame is read after; should input and a wake-up
// cross, the reader's own deadline is put back before it reads on.
// deadlineSet is when the heartbeat deadline was last set (zero: none).
// It reports true, without waiting, when a wake-up is already pending.
func (c *conn) waitInput(deadlineSet time.Time) bool {
	c.rmu.Lock()
	if len(c.timeoutKick) > 0 {
		c.rmu.Unlock()
		return true
	}
	c.blocked = true
	c.rmu.Unlock()
	_, err := c.br.Peek(1)
	c.rmu.Lock()
	c.blocked = false
	if c.woken && err == nil {
		var d time.Time
		if c.heartbeat > 0 {
			d = deadlineSet.Add(c.heartbeat * 2)
		}
		c.nc.SetReadDeadline(d)
	}
	c.woken = false
	c.rmu.Unlock()
	return false
}

// closeTimedOut closes, on the reader goroutine, the channels the sweep
// marked: 406 with RabbitMQ's text; release requeues their deliveries.
func (c *conn) closeTimedOut() {
	for _, ch := range c.channels {
		if t := ch.timedOut.Swap(0); t > 0 && ch.state != chanClosing {
			ch.closeWith(amqp.Errorf(amqp.PreconditionFailed, consumerTimeoutText, ch.id, t))
		}
	}
}
