package integration

import (
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// awaitClose waits for a channel's close notification (the sweep runs every
// second; a few seconds bound the wait).
func awaitClose(t *testing.T, closed <-chan *amqp.Error) *amqp.Error {
	t.Helper()
	select {
	case e := <-closed:
		require.NotNil(t, e)
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed for the consumer timeout")
	}
	return nil
}

func timeoutText(ch, ms int) string {
	return "PRECONDITION_FAILED - delivery acknowledgement on channel " + strconv.Itoa(ch) + " timed out. Timeout value used: " + strconv.Itoa(ms) +
		" ms. This timeout value can be configured, see consumers doc guide to learn more"
}

func TestConsumerTimeoutClosesAndRequeues(t *testing.T) {
	warrenOnly(t, "x-consumer-timeout and the consumer-timeout policy key arrived in RabbitMQ 3.12; 3.10.8 ignores them")
	b := startBroker(t, server.Config{})
	c, pub := b.channel(t)
	_, err := pub.QueueDeclare("slow", false, false, false, false, amqp.Table{"x-consumer-timeout": int32(400)})
	require.NoError(t, err)
	_, err = pub.QueueDeclare("patient", false, false, false, false, amqp.Table{"x-consumer-timeout": int32(0)})
	require.NoError(t, err)
	publish(t, pub, "", "patient", body("p"))
	publish(t, pub, "", "slow", body("a"))
	publish(t, pub, "", "slow", body("b"))

	// A delivery from a queue with the timeout off, older than the others:
	// its channel stays open.
	keep, err := c.Channel()
	require.NoError(t, err)
	keepClosed := keep.NotifyClose(make(chan *amqp.Error, 1))
	kd, err := keep.Consume("patient", "", false, false, false, false, nil)
	require.NoError(t, err)
	recv(t, kd)

	worker, err := c.Channel()
	require.NoError(t, err)
	closed := worker.NotifyClose(make(chan *amqp.Error, 1))
	ds, err := worker.Consume("slow", "", false, false, false, false, nil)
	require.NoError(t, err)
	recv(t, ds)
	recv(t, ds)
	e := awaitClose(t, closed)
	require.Equal(t, 406, e.Code)
	require.Equal(t, timeoutText(3, 400), e.Reason)

	// Both deliveries are back, redelivered, in order.
	for _, want := range []string{"a", "b"} {
		d, ok, err := pub.Get("slow", true)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, want, string(d.Body))
		require.True(t, d.Redelivered)
	}
	select {
	case e := <-keepClosed:
		t.Fatalf("x-consumer-timeout 0 closed the channel: %v", e)
	default:
	}
}

func TestConsumerTimeoutServerDefaultPolicyAndGet(t *testing.T) {
	warrenOnly(t, "sets Warren's consumer timeout (server.Config); the policy key is RabbitMQ 3.12+")
	b := startBroker(t, server.Config{ConsumerTimeout: 300 * time.Millisecond})
	c, ch := b.channel(t)
	_, err := ch.QueueDeclare("g", false, false, false, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", "g", body("x"))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	_, ok, err := ch.Get("g", false) // basic.get deliveries count too, as in RabbitMQ
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, timeoutText(1, 300), awaitClose(t, closed).Reason)

	// The policy key overrides the server setting; false turns it off.
	_, err = b.PutPolicy(server.Policy{Vhost: "/", Name: "ct", Pattern: "^pol", ApplyTo: "queues", Definition: map[string]any{"consumer-timeout": 700}})
	require.NoError(t, err)
	_, err = b.PutPolicy(server.Policy{Vhost: "/", Name: "off", Pattern: "^never", ApplyTo: "queues", Definition: map[string]any{"consumer-timeout": false}})
	require.NoError(t, err)
	ch, err = c.Channel()
	require.NoError(t, err)
	for _, q := range []string{"never", "pol"} {
		_, err = ch.QueueDeclare(q, false, false, false, false, nil)
		require.NoError(t, err)
		publish(t, ch, "", q, body(q))
	}
	off, err := c.Channel()
	require.NoError(t, err)
	offClosed := off.NotifyClose(make(chan *amqp.Error, 1))
	_, ok, err = off.Get("never", false)
	require.NoError(t, err)
	require.True(t, ok)
	polCh, err := c.Channel()
	require.NoError(t, err)
	polClosed := polCh.NotifyClose(make(chan *amqp.Error, 1))
	_, ok, err = polCh.Get("pol", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, timeoutText(4, 700), awaitClose(t, polClosed).Reason)
	select {
	case e := <-offClosed:
		t.Fatalf("consumer-timeout false closed the channel: %v", e)
	default:
	}
}
