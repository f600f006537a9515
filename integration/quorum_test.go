package integration

// Quorum queues (x-queue-type quorum) as an AMQP 0-9-1 client and the
// management API observe them, as RabbitMQ 3.10.8 shows them (these tests
// pass against it). Where RabbitMQ 4.x differs and Warren follows 4.x (a
// default delivery limit, message priorities), the 4.x behaviour is stated
// in Warren-only tests.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// typedArgs is x-queue-type kind with extra.
func typedArgs(kind string, extra amqp.Table) amqp.Table {
	a := amqp.Table{"x-queue-type": kind}
	for k, v := range extra {
		a[k] = v
	}
	return a
}

// declareTyped declares the durable queue b.name(base) of type kind with
// args, deleted when the test ends.
func declareTyped(t *testing.T, b *broker, ch *amqp.Channel, kind, base string, args amqp.Table) string {
	t.Helper()
	q := b.name(base)
	_, err := ch.QueueDeclare(q, true, false, false, false, typedArgs(kind, args))
	require.NoError(t, err)
	deleteAfter(t, b, q)
	return q
}

// quorumArgs is x-queue-type quorum with extra.
func quorumArgs(extra amqp.Table) amqp.Table { return typedArgs("quorum", extra) }

// declareQuorum declares the durable quorum queue b.name(base) with args,
// deleted when the test ends.
func declareQuorum(t *testing.T, b *broker, ch *amqp.Channel, base string, args amqp.Table) string {
	t.Helper()
	return declareTyped(t, b, ch, "quorum", base, args)
}

// declareClassic declares the durable classic queue b.name(base), deleted
// when the test ends.
func declareClassic(t *testing.T, b *broker, ch *amqp.Channel, base string) string {
	t.Helper()
	q := b.name(base)
	_, err := ch.QueueDeclare(q, true, false, false, false, nil)
	require.NoError(t, err)
	deleteAfter(t, b, q)
	return q
}

// deleteAfter deletes queue q when the test ends, on a connection of its
// own (the test's may be closed by then).
func deleteAfter(t *testing.T, b *broker, q string) {
	t.Cleanup(func() {
		c, err := amqp.Dial(b.url)
		if err != nil {
			return
		}
		defer c.Close()
		if ch, err := c.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
		}
	})
}

// confirmed publishes p to q on a channel in confirm mode and returns
// whether the broker acked it (false: nacked).
func confirmed(t *testing.T, ch *amqp.Channel, q string, p amqp.Publishing) bool {
	t.Helper()
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", q, false, false, p)
	require.NoError(t, err)
	ok, err := dc.WaitContext(context.Background())
	require.NoError(t, err)
	return ok
}

// confirmChannel opens a channel in confirm mode.
func confirmChannel(t *testing.T, b *broker) *amqp.Channel {
	t.Helper()
	_, ch := b.channel(t)
	require.NoError(t, ch.Confirm(false))
	return ch
}

// bodies basic.gets (no-ack) everything in q, in order.
func bodies(t *testing.T, ch *amqp.Channel, q string) []string {
	t.Helper()
	var got []string
	for {
		d, ok, err := ch.Get(q, true)
		require.NoError(t, err)
		if !ok {
			return got
		}
		got = append(got, string(d.Body))
	}
}

// getOne basic.gets one message from q, which must have one.
func getOne(t *testing.T, ch *amqp.Channel, q string, autoAck bool) amqp.Delivery {
	t.Helper()
	d, ok, err := ch.Get(q, autoAck)
	require.NoError(t, err)
	require.True(t, ok, "a message in %s", q)
	return d
}

// requireDeath checks the dead-lettering headers RabbitMQ puts on a
// message dead-lettered once from q through the default exchange.
func requireDeath(t *testing.T, d amqp.Delivery, q, reason string) amqp.Table {
	t.Helper()
	deaths, ok := d.Headers["x-death"].([]any)
	require.True(t, ok, "x-death in %v", d.Headers)
	require.Len(t, deaths, 1)
	death, ok := deaths[0].(amqp.Table)
	require.True(t, ok, "x-death[0] is a table: %T", deaths[0])
	require.Equal(t, int64(1), death["count"])
	require.Equal(t, "", death["exchange"])
	require.Equal(t, q, death["queue"])
	require.Equal(t, reason, death["reason"])
	require.Equal(t, []any{q}, death["routing-keys"])
	require.Contains(t, death, "time")
	require.Equal(t, "", d.Headers["x-first-death-exchange"])
	require.Equal(t, q, d.Headers["x-first-death-queue"])
	require.Equal(t, reason, d.Headers["x-first-death-reason"])
	return death
}

func precondition(format string, a ...any) string {
	return "PRECONDITION_FAILED - " + fmt.Sprintf(format, a...)
}

