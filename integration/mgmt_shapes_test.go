package integration

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// TestAPIQueueCountsCurrentAfterConsumeOk: /api/queues/{vhost}/{name} shows
// a consumer as soon as basic.consume-ok has reached the client, and a
// confirmed message as soon as its ack has (RabbitMQ's management
// statistics lag by up to 5 s; Warren has no sampling interval in between).
func TestAPIQueueCountsCurrentAfterConsumeOk(t *testing.T) {
	warrenOnly(t, "RabbitMQ's management statistics lag by up to 5 s; Warren's queue counts are current at once")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("counts", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for i := range 50 {
		_, err := ch.Consume("counts", "", false, false, false, false, nil)
		require.NoError(t, err)
		q := api.expect(200, "GET", "/api/queues/%2F/counts", nil).obj(t)
		require.EqualValues(t, i+1, q["consumers"], "right after consume-ok %d", i+1)
		require.Len(t, q["consumer_details"], i+1)
	}

	_, pch := b.channel(t)
	_, err = pch.QueueDeclare("counts2", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, pch.Confirm(false))
	for i := range 20 {
		dc, err := pch.PublishWithDeferredConfirmWithContext(context.Background(), "", "counts2", false, false, amqp.Publishing{Body: []byte("x")})
		require.NoError(t, err)
		ok, err := dc.WaitContext(context.Background())
		require.NoError(t, err)
		require.True(t, ok)
		q := api.expect(200, "GET", "/api/queues/%2F/counts2", nil).obj(t)
		require.EqualValues(t, i+1, q["messages"], "right after the confirm of message %d", i+1)
		require.EqualValues(t, i+1, q["messages_ready"])
	}
}
