package queue

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
)

func idMsg(id any) *Message {
	m := &Message{Body: []byte("x")}
	if id != nil {
		m.SetProps(&amqp.Properties{Flags: amqp.FlagHeaders, Headers: amqp.Table{DedupHeader: id}})
	}
	return m
}

func TestQueueDedupWhileInQueue(t *testing.T) {
	q := New(Config{Name: "q", Args: amqp.Table{"x-message-deduplication": true}})
	t.Cleanup(q.Stop)
	require.Equal(t, Enqueued, q.Publish(idMsg("a"), -1))
	require.Equal(t, Duplicate, q.Publish(idMsg("a"), -1), "ready: a duplicate")
	require.Equal(t, Enqueued, q.Publish(idMsg(int32(7)), -1))
	require.Equal(t, Duplicate, q.Publish(idMsg(int64(7)), -1), "integers by value")
	require.Equal(t, Enqueued, q.Publish(idMsg(nil), -1))
	require.Equal(t, Enqueued, q.Publish(idMsg(nil), -1), "no id: never a duplicate")

	e, _, ok := q.Get(false)
	require.True(t, ok)
	require.Equal(t, Duplicate, q.Publish(idMsg("a"), -1), "unacked: still in the queue")
	q.Requeue([]Entry{e})
	require.Equal(t, Duplicate, q.Publish(idMsg("a"), -1), "requeued")
	e, _, _ = q.Get(false)
	q.Ack([]Entry{e})
	require.Equal(t, Enqueued, q.Publish(idMsg("a"), -1), "acked: gone, so welcome again")

	_, _, ok = q.Get(true) // 7, auto-ack
	require.True(t, ok)
	require.Equal(t, Enqueued, q.Publish(idMsg(int32(7)), -1))
	q.Purge()
	require.Equal(t, Enqueued, q.Publish(idMsg("a"), -1), "purged")

	// Rejected by max-length: the id does not stay behind.
	full := New(Config{Name: "f", Args: amqp.Table{"x-message-deduplication": true, "x-max-length": int32(0), "x-overflow": "reject-publish"}})
	t.Cleanup(full.Stop)
	require.Equal(t, Rejected, full.Publish(idMsg("b"), -1))
	require.Equal(t, Rejected, full.Publish(idMsg("b"), -1), "rejected again, not a duplicate")

	// Another header named by x-deduplication-header.
	other := New(Config{Name: "o", Args: amqp.Table{"x-message-deduplication": true, "x-deduplication-header": "msg-id"}})
	t.Cleanup(other.Stop)
	m := &Message{}
	m.SetProps(&amqp.Properties{Flags: amqp.FlagHeaders, Headers: amqp.Table{"msg-id": "z"}})
	require.Equal(t, Enqueued, other.Publish(m, -1))
	require.Equal(t, Duplicate, other.Publish(m, -1))
	require.Equal(t, Enqueued, other.Publish(idMsg("z"), -1), "the default header is not read then")

	plain := New(Config{Name: "p"})
	t.Cleanup(plain.Stop)
	require.Equal(t, Enqueued, plain.Publish(idMsg("a"), -1))
	require.Equal(t, Enqueued, plain.Publish(idMsg("a"), -1), "off unless asked for")
}