// TestQuorumDeclareRefusedProperties: a quorum queue is durable, named and
// owned by no connection; RabbitMQ refuses any other declare with 406,
// naming the first offending property (exclusive before non-durable,
// auto-delete before both), and a server-named one before any.
func TestQuorumDeclareRefusedProperties(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, c := range []struct {
		name                          string
		named, durable, auto, exclusv bool
		reason                        string // for the queue's name and vhost
	}{
		{"non-durable", true, false, false, false, "invalid property 'non-durable' for queue '%s' in vhost '%s'"},
		{"exclusive", true, true, false, true, "invalid property 'exclusive-owner' for queue '%s' in vhost '%s'"},
		{"auto-delete", true, true, true, false, "invalid property 'auto-delete' for queue '%s' in vhost '%s'"},
		{"non-durable exclusive", true, false, false, true, "invalid property 'exclusive-owner' for queue '%s' in vhost '%s'"},
		{"non-durable auto-delete", true, false, true, false, "invalid property 'auto-delete' for queue '%s' in vhost '%s'"},
		{"exclusive auto-delete", true, true, true, true, "invalid property 'auto-delete' for queue '%s' in vhost '%s'"},
		{"server-named", false, true, false, false, "Cannot declare a server-named queue for type rabbit_quorum_queue"},
		{"server-named exclusive", false, false, true, true, "Cannot declare a server-named queue for type rabbit_quorum_queue"},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := ""
			if c.named {
				q = b.name("q")
				deleteAfter(t, b, q)
			}
			_, ch := b.channel(t)
			_, err := ch.QueueDeclare(q, c.durable, c.auto, c.exclusv, false, quorumArgs(nil))
			want := c.reason
			if c.named {
				want = fmt.Sprintf(c.reason, q, b.vhost)
			}
			require.Equal(t, "PRECONDITION_FAILED - "+want, amqpErr(t, err, 406).Reason)
			if c.named { // nothing was made
				_, ch = b.channel(t)
				_, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
				require.Equal(t, fmt.Sprintf("NOT_FOUND - no queue '%s' in vhost '%s'", q, b.vhost), amqpErr(t, err, 404).Reason)
			}
		})
	}
}

// TestQuorumRedeclare: the queue type is an argument like the others: a
// redeclare must repeat it, and a classic queue cannot become a quorum one.
func TestQuorumRedeclare(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", nil)
	st, err := ch.QueueDeclare(q, true, false, false, false, quorumArgs(nil))
	require.NoError(t, err)
	require.Equal(t, amqp.Queue{Name: q}, st)
	publish(t, ch, "", q, body("m"))
	waitReady(t, ch, q, 1)
	st, err = ch.QueueDeclarePassive(q, false, false, false, false, nil) // passive: no arguments needed
	require.NoError(t, err)
	require.Equal(t, amqp.Queue{Name: q, Messages: 1}, st)

	c := declareClassic(t, b, ch, "classic")
	for _, r := range []struct {
		name    string
		q       string
		durable bool
		args    amqp.Table
		reason  string
	}{
		{"as classic", q, true, amqp.Table{"x-queue-type": "classic"},
			"inequivalent arg 'x-queue-type' for queue '%s' in vhost '%s': received 'classic' but current is 'quorum'"},
		{"without x-queue-type", q, true, nil,
			"inequivalent arg 'x-queue-type' for queue '%s' in vhost '%s': received none but current is the value 'quorum' of type 'longstr'"},
		{"non-durable", q, false, quorumArgs(nil),
			"inequivalent arg 'durable' for queue '%s' in vhost '%s': received 'false' but current is 'true'"},
		{"with another argument", q, true, quorumArgs(amqp.Table{"x-max-length": int32(5)}),
			"inequivalent arg 'x-max-length' for queue '%s' in vhost '%s': received the value '5' of type 'signedint' but current is none"},
		{"classic as quorum", c, true, quorumArgs(nil),
			"inequivalent arg 'x-queue-type' for queue '%s' in vhost '%s': received the value 'quorum' of type 'longstr' but current is none"},
	} {
		t.Run(r.name, func(t *testing.T) {
			_, ch := b.channel(t)
			_, err := ch.QueueDeclare(r.q, r.durable, false, false, false, r.args)
			require.Equal(t, precondition(r.reason, r.q, b.vhost), amqpErr(t, err, 406).Reason)
		})
	}
	_, ch = b.channel(t)
	require.Equal(t, "m", getBody(t, ch, q), "the refused redeclares left the queue as it was")
}

