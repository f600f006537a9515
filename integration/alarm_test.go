package integration

import (
	"context"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestResourceAlarmBlocksPublishersNotConsumers(t *testing.T) {
	warrenOnly(t, "raises a memory alarm with Server.SetAlarm")
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

// The resource watcher raises the alarms by itself from real measurements:
// a memory limit below the broker's RSS, a free-disk limit above what the
// disk has.
func TestResourceWatcherRaisesAlarms(t *testing.T) {
	warrenOnly(t, "configures memory and disk limits (server.Config)")
	for _, c := range []struct {
		name string
		cfg  server.Config
		want string
	}{
		{"memory", server.Config{MemoryLimit: 1}, "memory"},
		{"disk", server.Config{DiskFreeLimit: 1 << 62, DataDir: t.TempDir()}, "disk"},
	} {
		b := startBroker(t, c.cfg)
		eventually(t, func() bool {
			a := b.Alarms()
			return len(a) == 1 && a[0] == c.want
		}, c.name+" alarm raised")
		conn, ch := b.channel(t)
		// A blocked connection is not read (as in RabbitMQ), so the client's
		// own close would wait for ever: shut the broker down first.
		t.Cleanup(func() { b.Shutdown(context.Background()) })
		blocked := conn.NotifyBlocked(make(chan amqp.Blocking, 1))
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "x", false, false, body("held")))
		select {
		case bl := <-blocked:
			require.True(t, bl.Active, c.name)
		case <-timeout():
			t.Fatalf("%s: no connection.blocked", c.name)
		}
	}
}
