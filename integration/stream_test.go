package integration

// Stream queues (x-queue-type stream) over AMQP 0-9-1 as RabbitMQ 3.10.8
// shows them (these tests pass against it), and Warren's additions
// (exact filtering, a negative offset, restarts), Warren-only.

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// streamArgs is x-queue-type stream with extra.
func streamArgs(extra amqp.Table) amqp.Table { return typedArgs("stream", extra) }

// declareStream declares the stream b.name(base) with args, deleted when
// the test ends.
func declareStream(t *testing.T, b *broker, ch *amqp.Channel, base string, args amqp.Table) string {
	t.Helper()
	return declareTyped(t, b, ch, "stream", base, args)
}

// streamPublish publishes bodies to q one at a time, each confirmed
// before the next (so each is a chunk of its own on RabbitMQ).
func streamPublish(t *testing.T, b *broker, q string, ps ...amqp.Publishing) {
	t.Helper()
	ch := confirmChannel(t, b)
	for _, p := range ps {
		require.True(t, confirmed(t, ch, q, p))
	}
}

func bodiesN(prefix string, from, n int) []amqp.Publishing {
	var ps []amqp.Publishing
	for i := from; i < from+n; i++ {
		ps = append(ps, body(fmt.Sprint(prefix, i)))
	}
	return ps
}

// streamConsume consumes q from offset (nil: the default) with prefetch.
func streamConsume(t *testing.T, b *broker, q string, prefetch int, args amqp.Table) (*amqp.Channel, <-chan amqp.Delivery) {
	t.Helper()
	_, ch := b.channel(t)
	require.NoError(t, ch.Qos(prefetch, 0, false))
	ds, err := ch.Consume(q, "", false, false, false, false, args)
	require.NoError(t, err)
	return ch, ds
}

// offsetOf is a delivery's x-stream-offset, which must be a long.
func offsetOf(t *testing.T, d amqp.Delivery) int64 {
	t.Helper()
	off, ok := d.Headers["x-stream-offset"].(int64)
	require.True(t, ok, "x-stream-offset %T %v in %v", d.Headers["x-stream-offset"], d.Headers["x-stream-offset"], d.Headers)
	return off
}

