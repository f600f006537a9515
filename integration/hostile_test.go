package integration

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	amqpw "github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// TestStuckConsumerIsClosed: a consumer that never reads its socket gets
// no more deliveries once its outbound buffer is full, is closed after the
// write timeout, and the publisher and other clients carry on.
func TestStuckConsumerIsClosed(t *testing.T) {
	warrenOnly(t, "sets a 1 s write timeout (server.Config) and counts connections with Server.Connections")
	b := startBroker(t, server.Config{WriteTimeout: time.Second})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("stuck", false, false, false, false, nil)
	require.NoError(t, err)

	r := dialRaw(t, b)
	r.nc.(*net.TCPConn).SetReadBuffer(4096)
	r.openDefault()
	r.send(1, &amqpw.ChannelOpen{})
	_, ok := r.next().(*amqpw.ChannelOpenOk)
	require.True(t, ok)
	r.send(1, &amqpw.BasicConsume{Queue: "stuck", ConsumerTag: "never-reads", NoAck: true})
	_, ok = r.next().(*amqpw.BasicConsumeOk)
	require.True(t, ok)
	require.Len(t, b.Connections(), 2)
	// From here on the raw client reads nothing.

	body := make([]byte, 64<<10)
	for i := range 400 { // 25 MiB, more than the socket buffers hold
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "stuck", false, false, amqp.Publishing{Body: body, MessageId: fmt.Sprint(i)}))
	}
	eventually(t, func() bool { return len(b.Connections()) == 1 }, "the stuck connection was closed")
	stillServes(t, b)
	// What it did not take stays in the queue (auto-ack deliveries in its
	// buffer are gone with it, as with RabbitMQ).
	q, err := ch.QueueDeclarePassive("stuck", false, false, false, false, nil)
	require.NoError(t, err)
	require.Greater(t, q.Messages, 0)
}

// TestConnectionAndChannelStorms: many connection attempts at once, some
// abandoned mid-handshake, and channels opened and closed in a loop; the
// broker keeps serving and holds nothing afterwards.
func TestConnectionAndChannelStorms(t *testing.T) {
	warrenOnly(t, "sets a 2 s handshake timeout (server.Config) and counts connections with Server.Connections")
	b := startBroker(t, server.Config{HandshakeTimeout: 2 * time.Second})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := net.Dial("tcp", b.addr)
			if err != nil {
				return
			}
			defer nc.Close()
			if i%2 == 0 {
				nc.Write(amqpw.ProtocolHeader[:4]) // a partial header, then gone
				return
			}
			c, err := amqp.Dial(b.url)
			if err == nil {
				c.Close()
			}
		}()
	}
	wg.Wait()
	c := b.dial(t)
	for range 500 {
		ch, err := c.Channel()
		require.NoError(t, err)
		require.NoError(t, ch.Close())
	}
	eventually(t, func() bool { return len(b.Connections()) == 1 }, "only the test's connection is left")
	stillServes(t, b)
}

// TestMessageAndHeaderSizeLimits: a body over the maximum message size is a
// channel error 406 with RabbitMQ's text; a content header (properties,
// headers) larger than the negotiated frame_max is a connection error 501
// before it is buffered; a 255-byte queue name (the protocol's maximum) works.
func TestMessageAndHeaderSizeLimits(t *testing.T) {
	warrenOnly(t, "sets a 1000-byte maximum message size (server.Config)")
	b := startBroker(t, server.Config{MaxMessageSize: 1000})
	c, ch := b.channel(t)
	q, err := ch.QueueDeclare(strings.Repeat("q", 255), false, true, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{Body: make([]byte, 1000)}))
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, ch.PublishWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{Body: make([]byte, 1001)}))
	_, err = ch.QueueDeclarePassive(q.Name, false, true, false, false, nil)
	ae := amqpErr(t, closeReason(t, closed, err), 406)
	require.Equal(t, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000", ae.Reason)
	require.False(t, c.IsClosed())

	r := dialRaw(t, b)
	r.open(amqpw.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096})
	r.send(1, &amqpw.ChannelOpen{})
	r.next()
	r.send(1, &amqpw.BasicPublish{RoutingKey: q.Name})
	hdr := amqpw.AppendContentHeader(nil, 1, &amqpw.Properties{Flags: amqpw.FlagHeaders, Headers: amqpw.Table{"big": strings.Repeat("h", 5000)}})
	frame := append(amqpw.AppendFrameHeader(nil, amqpw.FrameHeader, 1, len(hdr)), hdr...)
	r.write(append(frame, amqpw.FrameEnd))
	cl := r.expectClose()
	require.Equal(t, uint16(amqpw.FrameError), cl.ReplyCode)
	require.Contains(t, cl.ReplyText, "FRAME_ERROR")
	stillServes(t, b)
}
