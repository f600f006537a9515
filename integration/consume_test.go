package integration

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func timeout() <-chan time.Time { return time.After(5 * time.Second) }

func declareQ(t *testing.T, ch *amqp.Channel, name string) string {
	t.Helper()
	q, err := ch.QueueDeclare(name, false, false, false, false, nil)
	require.NoError(t, err)
	return q.Name
}

func TestConsumeTagsAndConflicts(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", q, body("x"))
	recv(t, ds)

	// An exclusive consumer on a queue that has consumers: 403.
	ch2, _ := conn.Channel()
	_, err = ch2.Consume(q, "ex", true, true, false, false, nil)
	amqpErr(t, err, amqp.AccessRefused)

	// Reusing a tag on a channel closes the connection with 530.
	_, err = ch.Consume(q, "dup", true, false, false, false, nil)
	require.NoError(t, err)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	_, err = ch.Consume(q, "dup", true, false, false, false, nil)
	require.Error(t, err)
	select {
	case e := <-closed:
		require.Equal(t, amqp.NotAllowed, e.Code)
	case <-timeout():
		t.Fatal("connection stayed open")
	}
}

func TestRoundRobinAndFIFO(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQ(t, ch, "rr")
	a, err := ch.Consume(q, "a", true, false, false, false, nil)
	require.NoError(t, err)
	c, err := ch.Consume(q, "b", true, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < 6; i++ {
		publish(t, ch, "", q, body(fmt.Sprint(i)))
	}
	for i := 0; i < 6; i += 2 {
		require.Equal(t, fmt.Sprint(i), string(recv(t, a).Body))
		require.Equal(t, fmt.Sprint(i+1), string(recv(t, c).Body))
	}
}

func TestAckNackRejectAndUnknownTag(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	for i := 1; i <= 5; i++ {
		publish(t, ch, "", q, body(fmt.Sprint(i)))
	}
	ds, err := ch.Consume(q, "c", false, false, false, false, nil)
	require.NoError(t, err)
	var got []amqp.Delivery
	for i := 0; i < 5; i++ {
		got = append(got, recv(t, ds))
	}
	require.NoError(t, got[1].Ack(true))    // acks 1 and 2
	require.NoError(t, got[2].Reject(true)) // 3 requeued, comes back
	d := recv(t, ds)
	require.Equal(t, "3", string(d.Body))
	require.True(t, d.Redelivered)
	require.NoError(t, d.Nack(false, false)) // dropped
	require.NoError(t, ch.Ack(0, true))      // tag 0 multiple: everything
	q2, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 0, q2.Messages)

	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, ch.Ack(999, false))
	select {
	case e := <-closed:
		require.Equal(t, amqp.PreconditionFailed, e.Code)
		require.Equal(t, "PRECONDITION_FAILED - unknown delivery tag 999", e.Reason)
	case <-timeout():
		t.Fatal("no channel error for an unknown tag")
	}
	// The connection survives a channel error.
	ch2, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch2.QueueDeclarePassive(q, false, false, false, false, nil)
	require.NoError(t, err)
}

