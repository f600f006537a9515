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

// TestWebConsole drives the console in headless Chromium (Debian's
// chromium package, through playwright-core from npm): login, overview
// charts, paged lists, queue page actions, admin forms, definitions. `make
// client-deps` installs both.
func TestWebConsole(t *testing.T) {
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
	startShovels(t, b)
	c, err := amqp.DialConfig(b.url, amqp.Config{Properties: amqp.Table{"connection_name": "console-fixture"}})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	require.NoError(t, err)
	for i := range 149 {
		_, err := ch.QueueDeclare(fmt.Sprintf("load-%03d", i), false, false, false, false, nil)
		require.NoError(t, err)
	}
	_, err = ch.QueueDeclare("orders", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 3 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "orders", false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}))
	}
	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", "console.test.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CONSOLE_URL="+hs.URL+"/", "CHROMIUM="+chromium)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	require.NoError(t, err, "console tests failed")
	require.Contains(t, string(out), "ℹ fail 0")
	require.False(t, strings.Contains(string(out), "ℹ pass 0"))
}