// TestQuorumDeclareArguments: the arguments RabbitMQ 3.10.8 takes and
// refuses for a quorum queue.
func TestQuorumDeclareArguments(t *testing.T) {
	b := startBroker(t, server.Config{})
	accepted := map[string]amqp.Table{
		"message-ttl":                 {"x-message-ttl": int32(60000)}, // since 3.10
		"expires":                     {"x-expires": int32(3600000)},
		"max-length":                  {"x-max-length": int32(10)},
		"max-length-bytes":            {"x-max-length-bytes": int64(1 << 20)},
		"overflow drop-head":          {"x-overflow": "drop-head"},
		"overflow reject-publish":     {"x-overflow": "reject-publish"},
		"overflow reject-publish-dlx": {"x-overflow": "reject-publish-dlx"}, // accepted, applied as drop-head (TestQuorumMaxLength)
		"delivery-limit":              {"x-delivery-limit": int32(2)},
		"delivery-limit -1":           {"x-delivery-limit": int32(-1)},
		"dead-letter":                 {"x-dead-letter-exchange": "dlx", "x-dead-letter-routing-key": "k"},
		"at-most-once":                {"x-dead-letter-strategy": "at-most-once"},
		"at-least-once":               {"x-dead-letter-strategy": "at-least-once"}, // without reject-publish too
		"single-active-consumer":      {"x-single-active-consumer": true},
		"initial-group-size":          {"x-quorum-initial-group-size": int32(3)}, // more than the nodes there are
		"leader-locator":              {"x-queue-leader-locator": "balanced"},
		"unknown argument":            {"x-no-such-thing": "x"},
	}
	for name, args := range accepted {
		t.Run(name, func(t *testing.T) {
			_, ch := b.channel(t)
			q := declareQuorum(t, b, ch, "q", args)
			st, err := ch.QueueDeclare(q, true, false, false, false, quorumArgs(args))
			require.NoError(t, err, "redeclared the same")
			require.Equal(t, q, st.Name)
		})
	}
	const ofType = "invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue"
	for name, r := range map[string]struct {
		args   amqp.Table
		reason string // for the argument (when it names it), the queue and the vhost
	}{
		"max-priority":      {amqp.Table{"x-max-priority": int32(5)}, ofType},
		"queue-mode":        {amqp.Table{"x-queue-mode": "lazy"}, ofType},
		"master-locator":    {amqp.Table{"x-queue-master-locator": "min-masters"}, ofType},
		"queue-version":     {amqp.Table{"x-queue-version": int32(2)}, ofType},
		"group size 0":      {amqp.Table{"x-quorum-initial-group-size": int32(0)}, "invalid arg 'x-quorum-initial-group-size' for queue '%[2]s' in vhost '%[3]s': {value_zero,0}"},
		"dead-letter-strat": {amqp.Table{"x-dead-letter-strategy": "sometimes"}, "invalid arg 'x-dead-letter-strategy' for queue '%[2]s' in vhost '%[3]s': invalid_dlx_strategy"},
	} {
		t.Run(name, func(t *testing.T) {
			var arg string
			for k := range r.args {
				arg = k
			}
			q := b.name("q")
			deleteAfter(t, b, q)
			_, ch := b.channel(t)
			_, err := ch.QueueDeclare(q, true, false, false, false, quorumArgs(r.args))
			require.Equal(t, precondition(r.reason, arg, q, b.vhost), amqpErr(t, err, 406).Reason)
		})
	}
	t.Run("unknown queue type", func(t *testing.T) {
		q := b.name("q")
		deleteAfter(t, b, q)
		_, ch := b.channel(t)
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "bogus"})
		require.Equal(t, precondition("invalid arg 'x-queue-type' for queue '%s' in vhost '%s': \"unsupported queue type 'bogus'\"", q, b.vhost),
			amqpErr(t, err, 406).Reason)
	})
}

// TestQuorumGlobalQos: a quorum queue has no channel-wide prefetch: a
// consumer on a channel with a global prefetch count is refused with a
// connection error, 540. A global prefetch of 0 (none) is fine, and so is
// basic.get.
func TestQuorumGlobalQos(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", nil)
	reason := fmt.Sprintf("NOT_IMPLEMENTED - queue '%s' in vhost '%s' does not support global qos", q, b.vhost)

	for name, local := range map[string]int{"global": 0, "local and global": 1} {
		t.Run(name, func(t *testing.T) {
			c, ch := b.channel(t)
			closed := c.NotifyClose(make(chan *amqp.Error, 1))
			if local > 0 {
				require.NoError(t, ch.Qos(local, 0, false))
			}
			require.NoError(t, ch.Qos(2, 0, true))
			_, err := ch.Consume(q, "", false, false, false, false, nil)
			ae := amqpErr(t, err, 540)
			require.Equal(t, reason, ae.Reason)
			require.False(t, ae.Recover)
			e := awaitClose(t, closed) // the connection, not just the channel
			require.Equal(t, 540, e.Code)
		})
	}
	t.Run("global prefetch 0", func(t *testing.T) {
		_, ch := b.channel(t)
		require.NoError(t, ch.Qos(0, 0, true))
		ds, err := ch.Consume(q, "", true, false, false, false, nil)
		require.NoError(t, err)
		publish(t, ch, "", q, body("m"))
		require.Equal(t, "m", string(recv(t, ds).Body))
	})
	t.Run("get", func(t *testing.T) {
		_, ch := b.channel(t)
		q := declareQuorum(t, b, ch, "get", nil)
		require.NoError(t, ch.Qos(2, 0, true))
		publish(t, ch, "", q, body("m"))
		waitReady(t, ch, q, 1)
		require.Equal(t, "m", getBody(t, ch, q))
	})
}