func TestRequeueOriginalPositionOnChannelClose(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	for i := 1; i <= 4; i++ {
		publish(t, ch, "", q, body(fmt.Sprint(i)))
	}
	c2, _ := conn.Channel()
	require.NoError(t, c2.Qos(2, 0, false))
	ds, err := c2.Consume(q, "", false, false, false, false, nil)
	require.NoError(t, err)
	recv(t, ds)
	recv(t, ds)
	none(t, ds) // prefetch 2 holds the rest
	require.NoError(t, c2.Close())
	for i := 1; i <= 4; i++ {
		d, ok, err := ch.Get(q, true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.Equal(t, i <= 2, d.Redelivered, "message %d", i)
	}
}

func TestRequeueOnConnectionDrop(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	publish(t, ch, "", q, body("work"))
	worker := b.dial(t)
	wch, _ := worker.Channel()
	ds, err := wch.Consume(q, "", false, false, false, false, nil)
	require.NoError(t, err)
	recv(t, ds)
	require.NoError(t, worker.Close())
	eventually(t, func() bool {
		d, ok, _ := ch.Get(q, true)
		return ok && d.Redelivered && string(d.Body) == "work"
	}, "requeued with redelivered")
}

func TestQosPerConsumerAndGlobal(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q1, q2 := declareQ(t, ch, "q1"), declareQ(t, ch, "q2")
	for i := 0; i < 5; i++ {
		publish(t, ch, "", q1, body("a"))
		publish(t, ch, "", q2, body("b"))
	}
	require.NoError(t, ch.Qos(3, 0, true)) // per channel
	d1, _ := ch.Consume(q1, "", false, false, false, false, nil)
	d2, _ := ch.Consume(q2, "", false, false, false, false, nil)
	n := 0
	for n < 3 {
		select {
		case <-d1:
			n++
		case <-d2:
			n++
		case <-timeout():
			t.Fatalf("only %d deliveries", n)
		}
	}
	select {
	case <-d1:
		t.Fatal("a 4th delivery: global prefetch counts across consumers of the channel")
	case <-d2:
		t.Fatal("a 4th delivery: global prefetch counts across consumers of the channel")
	case <-time.After(200 * time.Millisecond):
	}

	_, c2 := b.channel(t)
	require.NoError(t, c2.Qos(1, 0, false))
	a, _ := c2.Consume(q1, "", false, false, false, false, nil)
	bb, _ := c2.Consume(q2, "", false, false, false, false, nil)
	recv(t, a)
	recv(t, bb)
	none(t, a)
	none(t, bb)

	_, c3 := b.channel(t)
	err := c3.Qos(1, 1024, false)
	amqpErr(t, err, amqp.NotImplemented)
}

func TestBasicGetAndRecover(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	_, ok, err := ch.Get(q, false)
	require.NoError(t, err)
	require.False(t, ok, "get-empty")
	publish(t, ch, "", q, body("1"))
	publish(t, ch, "", q, body("2"))
	d, ok, err := ch.Get(q, false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint32(1), d.MessageCount)
	require.NoError(t, ch.Recover(true))
	d, ok, _ = ch.Get(q, false)
	require.True(t, ok)
	require.Equal(t, "1", string(d.Body))
	require.True(t, d.Redelivered)
	require.NoError(t, d.Ack(false))

	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	require.Error(t, ch.Recover(false))
	select {
	case e := <-closed:
		require.Equal(t, amqp.NotImplemented, e.Code)
	case <-timeout():
		t.Fatal("recover requeue=false must close the connection with 540")
	}
}

func TestConsumerPriority(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareQ(t, ch, "q")
	require.NoError(t, ch.Qos(1, 0, false))
	lo, _ := ch.Consume(q, "lo", false, false, false, false, nil)
	hi, _ := ch.Consume(q, "hi", false, false, false, false, amqp.Table{"x-priority": int32(5)})
	publish(t, ch, "", q, body("1"))
	d := recv(t, hi)
	publish(t, ch, "", q, body("2"))
	d2 := recv(t, lo) // hi has no credit left
	require.Equal(t, "2", string(d2.Body))
	require.NoError(t, d.Ack(false))
	publish(t, ch, "", q, body("3"))
	require.Equal(t, "3", string(recv(t, hi).Body))
}

func TestLargeMessageSplitToFrameMax(t *testing.T) {
	b := startBroker(t, server.Config{})
	c, err := amqp.DialConfig(b.url, amqp.Config{FrameSize: 4096})
	require.NoError(t, err)
	defer c.Close()
	ch, _ := c.Channel()
	q := declareQ(t, ch, "big")
	big := make([]byte, 5<<20)
	for i := range big {
		big[i] = byte(i)
	}
	publish(t, ch, "", q, amqp.Publishing{Body: big})
	d, ok, err := ch.Get(q, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, big, d.Body)
}
