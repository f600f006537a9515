package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestQueueExpiresWhenUnused(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	_, err := ch.QueueDeclare("exp", false, false, false, false, amqp.Table{"x-expires": int32(600)})
	require.NoError(t, err)
	// Passive declares count as use and keep it alive past its expiry.
	for i := 0; i < 6; i++ {
		time.Sleep(150 * time.Millisecond)
		_, err = ch.QueueDeclarePassive("exp", false, false, false, false, nil)
		require.NoError(t, err, "still alive after %d uses", i+1)
	}
	// A consumer keeps it alive indefinitely.
	_, err = ch.Consume("exp", "c", true, false, false, false, nil)
	require.NoError(t, err)
	time.Sleep(900 * time.Millisecond)
	_, err = ch.QueueDeclarePassive("exp", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Cancel("c", false))
	// Left alone (a passive declare would count as use), it goes.
	time.Sleep(1500 * time.Millisecond)
	c, _ := conn.Channel()
	_, err = c.QueueDeclarePassive("exp", false, false, false, false, nil)
	amqpErr(t, err, amqp.NotFound)
}

func TestPriorityQueue(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("prio", false, false, false, false, amqp.Table{"x-max-priority": int32(5)})
	require.NoError(t, err)
	for i, p := range []uint8{0, 3, 9, 3, 5, 1} { // 9 counts as 5, FIFO with the other 5
		publish(t, ch, "", "prio", amqp.Publishing{Priority: p, Body: []byte(fmt.Sprintf("%d-%d", p, i))})
	}
	publish(t, ch, "", "prio", body("none")) // no priority: 0
	var got []string
	for {
		d, ok, err := ch.Get("prio", false)
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, string(d.Body))
		if len(got) == 1 {
			require.NoError(t, d.Reject(true)) // keeps its place at the front
		} else {
			require.NoError(t, d.Ack(false))
		}
	}
	require.Equal(t, []string{"9-2", "9-2", "5-4", "3-1", "3-3", "1-5", "0-0", "none"}, got)
}

func TestSingleActiveConsumer(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn, ch := b.channel(t)
	_, err := ch.QueueDeclare("sac", false, false, false, false, amqp.Table{"x-single-active-consumer": true})
	require.NoError(t, err)
	first, _ := conn.Channel()
	second, _ := conn.Channel()
	d1, err := first.Consume("sac", "one", false, false, false, false, nil)
	require.NoError(t, err)
	d2, err := second.Consume("sac", "two", false, false, false, false, nil)
	require.NoError(t, err)
	q, _ := ch.QueueDeclarePassive("sac", false, false, false, false, amqp.Table{"x-single-active-consumer": true})
	require.Equal(t, 2, q.Consumers, "every consumer counts")
	for i := 0; i < 4; i++ {
		publish(t, ch, "", "sac", body(fmt.Sprint(i)))
	}
	for i := 0; i < 4; i++ {
		require.Equal(t, fmt.Sprint(i), string(recv(t, d1).Body))
	}
	none(t, d2)
	// Closing the active consumer's channel hands over, unacked messages requeued.
	require.NoError(t, first.Close())
	for i := 0; i < 4; i++ {
		d := recv(t, d2)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.True(t, d.Redelivered)
	}
	_, err = ch.QueueDeclare("sac-bad", false, false, false, false, amqp.Table{"x-single-active-consumer": "yes"})
	amqpErr(t, err, amqp.PreconditionFailed)
}

func TestDirectReplyTo(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, server1 := b.channel(t)
	_, err := server1.QueueDeclare("rpc", false, false, false, false, nil)
	require.NoError(t, err)
	reqs, err := server1.Consume("rpc", "", true, false, false, false, nil)
	require.NoError(t, err)
	go func() {
		for d := range reqs {
			server1.PublishWithContext(context.Background(), "", d.ReplyTo, false, false,
				amqp.Publishing{CorrelationId: d.CorrelationId, Body: append([]byte("re: "), d.Body...)})
		}
	}()

	clientConn, client := b.channel(t)
	q, err := client.QueueDeclarePassive("amq.rabbitmq.reply-to", false, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 0, q.Messages)
	require.Equal(t, 1, q.Consumers)
	replies, err := client.Consume("amq.rabbitmq.reply-to", "", true, false, false, false, nil)
	require.NoError(t, err)
	publish(t, client, "", "rpc", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", CorrelationId: "42", Body: []byte("ping")})
	r := recv(t, replies)
	require.Equal(t, "re: ping", string(r.Body))
	require.Equal(t, "42", r.CorrelationId)
	require.True(t, strings.HasPrefix(r.RoutingKey, "amq.rabbitmq.reply-to."), r.RoutingKey)

	// An unknown token is unroutable.
	returns := client.NotifyReturn(make(chan amqp.Return, 1))
	require.NoError(t, client.PublishWithContext(context.Background(), "", "amq.rabbitmq.reply-to.nope", true, false, body("x")))
	select {
	case ret := <-returns:
		require.Equal(t, uint16(312), ret.ReplyCode)
	case <-timeout():
		t.Fatal("no return for an unknown reply token")
	}

	// Consuming with acks, or publishing with reply_to without a reply consumer: 406.
	c2, _ := clientConn.Channel()
	_, err = c2.Consume("amq.rabbitmq.reply-to", "", false, false, false, false, nil)
	amqpErr(t, err, amqp.PreconditionFailed)
	c3, _ := clientConn.Channel()
	closed := c3.NotifyClose(make(chan *amqp.Error, 1))
	publish(t, c3, "", "rpc", amqp.Publishing{ReplyTo: "amq.rabbitmq.reply-to", Body: []byte("x")})
	select {
	case e := <-closed:
		require.Equal(t, amqp.PreconditionFailed, e.Code)
	case <-timeout():
		t.Fatal("reply_to without a reply consumer was accepted")
	}
}

func TestMaxLengthRejectPublishDLX(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", false, false, false, false, nil))
	declareQ(t, ch, "overflowed")
	require.NoError(t, ch.QueueBind("overflowed", "", "dlx", false, nil))
	_, err := ch.QueueDeclare("small", false, false, false, false, amqp.Table{
		"x-max-length": int32(1), "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 2))
	publish(t, ch, "", "small", body("kept"))
	publish(t, ch, "", "small", body("rejected"))
	require.True(t, (<-confirms).Ack)
	require.False(t, (<-confirms).Ack, "nacked")
	var d amqp.Delivery
	var ok bool
	eventually(t, func() bool { d, ok, _ = ch.Get("overflowed", true); return ok }, "and dead-lettered")
	require.Equal(t, "rejected", string(d.Body))
	require.Equal(t, "maxlen", d.Headers["x-death"].([]any)[0].(amqp.Table)["reason"])
	require.Equal(t, "kept", getBody(t, ch, "small"))
}
