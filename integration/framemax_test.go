package integration

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// methodOfSize returns a queue.declare for q whose encoded payload is exactly
// n octets: an ignored "pad" argument carries the filler.
func methodOfSize(t *testing.T, q string, n int) *amqp.QueueDeclare {
	t.Helper()
	m := &amqp.QueueDeclare{Queue: q, Arguments: amqp.Table{"pad": ""}}
	base := len(amqp.EncodeMethod(m))
	require.LessOrEqual(t, base, n)
	m.Arguments["pad"] = strings.Repeat("p", n-base)
	require.Len(t, amqp.EncodeMethod(m), n)
	return m
}

// TestFramePayloadAtFrameMax: RabbitMQ checks frame_max against the payload
// and not the whole frame (rabbit_reader.erl ?FRAME_SIZE_FUDGE), so a frame
// whose payload is exactly frame_max octets (frame_max+8 on the wire) is
// accepted, method or body alike, and one octet more is a connection error
// 501 with RabbitMQ's text. Checked against RabbitMQ 3.10.8 with a raw socket
// at frame_max 4096: payloads 4088..4096 accepted, 4097 refused with
// "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}".
// What Warren sends still fits in frame_max: the 4096-octet body comes back
// in frames of at most 4096 octets in all.
func TestFramePayloadAtFrameMax(t *testing.T) {
	b := startBroker(t, server.Config{})
	const frameMax = 4096
	open := func() *rawConn {
		r := dialRaw(t, b)
		r.open(amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: frameMax})
		r.send(1, &amqp.ChannelOpen{})
		_, ok := r.next().(*amqp.ChannelOpenOk)
		require.True(t, ok)
		return r
	}

	// A method frame at the limit.
	r := open()
	r.send(1, methodOfSize(t, "at-limit", frameMax))
	_, ok := r.next().(*amqp.QueueDeclareOk)
	require.True(t, ok, "queue.declare with a payload of frame_max octets")

	// A body frame at the limit, on the same connection: the stream stays in
	// sync and the message is whole.
	body := bytes.Repeat([]byte{'b'}, frameMax)
	r.send(1, &amqp.BasicPublish{RoutingKey: "at-limit"})
	hdr := amqp.AppendContentHeader(nil, uint64(len(body)), &amqp.Properties{})
	r.write(append(append(amqp.AppendFrameHeader(nil, amqp.FrameHeader, 1, len(hdr)), hdr...), amqp.FrameEnd))
	r.write(append(append(amqp.AppendFrameHeader(nil, amqp.FrameBody, 1, len(body)), body...), amqp.FrameEnd))
	r.send(1, &amqp.BasicGet{Queue: "at-limit", NoAck: true})
	_, ok = r.next().(*amqp.BasicGetOk)
	require.True(t, ok, "the message published with a body frame of frame_max octets was queued")
	var got []byte
	for len(got) < len(body) {
		f, err := r.fr.ReadFrame()
		require.NoError(t, err)
		require.LessOrEqual(t, len(f.Payload)+amqp.FrameOverhead, frameMax, "a frame Warren sends exceeds frame_max")
		if f.Type == amqp.FrameBody {
			got = append(got, f.Payload...)
		}
	}
	require.Equal(t, body, got)

	// One octet over, as a body frame and as a method frame.
	for typ, frame := range map[uint8][]byte{
		amqp.FrameBody: append(append(amqp.AppendFrameHeader(nil, amqp.FrameBody, 1, frameMax+1), bytes.Repeat([]byte{'b'}, frameMax+1)...), amqp.FrameEnd),
		amqp.FrameMethod: func() []byte {
			p := amqp.EncodeMethod(methodOfSize(t, "over", frameMax+1))
			return append(append(amqp.AppendFrameHeader(nil, amqp.FrameMethod, 1, len(p)), p...), amqp.FrameEnd)
		}(),
	} {
		r := open()
		if typ == amqp.FrameBody {
			r.send(1, &amqp.BasicPublish{RoutingKey: "at-limit"})
			h := amqp.AppendContentHeader(nil, frameMax+1, &amqp.Properties{})
			r.write(append(append(amqp.AppendFrameHeader(nil, amqp.FrameHeader, 1, len(h)), h...), amqp.FrameEnd))
		}
		r.write(frame)
		c := r.expectClose()
		require.Equal(t, uint16(amqp.FrameError), c.ReplyCode)
		require.Equal(t, fmt.Sprintf("FRAME_ERROR - type %d, all octets = <<>>: {frame_too_large,4097,4088}", typ), c.ReplyText)
	}
	stillServes(t, b)
}

// TestStartOkAtInitialFrameMax: before tune-ok RabbitMQ reads with its
// initial_frame_max, 4096 (rabbit_reader.erl start_connection): a start-ok
// whose payload is 4096 octets is answered with tune, one of 4097 gets no
// answer and the socket is closed (observed on RabbitMQ 3.10.8: reset after
// its 3 s grace, no connection.close).
func TestStartOkAtInitialFrameMax(t *testing.T) {
	b := startBroker(t, server.Config{})
	startOk := func(n int) []byte {
		m := &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US",
			ClientProperties: amqp.Table{"pad": ""}}
		base := len(amqp.EncodeMethod(m))
		m.ClientProperties["pad"] = strings.Repeat("p", n-base)
		p := amqp.EncodeMethod(m)
		require.Len(t, p, n)
		return append(append(amqp.AppendFrameHeader(nil, amqp.FrameMethod, 0, len(p)), p...), amqp.FrameEnd)
	}

	r := dialRaw(t, b)
	r.write(amqp.ProtocolHeader)
	r.next()
	r.write(startOk(amqp.FrameMinSize))
	_, ok := r.next().(*amqp.ConnectionTune)
	require.True(t, ok, "start-ok of 4096 octets accepted")

	r = dialRaw(t, b)
	r.write(amqp.ProtocolHeader)
	r.next()
	r.write(startOk(amqp.FrameMinSize + 1))
	r.expectEOF()
	stillServes(t, b)
}