// TestQuorumDeliveryLimit: x-delivery-limit N lets a message be returned
// (basic.nack or basic.reject with requeue) N times; the next return drops
// it, or dead-letters it with reason delivery_limit. Redeliveries carry
// x-delivery-count (a long: int64), the returns so far; a first delivery
// to a consumer has no such header, but every basic.get-ok has it (0 the
// first time).
func TestQuorumDeliveryLimit(t *testing.T) {
	b := startBroker(t, server.Config{})

	t.Run("dropped", func(t *testing.T) {
		_, ch := b.channel(t)
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-delivery-limit": int32(2)})
		ds, err := ch.Consume(q, "", false, false, false, false, nil)
		require.NoError(t, err)
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("poison"), Headers: amqp.Table{"h": "v"}})
		d := recv(t, ds)
		require.False(t, d.Redelivered)
		require.Equal(t, amqp.Table{"h": "v"}, d.Headers, "no x-delivery-count on the first delivery")
		require.NoError(t, d.Nack(false, true))
		d = recv(t, ds)
		require.True(t, d.Redelivered)
		require.Equal(t, amqp.Table{"h": "v", "x-delivery-count": int64(1)}, d.Headers)
		require.NoError(t, d.Reject(true))
		d = recv(t, ds)
		require.True(t, d.Redelivered)
		require.Equal(t, amqp.Table{"h": "v", "x-delivery-count": int64(2)}, d.Headers)
		require.NoError(t, d.Nack(false, true)) // the third return: over the limit
		none(t, ds)
		waitReady(t, ch, q, 0)
		publish(t, ch, "", q, body("next"))
		d = recv(t, ds)
		require.Equal(t, "next", string(d.Body))
		require.Nil(t, d.Headers)
		require.NoError(t, d.Ack(false))
	})

	t.Run("dead-lettered", func(t *testing.T) {
		_, ch := b.channel(t)
		dlq := declareClassic(t, b, ch, "dlq")
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-delivery-limit": int32(2),
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("poison"), Headers: amqp.Table{"h": "v"}})
		waitReady(t, ch, q, 1)
		for i := range 3 {
			d := getOne(t, ch, q, false)
			require.Equal(t, i > 0, d.Redelivered)
			require.Equal(t, amqp.Table{"h": "v", "x-delivery-count": int64(i)}, d.Headers, "get %d", i+1)
			if i%2 == 0 {
				require.NoError(t, d.Nack(false, true))
			} else {
				require.NoError(t, d.Reject(true))
			}
		}
		waitReady(t, ch, dlq, 1)
		waitReady(t, ch, q, 0)
		d := getOne(t, ch, dlq, true)
		require.Equal(t, "poison", string(d.Body))
		requireDeath(t, d, q, "delivery_limit")
		require.Equal(t, []string{"h", "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason"},
			slices.Sorted(maps.Keys(d.Headers)), "x-delivery-count is not kept")
	})

	t.Run("limit 0", func(t *testing.T) {
		_, ch := b.channel(t)
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-delivery-limit": int32(0)})
		publish(t, ch, "", q, body("once"))
		waitReady(t, ch, q, 1)
		d := getOne(t, ch, q, false)
		require.Equal(t, amqp.Table{"x-delivery-count": int64(0)}, d.Headers)
		require.NoError(t, d.Nack(false, true))
		waitReady(t, ch, q, 0)
	})

	t.Run("default 20", func(t *testing.T) {
		// RabbitMQ 3.10.8 has no default delivery limit: a message without
		// x-delivery-limit (or a delivery-limit policy) is returned forever.
		// RabbitMQ 4.x sets 20 by default: the 21st return drops or
		// dead-letters it. Warren follows 4.x.
		warrenOnly(t, "RabbitMQ 4.x's default delivery limit of 20 (3.10.8 has none)")
		_, ch := b.channel(t)
		dlq := declareClassic(t, b, ch, "dlq")
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		publish(t, ch, "", q, body("poison"))
		waitReady(t, ch, q, 1)
		for i := range 21 {
			d := getOne(t, ch, q, false)
			require.NoError(t, d.Reject(true), "return %d", i+1)
		}
		waitReady(t, ch, dlq, 1)
		waitReady(t, ch, q, 0)
		requireDeath(t, getOne(t, ch, dlq, true), q, "delivery_limit")
	})
}

