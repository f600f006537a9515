package integration

import (
	"context"
	"fmt"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// With a tiny in-memory window, queues page their tail out to the store and
// read it back in order: transient messages spill, persistent ones stay
// journaled, and nothing is lost, duplicated or reordered.
func TestPagingKeepsOrderAndCounts(t *testing.T) {
	warrenOnly(t, "sets Warren's paging window (server.Config) and restarts it")
	dir := t.TempDir()
	b := startDurableCfg(t, dir, server.Config{PageWindow: 10})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("paged-durable", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("paged-transient", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 1000))
	const n = 300
	for i := 0; i < n; i++ {
		mode := amqp.Persistent
		if i%3 == 0 {
			mode = amqp.Transient
		}
		for _, q := range []string{"paged-durable", "paged-transient"} {
			require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false,
				amqp.Publishing{DeliveryMode: mode, Body: []byte(fmt.Sprint(i))}))
		}
	}
	for i := 0; i < 2*n; i++ {
		require.True(t, (<-confirms).Ack)
	}
	for _, q := range []string{"paged-durable", "paged-transient"} {
		info, err := ch.QueueDeclarePassive(q, q == "paged-durable", false, false, false, nil)
		require.NoError(t, err)
		require.Equal(t, n, info.Messages, q)
	}
	// Consume the transient-queue copy with a consumer, half with basic.get.
	ds, err := ch.Consume("paged-transient", "", false, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		d := recv(t, ds)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	for i := 0; i < n/2; i++ {
		d, ok, err := ch.Get("paged-durable", false)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, fmt.Sprint(i), string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	_, err = ch.QueueDeclarePassive("paged-durable", true, false, false, false, nil) // acks processed
	require.NoError(t, err)
	b.stop()

	// After a restart the durable queue still holds its persistent tail.
	b = startDurableCfg(t, dir, server.Config{PageWindow: 10})
	_, ch = b.channel(t)
	var got []string
	for {
		d, ok, err := ch.Get("paged-durable", true)
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, string(d.Body))
	}
	var want []string
	for i := n / 2; i < n; i++ {
		if i%3 != 0 {
			want = append(want, fmt.Sprint(i))
		}
	}
	require.Equal(t, want, got, "persistent messages survive in order; transient ones are gone")
}

func TestPagingPurgeAndMaxLength(t *testing.T) {
	warrenOnly(t, "sets Warren's paging window (server.Config)")
	b := startDurableCfg(t, t.TempDir(), server.Config{PageWindow: 8})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("purge-me", false, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("capped", false, false, false, false, amqp.Table{"x-max-length": int32(20)})
	require.NoError(t, err)
	for i := 0; i < 100; i++ {
		publish(t, ch, "", "purge-me", body(fmt.Sprint(i)))
		publish(t, ch, "", "capped", body(fmt.Sprint(i)))
	}
	n, err := ch.QueuePurge("purge-me", false)
	require.NoError(t, err)
	require.Equal(t, 100, n)
	require.Equal(t, "", getBody(t, ch, "purge-me"))
	publish(t, ch, "", "purge-me", body("fresh"))
	require.Equal(t, "fresh", getBody(t, ch, "purge-me"))

	info, err := ch.QueueDeclarePassive("capped", false, false, false, false, amqp.Table{"x-max-length": int32(20)})
	require.NoError(t, err)
	require.Equal(t, 20, info.Messages)
	for i := 80; i < 100; i++ {
		require.Equal(t, fmt.Sprint(i), getBody(t, ch, "capped"))
	}
}
