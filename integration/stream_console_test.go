package integration

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

// TestWebConsoleStream drives a stream's console page in headless Chromium
// (web/stream.console.test.js): the log's first and last offset, size and
// segments, each consumer's lag, a named consumer's stored offset, and
// browsing from any offset.
func TestWebConsoleStream(t *testing.T) {
	warrenOnly(t, "drives Warren's own web console")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (run `make client-deps`): %v", err)
	}
	dir, err := filepath.Abs(filepath.Join("web"))
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed in %s (run `make client-deps`)", dir)
	}
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err = ch.QueueDeclare("events", true, false, false, false, streamArgs(amqp.Table{"x-stream-max-segment-size-bytes": int32(2000)}))
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

	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "stream.console.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONSOLE_URL="+hs.URL+"/", "CHROMIUM="+chromium,
		fmt.Sprintf("SEGMENTS=%v", info["segments"]), fmt.Sprintf("BYTES=%v", info["message_bytes"]))
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	require.NoError(t, err, "console tests failed")
	require.Contains(t, string(out), "ℹ fail 0")
	require.False(t, strings.Contains(string(out), "ℹ pass 0"))
}