// recvAck receives and acks n deliveries and returns their offsets and
// bodies.
func recvAck(t *testing.T, ds <-chan amqp.Delivery, n int) ([]int64, []string) {
	t.Helper()
	var offs []int64
	var bs []string
	for i := 0; i < n; i++ {
		d := recv(t, ds)
		require.False(t, d.Redelivered)
		offs = append(offs, offsetOf(t, d))
		bs = append(bs, string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	return offs, bs
}

func TestStreamDeclareRefusals(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, c := range []struct {
		name                  string
		durable, auto, exclus bool
		args                  amqp.Table
		reason                string // with the queue's name and vhost
	}{
		{"non-durable", false, false, false, nil, "invalid property 'non-durable' for queue '%s' in vhost '%s'"},
		{"auto-delete", true, true, false, nil, "invalid property 'auto-delete' for queue '%s' in vhost '%s'"},
		{"exclusive", true, false, true, nil, "invalid property 'exclusive-owner' for queue '%s' in vhost '%s'"},
		{"max-age unit", true, false, false, amqp.Table{"x-max-age": "1d"}, "invalid arg 'x-max-age' for queue '%s' in vhost '%s': invalid_max_age"},
		{"max-age zero", true, false, false, amqp.Table{"x-max-age": "0D"}, "invalid arg 'x-max-age' for queue '%s' in vhost '%s': invalid_max_age"},
		{"max-age two units", true, false, false, amqp.Table{"x-max-age": "1h1m"}, "invalid arg 'x-max-age' for queue '%s' in vhost '%s': invalid_max_age"},
		{"max-age number", true, false, false, amqp.Table{"x-max-age": int32(5)}, "invalid arg 'x-max-age' for queue '%s' in vhost '%s': {unacceptable_type,signedint}"},
		{"max-length-bytes negative", true, false, false, amqp.Table{"x-max-length-bytes": int32(-1)}, "invalid arg 'x-max-length-bytes' for queue '%s' in vhost '%s': {value_negative,-1}"},
		{"max-length-bytes string", true, false, false, amqp.Table{"x-max-length-bytes": "a"}, "invalid arg 'x-max-length-bytes' for queue '%s' in vhost '%s': \"expected integer, got longstr\""},
		{"segment negative", true, false, false, amqp.Table{"x-stream-max-segment-size-bytes": int32(-1)}, "invalid arg 'x-stream-max-segment-size-bytes' for queue '%s' in vhost '%s': {value_negative,-1}"},
		{"segment too big", true, false, false, amqp.Table{"x-stream-max-segment-size-bytes": int64(4_000_000_000)}, "Exceeded max value for x-stream-max-segment-size-bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := b.name("s")
			deleteAfter(t, b, q)
			_, ch := b.channel(t)
			_, err := ch.QueueDeclare(q, c.durable, c.auto, c.exclus, false, streamArgs(c.args))
			want := c.reason
			if c.args == nil || c.name != "segment too big" {
				want = fmt.Sprintf(c.reason, q, b.vhost)
			}
			require.Equal(t, "PRECONDITION_FAILED - "+want, amqpErr(t, err, 406).Reason)
		})
	}
	// Other queue types' arguments.
	for _, a := range []amqp.Table{{"x-max-length": int32(10)}, {"x-message-ttl": int32(10)}, {"x-expires": int32(10000)},
		{"x-max-priority": int32(5)}, {"x-dead-letter-exchange": "x"}, {"x-overflow": "reject-publish"},
		{"x-single-active-consumer": true}, {"x-delivery-limit": int32(3)}, {"x-queue-mode": "lazy"}} {
		for k := range a {
			t.Run(k, func(t *testing.T) {
				q := b.name("s")
				deleteAfter(t, b, q)
				_, ch := b.channel(t)
				_, err := ch.QueueDeclare(q, true, false, false, false, streamArgs(a))
				require.Equal(t, fmt.Sprintf("PRECONDITION_FAILED - invalid arg '%s' for queue '%s' in vhost '%s' of queue type rabbit_stream_queue", k, q, b.vhost),
					amqpErr(t, err, 406).Reason)
			})
		}
	}
	t.Run("max-age on a quorum queue", func(t *testing.T) {
		q := b.name("q")
		deleteAfter(t, b, q)
		_, ch := b.channel(t)
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-max-age": "1D"})
		require.Equal(t, fmt.Sprintf("PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '%s' in vhost '%s' of queue type rabbit_quorum_queue", q, b.vhost), amqpErr(t, err, 406).Reason)
	})
	t.Run("server-named", func(t *testing.T) {
		_, ch := b.channel(t)
		_, err := ch.QueueDeclare("", true, false, false, false, streamArgs(nil))
		require.Equal(t, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue", amqpErr(t, err, 406).Reason)
	})
	t.Run("stream argument on a classic queue", func(t *testing.T) {
		q := b.name("c")
		deleteAfter(t, b, q)
		_, ch := b.channel(t)
		_, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{"x-max-age": "1D"})
		require.Equal(t, fmt.Sprintf("PRECONDITION_FAILED - invalid arg 'x-max-age' for queue '%s' in vhost '%s' of queue type rabbit_classic_queue", q, b.vhost), amqpErr(t, err, 406).Reason)
	})
}

func TestStreamDeclareAndRedeclare(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	args := amqp.Table{"x-max-age": "1D", "x-max-length-bytes": int32(1000000), "x-stream-max-segment-size-bytes": int32(100000),
		// Taken and ignored: a filter size (RabbitMQ 3.13's), unknown
		// arguments, a consumer timeout, a cluster size.
		"x-stream-filter-size-bytes": int32(32), "x-no-such-thing": "x", "x-consumer-timeout": int32(1000), "x-initial-cluster-size": int32(1)}
	q := declareStream(t, b, ch, "s", args)
	// Units Y M D h m s.
	for _, age := range []string{"1Y", "2M", "3D", "4h", "5m", "6s"} {
		n := b.name("age" + age)
		_, err := ch.QueueDeclare(n, true, false, false, false, streamArgs(amqp.Table{"x-max-age": age}))
		require.NoError(t, err, age)
		deleteAfter(t, b, n)
	}
	ok, err := ch.QueueDeclare(q, true, false, false, false, streamArgs(args))
	require.NoError(t, err)
	require.Equal(t, 0, ok.Messages)
	for _, c := range []struct {
		name string
		args amqp.Table
		want string
	}{
		{"other max-age", amqp.Table{"x-max-age": "2D"}, "inequivalent arg 'x-max-age' for queue '%s' in vhost '%s': received '2D' but current is '1D'"},
		{"no max-age", amqp.Table{"x-max-age": nil}, "inequivalent arg 'x-max-age' for queue '%s' in vhost '%s': received none but current is the value '1D' of type 'longstr'"},
		{"no segment size", amqp.Table{"x-stream-max-segment-size-bytes": nil}, "inequivalent arg 'x-stream-max-segment-size-bytes' for queue '%s' in vhost '%s': received none but current is the value '100000' of type 'signedint'"},
		{"classic", amqp.Table{"x-queue-type": "classic"}, "inequivalent arg 'x-queue-type' for queue '%s' in vhost '%s': received 'classic' but current is 'stream'"},
		{"quorum", amqp.Table{"x-queue-type": "quorum"}, "inequivalent arg 'x-queue-type' for queue '%s' in vhost '%s': received 'quorum' but current is 'stream'"},
		{"leader locator", amqp.Table{"x-queue-leader-locator": "balanced"}, "inequivalent arg 'x-queue-leader-locator' for queue '%s' in vhost '%s': received the value 'balanced' of type 'longstr' but current is none"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := streamArgs(args)
			for k, v := range c.args {
				if v == nil {
					delete(a, k)
				} else {
					a[k] = v
				}
			}
			_, ch := b.channel(t)
			_, err := ch.QueueDeclare(q, true, false, false, false, a)
			require.Equal(t, "PRECONDITION_FAILED - "+fmt.Sprintf(c.want, q, b.vhost), amqpErr(t, err, 406).Reason)
		})
	}
	t.Run("non-durable", func(t *testing.T) {
		_, ch := b.channel(t)
		_, err := ch.QueueDeclare(q, false, false, false, false, streamArgs(args))
		require.Equal(t, fmt.Sprintf("PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '%s': received 'false' but current is 'true'", q, b.vhost), amqpErr(t, err, 406).Reason)
	})
}

