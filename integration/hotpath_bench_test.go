package integration

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// The whole publish → route → queue → deliver path of a real broker over
// loopback TCP, driven by raw frames so that the client side allocates
// nothing: allocs/op is the broker's allocations per message.
//
//	go test -run '^$' -bench PublishDeliver -benchmem ./integration
func BenchmarkPublishDeliver(b *testing.B) {
	b.Run("transient", func(b *testing.B) { benchPublishDeliver(b, 0) })
	b.Run("ack", func(b *testing.B) { benchPublishDeliver(b, 100) })
}

// benchPublishDeliver publishes 16-byte messages to a queue on one
// connection and consumes them on another: auto-ack when prefetch is 0,
// else manual acks (multiple, every prefetch/2 deliveries) with that
// prefetch.
func benchPublishDeliver(b *testing.B, prefetch int) {
	br := startBroker(b, server.Config{})
	const q = "hotpath"

	cons := dialRaw(b, br)
	cons.openDefault()
	cons.send(1, &amqp.ChannelOpen{})
	cons.next()
	cons.send(1, &amqp.QueueDeclare{Queue: q})
	cons.next()
	if prefetch > 0 {
		cons.send(1, &amqp.BasicQos{PrefetchCount: uint16(prefetch)})
		cons.next()
	}
	cons.send(1, &amqp.BasicConsume{Queue: q, ConsumerTag: "c", NoAck: prefetch == 0})
	_, ok := cons.next().(*amqp.BasicConsumeOk)
	require.True(b, ok)

	pub := dialRaw(b, br)
	pub.openDefault()
	pub.send(1, &amqp.ChannelOpen{})
	pub.next()

	// One batch of 100 publishes, written as one buffer again and again.
	const batch = 100
	var frames []byte
	header := amqp.AppendContentHeader(nil, 16, &amqp.Properties{})
	for range batch {
		frames = amqp.AppendMethodFrame(frames, 1, &amqp.BasicPublish{RoutingKey: q})
		frames = amqp.AppendContent(frames, 1, header, make([]byte, 16), 131072)
	}
	var ack []byte
	b.ReportAllocs()
	b.ResetTimer()
	errc := make(chan error, 1)
	go func() {
		for sent := 0; sent < b.N; sent += batch {
			if _, err := pub.nc.Write(frames); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	want := (b.N + batch - 1) / batch * batch
	for got := 0; got < want; {
		f, err := cons.fr.ReadFrame()
		if err != nil {
			b.Fatal(err)
		}
		if f.Type != amqp.FrameMethod {
			continue
		}
		cls, mid, _ := amqp.MethodIDs(f.Payload)
		if cls != amqp.ClassBasic || mid != 60 {
			b.Fatalf("unexpected method %d.%d", cls, mid)
		}
		got++
		if prefetch > 0 && got%(prefetch/2) == 0 {
			// basic.deliver: consumer-tag (shortstr) then the delivery tag.
			tag := binary.BigEndian.Uint64(f.Payload[5+int(f.Payload[4]):])
			ack = amqp.AppendMethodFrame(ack[:0], 1, &amqp.BasicAck{DeliveryTag: tag, Multiple: true})
			if _, err := cons.nc.Write(ack); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	require.NoError(b, <-errc)
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "msg/s")
}
