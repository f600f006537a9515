package integration

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestResourceAlarmBlocksPublishersNotConsumers(t *testing.T) {
	b := startBroker(t, server.Config{})
	pubConn, pub := b.channel(t)
	_, cons := b.channel(t)
	q := declareQ(t, cons, "alarmed")
	for i := 0; i < 3; i++ {
		publish(t, pub, "", q, body("before"))
	}
	_, perr := pub.QueueDeclarePassive(q, false, false, false, false, nil) // the publishes are in
	require.NoError(t, perr)
	blocked := pubConn.NotifyBlocked(make(chan amqp.Blocking, 2))
	b.SetAlarm("memory", true)
	require.Equal(t, []string{"memory"}, b.Alarms())

	require.NoError(t, pub.PublishWithContext(context.Background(), "", q, false, false, body("during")))
	select {
	case bl := <-blocked:
		require.True(t, bl.Active)
		require.Equal(t, "low on memory", bl.Reason)
	case <-timeout():
		t.Fatal("no connection.blocked")
	}
	// Consumers keep draining while publishers are blocked.
	ds, err := cons.Consume(q, "", true, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		require.Equal(t, "before", string(recv(t, ds).Body))
	}
	none(t, ds)

	b.SetAlarm("memory", false)
	select {
	case bl := <-blocked:
		require.False(t, bl.Active)
	case <-timeout():
		t.Fatal("no connection.unblocked")
	}
	require.Equal(t, "during", string(recv(t, ds).Body), "the held publish goes through, nothing lost")
}