func TestStreamRefusals(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	streamPublish(t, b, q, bodiesN("m", 0, 3)...)
	unsupported := func(what string) string {
		return fmt.Sprintf("NOT_IMPLEMENTED - %s not supported by stream queues queue '%s' in vhost '%s'", what, q, b.vhost)
	}
	t.Run("basic.get", func(t *testing.T) {
		for _, autoAck := range []bool{false, true} {
			_, ch := b.channel(t)
			_, _, err := ch.Get(q, autoAck)
			require.Equal(t, unsupported("basic.get"), amqpErr(t, err, 540).Reason)
		}
	})
	t.Run("queue.purge", func(t *testing.T) {
		_, ch := b.channel(t)
		_, err := ch.QueuePurge(q, false)
		require.Equal(t, unsupported("queue.purge"), amqpErr(t, err, 540).Reason)
	})
	consume := func(t *testing.T, prefetch int, global, autoAck bool, args amqp.Table) error {
		_, ch := b.channel(t)
		if prefetch >= 0 {
			require.NoError(t, ch.Qos(prefetch, 0, false))
		}
		if global {
			require.NoError(t, ch.Qos(10, 0, true))
		}
		_, err := ch.Consume(q, "", autoAck, false, false, false, args)
		return err
	}
	noPrefetch := fmt.Sprintf("PRECONDITION_FAILED - consumer prefetch count is not set for 'queue '%s' in vhost '%s''", q, b.vhost)
	t.Run("no prefetch", func(t *testing.T) {
		require.Equal(t, noPrefetch, amqpErr(t, consume(t, -1, false, false, nil), 406).Reason)
		require.Equal(t, noPrefetch, amqpErr(t, consume(t, 0, false, false, nil), 406).Reason)
	})
	t.Run("only a global prefetch", func(t *testing.T) {
		require.Equal(t, noPrefetch, amqpErr(t, consume(t, -1, true, false, nil), 406).Reason)
	})
	t.Run("global qos", func(t *testing.T) {
		require.Equal(t, fmt.Sprintf("NOT_IMPLEMENTED - queue '%s' in vhost '%s' does not support global qos", q, b.vhost),
			amqpErr(t, consume(t, 10, true, false, nil), 540).Reason)
	})
	t.Run("auto-ack", func(t *testing.T) {
		require.Equal(t, unsupported("automatic acknowledgement"), amqpErr(t, consume(t, 10, false, true, nil), 540).Reason)
	})
	t.Run("offset as a string of digits", func(t *testing.T) {
		err := consume(t, 10, false, false, amqp.Table{"x-stream-offset": "3"})
		require.Equal(t, fmt.Sprintf(`PRECONDITION_FAILED - invalid arg 'x-stream-offset' for queue '%s' in vhost '%s': {invalid_stream_offset_arg,{longstr,<<"3">>}}`, q, b.vhost),
			amqpErr(t, err, 406).Reason)
	})
	for _, c := range []struct {
		name    string
		requeue bool
		reject  bool
	}{{"nack", false, false}, {"nack requeue", true, false}, {"reject", false, true}, {"reject requeue", true, true}} {
		t.Run(c.name, func(t *testing.T) {
			_, ch := b.channel(t)
			closed := ch.NotifyClose(make(chan *amqp.Error, 1))
			require.NoError(t, ch.Qos(10, 0, false))
			ds, err := ch.Consume(q, "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
			require.NoError(t, err)
			d := recv(t, ds)
			if c.reject {
				require.NoError(t, d.Reject(c.requeue))
			} else {
				require.NoError(t, d.Nack(false, c.requeue))
			}
			select {
			case e := <-closed:
				require.NotNil(t, e)
				require.Equal(t, 540, e.Code)
				require.Equal(t, unsupported("basic.nack and basic.reject"), e.Reason)
			case <-time.After(5 * time.Second):
				t.Fatal("channel not closed")
			}
		})
	}
}

func TestStreamOffsets(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	before := time.Now().Add(-time.Hour)
	streamPublish(t, b, q, bodiesN("m", 0, 10)...)
	for _, c := range []struct {
		name  string
		arg   any
		first int64
	}{
		{"first", "first", 0},
		{"last", "last", 9},
		{"offset", int64(4), 4},
		{"offset as a short", int16(7), 7},
		{"timestamp", before, 0},
		{"interval", "1h", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ds := streamConsume(t, b, q, 100, amqp.Table{"x-stream-offset": c.arg})
			offs, bs := recvAck(t, ds, int(10-c.first))
			for i := range offs {
				require.Equal(t, c.first+int64(i), offs[i])
				require.Equal(t, fmt.Sprint("m", c.first+int64(i)), bs[i])
			}
			none(t, ds)
		})
	}
	t.Run("next, the default", func(t *testing.T) {
		for _, args := range []amqp.Table{nil, {"x-stream-offset": "next"}} {
			_, ds := streamConsume(t, b, q, 10, args)
			none(t, ds)
			streamPublish(t, b, q, body("new"))
			d := recv(t, ds)
			require.Equal(t, "new", string(d.Body))
			require.NoError(t, d.Ack(false))
		}
	})
	t.Run("headers, exchange and key are the publisher's", func(t *testing.T) {
		x := b.name("x")
		require.NoError(t, ch.ExchangeDeclare(x, "direct", false, true, false, false, nil))
		require.NoError(t, ch.QueueBind(q, "k", x, false, nil))
		_, ds := streamConsume(t, b, q, 10, nil)
		cch := confirmChannel(t, b)
		dc, err := cch.PublishWithDeferredConfirmWithContext(context.Background(), x, "k", false, false,
			amqp.Publishing{Body: []byte("h"), ContentType: "text/plain", Headers: amqp.Table{"a": "b"}, MessageId: "id1"})
		require.NoError(t, err)
		require.True(t, dc.Wait())
		d := recv(t, ds)
		require.Equal(t, x, d.Exchange)
		require.Equal(t, "k", d.RoutingKey)
		require.Equal(t, "text/plain", d.ContentType)
		require.Equal(t, "id1", d.MessageId)
		require.Equal(t, "b", d.Headers["a"])
		offsetOf(t, d)
		require.NoError(t, d.Ack(false))
	})
}

