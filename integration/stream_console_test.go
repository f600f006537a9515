package integration

import (
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// TestWebConsoleStream drives a stream's console page in headless Chromium
// (web/stream.console.test.js): the log's first and last offset, size and
// segments, each consumer's lag, a named consumer's stored offset, and
// browsing from any offset.
func TestWebConsoleStream(t *testing.T) {
	console := needConsole(t)
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("events", true, false, false, false, streamArgs(amqp.Table{"x-stream-max-segment-size-bytes": int32(2000)}))
	require.NoError(t, err)
	streamPublish(t, b, "events", bodiesN("event-", 0, 100)...)
	// A named consumer that acked 0-39 and left; one still reading, 5 in.
	c, ds := namedConsume(t, b.url, "events", "", 40, amqp.Table{"x-stream-consumer-name": "audit", "x-stream-offset": "first"})
	dd, _ := recvOffsets(t, ds, 40)
	require.NoError(t, dd[39].Ack(true))
	waitTracked(t, b.api(t), "/", "events", "audit", 40)
	c.Close()
	_, ds = namedConsume(t, b.url, "events", "reader", 5, amqp.Table{"x-stream-offset": "first"})
	recvOffsets(t, ds, 5)
	info := queueInfo(t, b, "events")
	require.Greater(t, info["segments"], float64(2))

	console.run(t, "stream.console.test.js", b.api(t), 2*time.Minute,
		fmt.Sprintf("SEGMENTS=%v", info["segments"]), fmt.Sprintf("BYTES=%v", info["message_bytes"]))
}
