package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// consoleTools are what a console test needs: Debian's chromium and
// playwright-core from npm in integration/web; `make client-deps` installs
// both.
type consoleTools struct{ chromium, dir string }

// needConsole finds the console tools before a test builds its fixture,
// and fails the test (a console test that does not run shows nothing) when
// one is missing.
func needConsole(t *testing.T) consoleTools {
	t.Helper()
	warrenOnly(t, "drives Warren's own web console")
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (run `make client-deps`): %v", err)
	}
	dir, err := filepath.Abs("web")
	require.NoError(t, err)
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed in %s (run `make client-deps`)", dir)
	}
	return consoleTools{chromium, dir}
}

// run runs the node test file script of integration/web against the
// console served at base (a management API's URL), with CONSOLE_URL,
// CHROMIUM and env set, and requires that its tests ran and all passed.
func (c consoleTools) run(t *testing.T, script, base string, timeout time.Duration, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "--test", "--test-reporter=spec", script)
	cmd.Dir = c.dir
	cmd.Env = append(append(os.Environ(), "CONSOLE_URL="+base+"/", "CHROMIUM="+c.chromium), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	require.NoError(t, err, "console tests failed")
	require.Contains(t, string(out), "ℹ fail 0")
	require.False(t, strings.Contains(string(out), "ℹ pass 0"))
}

// TestWebConsole drives the console in headless Chromium (Debian's
// chromium package, through playwright-core from npm): login, overview
// charts, paged lists, queue page actions, admin forms, definitions.
func TestWebConsole(t *testing.T) {
	console := needConsole(t)
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
	console.run(t, "console.test.js", b.api(t), 3*time.Minute)
}