// Acks give back credit: the messages stay for every other reader.
func TestStreamAcksAreCredit(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	streamPublish(t, b, q, bodiesN("m", 0, 6)...)
	_, ds := streamConsume(t, b, q, 2, amqp.Table{"x-stream-offset": "first"})
	d0, d1 := recv(t, ds), recv(t, ds)
	none(t, ds) // the prefetch is used up
	require.NoError(t, d1.Ack(true))
	offs, _ := recvAck(t, ds, 4)
	require.Equal(t, []int64{2, 3, 4, 5}, offs)
	require.Equal(t, int64(0), offsetOf(t, d0))
	// A second reader finds them all.
	_, ds2 := streamConsume(t, b, q, 100, amqp.Table{"x-stream-offset": "first"})
	offs, _ = recvAck(t, ds2, 6)
	require.Equal(t, []int64{0, 1, 2, 3, 4, 5}, offs)
	// Closing the channel with deliveries unacked loses nothing either.
	_, ds3 := streamConsume(t, b, q, 3, amqp.Table{"x-stream-offset": "first"})
	recv(t, ds3)
	ok, err := ch.QueueDeclarePassive(q, true, false, false, false, streamArgs(nil))
	require.NoError(t, err)
	require.Equal(t, 0, ok.Messages) // RabbitMQ's declare-ok counts none for a stream
}