// TestQuorumPolicy: a delivery-limit policy applies to a quorum queue, and
// the management API shows it as the queue's effective policy definition
// (the policy's keys as set, whatever the queue's own arguments).
func TestQuorumPolicy(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	dlq := declareClassic(t, b, ch, "dlq")
	q := declareQuorum(t, b, ch, "q", amqp.Table{"x-max-length": int32(10)})

	// RabbitMQ 3.10.8 knows no apply-to but queues, exchanges and all
	// (quorum_queues came with 3.12).
	r := api.do(http.MethodPut, "/api/policies/{vhost}/qq", map[string]any{"pattern": "^" + q + "$", "apply-to": "quorum_queues",
		"definition": map[string]any{"delivery-limit": 1}})
	require.Equal(t, 400, r.status)
	require.Equal(t, map[string]any{"error": "bad_request",
		"reason": "Validation failed\n\napply-to 'quorum_queues' unrecognised; should be 'queues', 'exchanges' or 'all'\n"}, r.obj(t))

	def := map[string]any{"delivery-limit": 1, "max-length": 5, "dead-letter-exchange": "", "dead-letter-routing-key": dlq}
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/poison", map[string]any{"pattern": "^" + q + "$", "apply-to": "queues", "definition": def})
	o := api.await("/api/queues/{vhost}/"+q, "effective_policy_definition",
		map[string]any{"delivery-limit": 1.0, "max-length": 5.0, "dead-letter-exchange": "", "dead-letter-routing-key": dlq})
	require.Equal(t, "poison", o["policy"])
	require.Equal(t, map[string]any{"x-max-length": 10.0, "x-queue-type": "quorum"}, o["arguments"])

	publish(t, ch, "", q, body("poison"))
	waitReady(t, ch, q, 1)
	for i := range 2 {
		d := getOne(t, ch, q, false)
		require.Equal(t, int64(i), d.Headers["x-delivery-count"])
		require.NoError(t, d.Nack(false, true))
	}
	waitReady(t, ch, dlq, 1)
	waitReady(t, ch, q, 0)
	requireDeath(t, getOne(t, ch, dlq, true), q, "delivery_limit")
}

// TestQuorumMaxLength: x-max-length and x-max-length-bytes. drop-head (the
// default) drops (dead-letters, reason maxlen) the oldest; reject-publish
// nacks a publish once the queue is over its limit, so the queue takes one
// message more than the limit, and takes publishes again once drained;
// reject-publish-dlx is accepted but applied as drop-head.
func TestQuorumMaxLength(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, overflow := range []string{"", "drop-head", "reject-publish-dlx"} {
		name := "overflow " + overflow
		if overflow == "" {
			name = "overflow default"
		}
		t.Run(name, func(t *testing.T) {
			_, ch := b.channel(t)
			cch := confirmChannel(t, b)
			dlq := declareClassic(t, b, ch, "dlq")
			args := amqp.Table{"x-max-length": int32(2), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
			if overflow != "" {
				args["x-overflow"] = overflow
			}
			q := declareQuorum(t, b, ch, "q", args)
			for i := range 4 {
				require.True(t, confirmed(t, cch, q, body(fmt.Sprint(i))), "publish %d acked", i)
			}
			waitReady(t, ch, dlq, 2)
			require.Equal(t, []string{"2", "3"}, bodies(t, ch, q))
			for _, want := range []string{"0", "1"} {
				d := getOne(t, ch, dlq, true)
				require.Equal(t, want, string(d.Body))
				requireDeath(t, d, q, "maxlen")
			}
		})
	}

	t.Run("overflow reject-publish", func(t *testing.T) {
		_, ch := b.channel(t)
		cch := confirmChannel(t, b)
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
		for i, want := range []bool{true, true, true, false} {
			require.Equal(t, want, confirmed(t, cch, q, body(fmt.Sprint(i))), "publish %d acked", i)
		}
		require.Equal(t, []string{"0", "1", "2"}, bodies(t, ch, q))
		// Empty again, it takes publishes (once the queue has told the
		// publishing channel).
		eventually(t, func() bool { return confirmed(t, cch, q, body("again")) }, "publish acked")
		require.Equal(t, []string{"again"}, bodies(t, ch, q))
	})

	t.Run("bytes drop-head", func(t *testing.T) {
		_, ch := b.channel(t)
		cch := confirmChannel(t, b)
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-max-length-bytes": int32(10)})
		for _, m := range []string{"aaaa", "bbbb", "cccc"} {
			require.True(t, confirmed(t, cch, q, body(m)))
		}
		waitReady(t, ch, q, 2)
		require.Equal(t, []string{"bbbb", "cccc"}, bodies(t, ch, q))
	})

	t.Run("bytes reject-publish", func(t *testing.T) {
		_, ch := b.channel(t)
		cch := confirmChannel(t, b)
		q := declareQuorum(t, b, ch, "q", amqp.Table{"x-max-length-bytes": int32(10), "x-overflow": "reject-publish"})
		for i, m := range []string{"aaaa", "bbbb", "cccc", "dddd"} {
			require.Equal(t, i < 3, confirmed(t, cch, q, body(m)), m)
		}
		require.Equal(t, []string{"aaaa", "bbbb", "cccc"}, bodies(t, ch, q))
	})
}

// TestQuorumMessageTTL: x-message-ttl and per-message expiration expire
// messages in a quorum queue, dead-lettered with reason expired.
func TestQuorumMessageTTL(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	dlq := declareClassic(t, b, ch, "dlq")
	dl := amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}

	t.Run("queue ttl", func(t *testing.T) {
		q := declareQuorum(t, b, ch, "ttl", amqp.Table{"x-message-ttl": int32(50), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq})
		publish(t, ch, "", q, body("queue-ttl"))
		waitReady(t, ch, dlq, 1)
		waitReady(t, ch, q, 0)
		d := getOne(t, ch, dlq, true)
		require.Equal(t, "queue-ttl", string(d.Body))
		death := requireDeath(t, d, q, "expired")
		require.NotContains(t, death, "original-expiration")
	})
	t.Run("per-message", func(t *testing.T) {
		q := declareQuorum(t, b, ch, "pm", dl)
		publish(t, ch, "", q, amqp.Publishing{Body: []byte("message-ttl"), Expiration: "50"})
		publish(t, ch, "", q, body("kept"))
		waitReady(t, ch, dlq, 1)
		d := getOne(t, ch, dlq, true)
		require.Equal(t, "message-ttl", string(d.Body))
		require.Equal(t, "", d.Expiration)
		require.Equal(t, "50", requireDeath(t, d, q, "expired")["original-expiration"])
		require.Equal(t, []string{"kept"}, bodies(t, ch, q))
	})
}