func TestStreamManagement(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", amqp.Table{"x-max-age": "1D"})
	streamPublish(t, b, q, bodiesN("m", 0, 5)...)
	api := &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass}
	path := "/api/queues/" + url.PathEscape(b.vhost) + "/" + url.PathEscape(q)
	var it map[string]any
	eventually(t, func() bool {
		it = api.expect(http.StatusOK, http.MethodGet, path, nil).obj(t)
		return it["messages"] == float64(5)
	}, "5 messages")
	require.Equal(t, "stream", it["type"])
	require.Equal(t, true, it["durable"])
	require.Equal(t, float64(5), it["messages_ready"])
	require.Equal(t, float64(0), it["messages_unacknowledged"])
	require.Equal(t, map[string]any{"x-queue-type": "stream", "x-max-age": "1D"}, it["arguments"])
	if !external() {
		// Warren's: the log's extent (RabbitMQ 3.10 has none of these).
		require.Equal(t, float64(1), it["segments"])
		require.Equal(t, float64(0), it["first_offset"])
		require.Equal(t, float64(4), it["last_offset"])
		// Browsing reads from any offset and takes nothing.
		br := api.expect(http.StatusOK, http.MethodGet, path+"/browse?offset=3&count=10", nil).obj(t)
		items := br["items"].([]any)
		require.Len(t, items, 2)
		first := items[0].(map[string]any)
		require.Equal(t, "m3", first["payload"])
		require.Equal(t, float64(3), first["properties"].(map[string]any)["headers"].(map[string]any)["x-stream-offset"])
		// Each consumer's position and lag.
		_, ds := streamConsume(t, b, q, 2, amqp.Table{"x-stream-offset": "first"})
		recv(t, ds)
		recv(t, ds)
		eventually(t, func() bool {
			it = api.expect(http.StatusOK, http.MethodGet, path, nil).obj(t)
			cs, _ := it["stream_consumers"].([]any)
			return len(cs) == 1 && cs[0].(map[string]any)["lag"] == float64(3)
		}, "a consumer 3 behind")
	}
}

// Warren filters exactly: a consumer gets only the values it asked for
// (RabbitMQ 3.13's Bloom filter lets others through; 3.10 has none).
func TestStreamFilter(t *testing.T) {
	warrenOnly(t, "stream filtering is RabbitMQ 3.13's, and there inexact (a Bloom filter)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	var ps []amqp.Publishing
	for i := 0; i < 12; i++ {
		p := body(fmt.Sprint("m", i))
		if i%3 != 2 {
			p.Headers = amqp.Table{"x-stream-filter-value": fmt.Sprint("f", i%3)}
		}
		ps = append(ps, p)
	}
	streamPublish(t, b, q, ps...)
	for _, c := range []struct {
		name string
		args amqp.Table
		want []int64
	}{
		{"one value", amqp.Table{"x-stream-filter": "f1"}, []int64{1, 4, 7, 10}},
		{"values", amqp.Table{"x-stream-filter": []any{"f0", "f1"}}, []int64{0, 1, 3, 4, 6, 7, 9, 10}},
		{"and unfiltered", amqp.Table{"x-stream-filter": "f0", "x-stream-match-unfiltered": true}, []int64{0, 2, 3, 5, 6, 8, 9, 11}},
		{"no filter", amqp.Table{}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.args["x-stream-offset"] = "first"
			_, ds := streamConsume(t, b, q, 3, c.args)
			offs, _ := recvAck(t, ds, len(c.want))
			require.Equal(t, c.want, offs)
			none(t, ds)
		})
	}
}

// A negative offset reads the last N messages, as LavinMQ's streams do.
func TestStreamNegativeOffset(t *testing.T) {
	warrenOnly(t, "a negative x-stream-offset is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	streamPublish(t, b, q, bodiesN("m", 0, 10)...)
	_, ds := streamConsume(t, b, q, 10, amqp.Table{"x-stream-offset": int32(-3)})
	offs, _ := recvAck(t, ds, 3)
	require.Equal(t, []int64{7, 8, 9}, offs)
	_, ds = streamConsume(t, b, q, 20, amqp.Table{"x-stream-offset": int32(-30)})
	offs, _ = recvAck(t, ds, 10)
	require.Equal(t, int64(0), offs[0])
}

// Retention drops whole segments from the front, never the last.
func TestStreamRetention(t *testing.T) {
	warrenOnly(t, "when RabbitMQ applies retention is its own business; Warren's is checked at each segment roll")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", amqp.Table{"x-max-length-bytes": int32(3000), "x-stream-max-segment-size-bytes": int32(1000)})
	big := make([]byte, 200)
	ch2 := confirmChannel(t, b)
	for i := 0; i < 60; i++ {
		require.True(t, confirmed(t, ch2, q, amqp.Publishing{Body: big}))
	}
	info := queueInfo(t, b, q)
	require.Greater(t, info["first_offset"], float64(0))
	require.Equal(t, float64(59), info["last_offset"])
	require.LessOrEqual(t, info["message_bytes"], float64(3000+1000))
	_, ds := streamConsume(t, b, q, 100, amqp.Table{"x-stream-offset": "first"})
	d := recv(t, ds)
	require.Equal(t, int64(info["first_offset"].(float64)), offsetOf(t, d))

	// A max-age policy drops all but the last segment once they are older.
	pol := b.name("p")
	api := &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass}
	api.expect(http.StatusCreated, http.MethodPut, "/api/policies/"+url.PathEscape(b.vhost)+"/"+pol,
		map[string]any{"pattern": "^" + q + "$", "apply-to": "queues", "definition": map[string]any{"max-age": "1s"}})
	time.Sleep(1100 * time.Millisecond)
	for i := 0; i < 10; i++ { // a segment roll checks retention
		require.True(t, confirmed(t, ch2, q, amqp.Publishing{Body: big}))
	}
	// Only the segment where old and new meet keeps old messages.
	eventually(t, func() bool { return queueInfo(t, b, q)["first_offset"].(float64) > 50 }, "old segments dropped")
}