// TestQuorumDeadLetterStrategy: x-dead-letter-strategy at-least-once is
// accepted with or without x-overflow reject-publish, and dead-letters
// either way. With reject-publish, a message with no route to a target is
// kept by the queue (messages_dlx); without it RabbitMQ falls back to
// at-most-once and the message is dropped.
func TestQuorumDeadLetterStrategy(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	dlq := declareClassic(t, b, ch, "dlq")
	nowhere := b.name("nowhere")
	for name, args := range map[string]amqp.Table{
		"at-most-once":                         {"x-dead-letter-strategy": "at-most-once"},
		"at-least-once with reject-publish":    {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"},
		"at-least-once without reject-publish": {"x-dead-letter-strategy": "at-least-once"},
	} {
		t.Run(name, func(t *testing.T) {
			args["x-dead-letter-exchange"] = ""
			args["x-dead-letter-routing-key"] = dlq
			q := declareQuorum(t, b, ch, "q", args)
			publish(t, ch, "", q, body(name))
			waitReady(t, ch, q, 1)
			require.NoError(t, getOne(t, ch, q, false).Reject(false))
			waitReady(t, ch, dlq, 1)
			d := getOne(t, ch, dlq, true)
			require.Equal(t, name, string(d.Body))
			requireDeath(t, d, q, "rejected")
		})
	}

	t.Run("no route", func(t *testing.T) {
		kept := declareQuorum(t, b, ch, "kept", amqp.Table{"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish",
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": nowhere})
		dropped := declareQuorum(t, b, ch, "dropped", amqp.Table{"x-dead-letter-strategy": "at-least-once",
			"x-dead-letter-exchange": "", "x-dead-letter-routing-key": nowhere})
		for _, q := range []string{kept, dropped} {
			publish(t, ch, "", q, body("m"))
			waitReady(t, ch, q, 1)
			require.NoError(t, getOne(t, ch, q, false).Reject(false))
		}
		awaitFigures(t, api, kept, map[string]any{"messages": 1.0, "messages_ready": 0.0, "messages_unacknowledged": 0.0,
			"messages_dlx": 1.0, "message_bytes_dlx": 1.0})
		awaitFigures(t, api, dropped, map[string]any{"messages": 0.0, "messages_ready": 0.0, "messages_unacknowledged": 0.0,
			"messages_dlx": 0.0, "message_bytes_dlx": 0.0})
	})
}

// awaitFigures waits until the management API shows queue q with these
// values (RabbitMQ shows a quorum queue's figures as of its last
// statistics tick, every 5 s).
func awaitFigures(t *testing.T, api *apiClient, q string, want map[string]any) map[string]any {
	t.Helper()
	var o map[string]any
	eventually(t, func() bool {
		o = api.expect(200, http.MethodGet, "/api/queues/{vhost}/"+q, nil).obj(t)
		for k, v := range want {
			if !reflect.DeepEqual(v, o[k]) {
				return false
			}
		}
		return true
	}, fmt.Sprintf("%s shows %v", q, want))
	return o
}

// TestQuorumExpires: x-expires deletes an unused quorum queue (RabbitMQ
// notices on its queue's periodic tick, within seconds).
func TestQuorumExpires(t *testing.T) {
	b := startBroker(t, server.Config{})
	c, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", amqp.Table{"x-expires": int32(200)})
	eventually(t, func() bool {
		ch, err := c.Channel()
		require.NoError(t, err)
		_, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
		if err == nil {
			ch.Close()
			return false
		}
		require.Equal(t, fmt.Sprintf("NOT_FOUND - no queue '%s' in vhost '%s'", q, b.vhost), amqpErr(t, err, 404).Reason)
		return true
	}, "expired")
}

// TestQuorumSingleActiveConsumer: with x-single-active-consumer, the
// second consumer gets nothing while the first is there; once the first
// cancels, the second is active (and gets what the first had unacked once
// its channel closes, returned: redelivered, x-delivery-count 1).
func TestQuorumSingleActiveConsumer(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", amqp.Table{"x-single-active-consumer": true})
	c1, ch1 := b.channel(t)
	_, ch2 := b.channel(t)
	one, err := ch1.Consume(q, "one", false, false, false, false, nil)
	require.NoError(t, err)
	two, err := ch2.Consume(q, "two", false, false, false, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", q, body("a"))
	publish(t, ch, "", q, body("b"))
	a := recv(t, one)
	require.Equal(t, "a", string(a.Body))
	require.Equal(t, "b", string(recv(t, one).Body))
	none(t, two)
	o := api.await("/api/queues/{vhost}/"+q, "single_active_consumer_ctag", "one")
	require.Equal(t, 2.0, o["consumers"])

	require.NoError(t, a.Ack(false))
	require.NoError(t, ch1.Cancel("one", false)) // "b" stays unacked on ch1
	publish(t, ch, "", q, body("c"))
	d := recv(t, two)
	require.Equal(t, "c", string(d.Body))
	require.False(t, d.Redelivered)
	require.NoError(t, d.Ack(false))
	require.NoError(t, c1.Close())
	d = recv(t, two)
	require.Equal(t, "b", string(d.Body))
	require.True(t, d.Redelivered)
	require.Equal(t, amqp.Table{"x-delivery-count": int64(1)}, d.Headers)
	require.NoError(t, d.Ack(false))
	api.await("/api/queues/{vhost}/"+q, "single_active_consumer_ctag", "two")
}

// TestQuorumConsumerPriority: x-priority on basic.consume: the higher
// priority consumer gets messages while it has prefetch room.
func TestQuorumConsumerPriority(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", nil)
	_, cch := b.channel(t)
	require.NoError(t, cch.Qos(1, 0, false))
	lo, err := cch.Consume(q, "lo", false, false, false, false, nil)
	require.NoError(t, err)
	hi, err := cch.Consume(q, "hi", false, false, false, false, amqp.Table{"x-priority": int32(5)})
	require.NoError(t, err)
	publish(t, ch, "", q, body("1"))
	d := recv(t, hi)
	require.Equal(t, "1", string(d.Body))
	publish(t, ch, "", q, body("2"))
	d2 := recv(t, lo) // hi has no prefetch room left
	require.Equal(t, "2", string(d2.Body))
	require.NoError(t, d.Ack(false))
	publish(t, ch, "", q, body("3"))
	require.Equal(t, "3", string(recv(t, hi).Body))
	none(t, lo)
}

// TestQuorumDeliveryMode: RabbitMQ 3.10.8 stores every message of a
// quorum queue durably (the management API counts them all in
// messages_persistent) but hands each back with the delivery mode it was
// published with.
func TestQuorumDeliveryMode(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", nil)
	for _, mode := range []uint8{amqp.Transient, 0, amqp.Persistent} {
		publish(t, ch, "", q, amqp.Publishing{Body: []byte{'0' + mode}, DeliveryMode: mode})
	}
	waitReady(t, ch, q, 3)
	for _, mode := range []uint8{amqp.Transient, 0, amqp.Persistent} {
		d := getOne(t, ch, q, true)
		require.Equal(t, mode, d.DeliveryMode)
		require.Equal(t, amqp.Table{"x-delivery-count": int64(0)}, d.Headers)
	}
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", q, amqp.Publishing{Body: []byte("t"), DeliveryMode: amqp.Transient})
	d := recv(t, ds)
	require.Equal(t, amqp.Transient, d.DeliveryMode)
	require.Nil(t, d.Headers)
}

// TestQuorumPriorities: RabbitMQ 3.10.8 has no message priorities in a
// quorum queue (it delivers in publish order, whatever the priority
// property, and refuses x-max-priority). RabbitMQ 4.x has two, always on:
// priority 5 and above is high, 0-4 (or none) normal; high messages go
// first, 2 for each normal one when there are both. Warren follows 4.x;
// x-max-priority stays refused (TestQuorumDeclareArguments).
func TestQuorumPriorities(t *testing.T) {
	warrenOnly(t, "RabbitMQ 4.x's quorum queue message priorities (3.10.8 delivers in publish order)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", nil)
	for _, m := range []struct {
		body string
		prio uint8
	}{{"n1", 0}, {"n2", 4}, {"h1", 5}, {"h2", 9}, {"n3", 1}, {"h3", 6}, {"h4", 255}} {
		publish(t, ch, "", q, amqp.Publishing{Body: []byte(m.body), Priority: m.prio})
	}
	waitReady(t, ch, q, 7)
	require.Equal(t, []string{"h1", "h2", "n1", "h3", "h4", "n2", "n3"}, bodies(t, ch, q))
}

// TestQuorumManagement: what the management API shows of a quorum queue.
// RabbitMQ shows type, leader, members, online and the declared shape at
// once, its figures (node, state, messages...) after the queue's first
// statistics tick, and none of a classic queue's own keys.
func TestQuorumManagement(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	q := declareQuorum(t, b, ch, "q", amqp.Table{"x-max-length": int32(10)})
	publish(t, ch, "", q, amqp.Publishing{Body: []byte("transient"), DeliveryMode: amqp.Transient})
	path := "/api/queues/{vhost}/" + q

	o := api.expect(200, http.MethodGet, path, nil).obj(t)
	leader, ok := o["leader"].(string)
	require.True(t, ok, "leader: %v", o["leader"])
	require.NotEmpty(t, leader)
	for k, v := range map[string]any{"name": q, "vhost": b.vhost, "type": "quorum", "durable": true, "auto_delete": false,
		"exclusive": false, "arguments": map[string]any{"x-max-length": 10.0, "x-queue-type": "quorum"},
		"members": []any{leader}, "online": []any{leader}} {
		require.Equal(t, v, o[k], k)
	}

	want := map[string]any{"node": leader, "state": "running", "messages_ready": 1.0, "messages_unacknowledged": 0.0,
		"messages_persistent": 1.0, "messages_dlx": 0.0, "message_bytes": 9.0, "message_bytes_ready": 9.0,
		"message_bytes_persistent": 9.0, "message_bytes_dlx": 0.0, "consumers": 0.0, "policy": nil, "operator_policy": nil,
		"effective_policy_definition": map[string]any{}, "single_active_consumer_ctag": nil}
	// RabbitMQ's statistics arrive in parts: wait for all of them.
	eventually(t, func() bool {
		o = api.expect(200, http.MethodGet, path, nil).obj(t)
		for k := range want {
			if _, ok := o[k]; !ok {
				return false
			}
		}
		return o["messages"] == 1.0
	}, "the queue's full statistics")
	for k, v := range want {
		require.Contains(t, o, k)
		require.Equal(t, v, o[k], k)
	}
	for _, k := range []string{"backing_queue_status", "exclusive_consumer_tag", "single_active_consumer_tag", "recoverable_slaves",
		"slave_nodes", "synchronised_slave_nodes", "messages_paged_out", "head_message_timestamp", "idle_since"} {
		require.NotContains(t, o, k, "a classic queue's key")
	}

	var found bool
	for _, e := range api.expect(200, http.MethodGet, "/api/queues/{vhost}", nil).list(t) {
		e := e.(map[string]any)
		if e["name"] == q {
			found = true
			require.Equal(t, "quorum", e["type"])
			require.Equal(t, leader, e["leader"])
			require.Equal(t, []any{leader}, e["members"])
			require.Equal(t, []any{leader}, e["online"])
		}
	}
	require.True(t, found, "listed")

	t.Run("declare", func(t *testing.T) {
		m := b.name("m")
		deleteAfter(t, b, m)
		api.expect(201, http.MethodPut, "/api/queues/{vhost}/"+m, map[string]any{"durable": true, "arguments": map[string]any{"x-queue-type": "quorum"}})
		require.Equal(t, "quorum", api.expect(200, http.MethodGet, "/api/queues/{vhost}/"+m, nil).obj(t)["type"])
		for _, r := range []struct {
			body   map[string]any
			reason string
		}{
			{map[string]any{"durable": false, "arguments": map[string]any{"x-queue-type": "quorum"}},
				"invalid property 'non-durable' for queue '%s' in vhost '%s'"},
			{map[string]any{"durable": true, "arguments": map[string]any{"x-queue-type": "quorum", "x-max-priority": 3}},
				"invalid arg 'x-max-priority' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue"},
		} {
			n := b.name("refused")
			deleteAfter(t, b, n)
			resp := api.do(http.MethodPut, "/api/queues/{vhost}/"+n, r.body)
			require.Equal(t, 400, resp.status)
			require.Equal(t, map[string]any{"error": "bad_request", "reason": fmt.Sprintf(r.reason, n, b.vhost)}, resp.obj(t))
		}
	})
}