func queueInfo(t *testing.T, b *broker, q string) map[string]any {
	api := &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass}
	return api.expect(http.StatusOK, http.MethodGet, "/api/queues/"+url.PathEscape(b.vhost)+"/"+url.PathEscape(q), nil).obj(t)
}

// A restart serves the stream at once: its log is on disk, nothing to load.
func TestStreamRestart(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir}
	b := startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	_, ch := b.channel(t)
	q := "s"
	_, err := ch.QueueDeclare(q, true, false, false, false, streamArgs(amqp.Table{"x-stream-max-segment-size-bytes": int32(2000)}))
	require.NoError(t, err)
	streamPublish(t, b.broker, q, bodiesN("m", 0, 100)...)
	b.stop()

	b = startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	_, ds := streamConsume(t, b.broker, q, 50, amqp.Table{"x-stream-offset": "first"})
	offs, bs := recvAck(t, ds, 100)
	require.Equal(t, int64(99), offs[99])
	require.Equal(t, "m99", bs[99])
	streamPublish(t, b.broker, q, body("after"))
	d := recv(t, ds)
	require.Equal(t, int64(100), offsetOf(t, d))
	// Deleting it removes its log.
	_, ch = b.channel(t)
	_, err = ch.QueueDelete(q, false, false, false)
	require.NoError(t, err)
	left, _ := filepath.Glob(filepath.Join(dir, "streams", "*", "*.seg"))
	require.Empty(t, left)
}

// TestStreamSIGKILLLosesNothingConfirmed publishes to a stream with
// confirms, SIGKILLs the broker mid-stream and checks, after a restart,
// that the stream holds every confirmed message once, in order.
func TestStreamSIGKILLLosesNothingConfirmed(t *testing.T) {
	warrenOnly(t, "SIGKILLs and restarts bin/warren")
	bin := buildWarren(t)
	dataDir := t.TempDir()
	var next uint64 // next sequence number to publish
	var confirmedMax uint64
	anyConfirmed := false
	for round := 0; round < 3; round++ {
		cmd, addr := startWarrenProcess(t, bin, dataDir)
		conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
		require.NoError(t, err)
		ch, err := conn.Channel()
		require.NoError(t, err)
		_, err = ch.QueueDeclare("kill-stream", true, false, false, false, streamArgs(amqp.Table{"x-stream-max-segment-size-bytes": int32(100000)}))
		require.NoError(t, err)

		// Everything published before must be there, in order, once:
		// offset i holds sequence i (what was not confirmed may be
		// missing only at the end).
		cch, err := conn.Channel()
		require.NoError(t, err)
		require.NoError(t, cch.Qos(1000, 0, false))
		ds, err := cch.Consume("kill-stream", "", false, false, false, false, amqp.Table{"x-stream-offset": "first"})
		require.NoError(t, err)
		var have uint64
	drain:
		for {
			select {
			case d := <-ds:
				require.Equal(t, int64(have), offsetOf(t, d), "round %d", round)
				require.Equal(t, have, binary.BigEndian.Uint64(d.Body), "round %d", round)
				require.NoError(t, d.Ack(false))
				have++
			case <-time.After(500 * time.Millisecond):
				break drain
			}
		}
		if anyConfirmed {
			require.Greater(t, have, confirmedMax, "round %d: confirmed message %d lost (stream holds %d)", round, confirmedMax, have)
		}
		next = have

		require.NoError(t, ch.Confirm(false))
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1<<20))
		stop, pubDone := make(chan struct{}), make(chan struct{})
		first := next
		go func() {
			defer close(pubDone)
			for seq := first; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				body := binary.BigEndian.AppendUint64(nil, seq)
				if ch.PublishWithContext(context.Background(), "", "kill-stream", false, false, amqp.Publishing{Body: body}) != nil {
					return
				}
			}
		}()
		firstConfirm := make(chan struct{})
		confDone := make(chan struct{})
		go func() {
			defer close(confDone)
			seen := false
			for c := range confirms {
				if c.Ack {
					if !seen {
						close(firstConfirm)
						seen = true
					}
					anyConfirmed = true
					// Tags count from 1 on this channel: tag n is sequence first+n-1.
					if s := first + c.DeliveryTag - 1; s > confirmedMax || confirmedMax == 0 {
						confirmedMax = s
					}
				}
			}
		}()
		select {
		case <-firstConfirm:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no confirm", round)
		}
		time.Sleep(time.Duration(50+round*70) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		close(stop)
		<-pubDone
		conn.Close()
		<-confDone
	}
}

func TestWarrenctlStream(t *testing.T) {
	warrenOnly(t, "drives warrenctl, Warren's own CLI, against an in-process Warren's management handler")
	b := startBroker(t, server.Config{})
	c := &ctl{t: t, bin: buildCtl(t), url: b.api(t), amqpURL: b.url}
	require.Contains(t, c.ok("declare", "queue", "--type", "stream", "--arg", "x-max-age=7D", "events"), "queue events declared")
	for i := 0; i < 5; i++ {
		c.ok("publish", "--routing-key", "events", fmt.Sprint("e", i))
	}
	// A stream counts the records it has synced, the ones a consumer can
	// read: the last publish is routed when its fsync may still be under
	// way (RabbitMQ's figures lag too), so the list shows all five soon.
	var list string
	eventually(t, func() bool {
		list = c.ok("list", "queues")
		return regexp.MustCompile(`(?m)^/\s+events\s+stream\s+true\s+5\s+0\s+0`).MatchString(list)
	}, "the list shows the five messages")
	require.Regexp(t, `(?m)^/\s+events\s+stream\s+true\s+5\s+0\s+0`, list)
	require.Equal(t, "0\tevents\te0\n1\tevents\te1\n", c.ok("consume", "--offset", "first", "--count", "2", "events"))
	require.Equal(t, "3\tevents\te3\n4\tevents\te4\n", c.ok("consume", "--offset", "-2", "--count", "2", "events"))
	require.Equal(t, "2\tevents\te2\n", c.ok("consume", "--offset", "2", "--count", "1", "events"))
	require.Contains(t, c.ok("--format", "json", "consume", "--offset", "last", "--count", "1", "events"), `"x-stream-offset":4`)
	// A named consumer resumes after what it acked; stream shows where.
	require.Equal(t, "0\tevents\te0\n1\tevents\te1\n", c.ok("consume", "--name", "audit", "--offset", "first", "--count", "2", "events"))
	require.Equal(t, "2\tevents\te2\n", c.ok("consume", "--name", "audit", "--count", "1", "events"))
	var out string
	eventually(t, func() bool {
		out = c.ok("stream", "events")
		return regexp.MustCompile(`(?m)^audit\s+3\s+3\s*$`).MatchString(out)
	}, "audit stored at 3")
	require.Regexp(t, `(?m)^MESSAGES\s+5$`, out)
	require.Regexp(t, `(?m)^FIRST OFFSET\s+0$`, out)
	require.Regexp(t, `(?m)^LAST OFFSET\s+4$`, out)
	require.Regexp(t, `(?m)^NAMED CONSUMER\s+STORED OFFSET\s+ON DISK$`, out)
	c.fails(1, "Not Found", "stream", "nosuch")
	require.Equal(t, "stream events forgot consumer audit\n", c.ok("stream", "--forget", "audit", "events"))
	require.NotRegexp(t, `(?m)^audit\s`, c.ok("stream", "events"))
	c.fails(1, "Not Found", "stream", "--forget", "audit", "events")
}

// TestStreamPika runs pika (Debian's python3-pika) against a stream.
func TestStreamPika(t *testing.T) {
	b := startBroker(t, server.Config{})
	q := b.name("pika-stream")
	deleteAfter(t, b, q)
	runClient(t, clientDir(t, "python"), []string{"AMQP_URL=" + b.url, "QUEUE=" + q}, 2*time.Minute,
		"/usr/bin/python3", "-m", "unittest", "-v", "test_pika_stream")
}
