package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

type ctl struct {
	t           *testing.T
	bin, url    string
	amqpURL     string
	extraEnv    []string
	lastCommand string
}

// run runs warrenctl with args (and stdin), returning stdout, stderr and
// the exit status.
func (c *ctl) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(c.bin, append([]string{"--url", c.url, "--amqp-url", c.amqpURL}, args...)...)
	cmd.Env = append(os.Environ(), c.extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(c.t, err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run("", args...)
	require.Equal(c.t, 0, code, "warrenctl %s: %s%s", strings.Join(args, " "), out, errOut)
	return out
}

// fails runs a command that must fail with one line on stderr containing want.
func (c *ctl) fails(code int, want string, args ...string) {
	c.t.Helper()
	out, errOut, got := c.run("", args...)
	require.Equal(c.t, code, got, "warrenctl %s: %s%s", strings.Join(args, " "), out, errOut)
	require.Contains(c.t, errOut, want)
	require.Equal(c.t, 1, strings.Count(strings.TrimSpace(errOut), "\n")+1, "one line: %q", errOut)
}

func buildCtl(t *testing.T) string {
	bin := filepath.Join(t.TempDir(), "warrenctl")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/warrenctl").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

func TestWarrenctl(t *testing.T) {
	warrenOnly(t, "drives warrenctl, Warren's own CLI, against an in-process Warren's management handler")
	b := startBroker(t, server.Config{})
	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)
	c := &ctl{t: t, bin: buildCtl(t), url: hs.URL, amqpURL: b.url}

	require.Contains(t, c.ok("declare", "queue", "--durable", "--arg", "x-max-length=1000", "orders"), "queue orders declared")
	c.ok("declare", "exchange", "--type", "topic", "--durable", "events")
	c.ok("declare", "exchange", "--type", "x-delayed-message", "--arg", "x-delayed-type=direct", "--durable", "retries")
	c.ok("declare", "binding", "--source", "events", "--destination", "orders", "--routing-key", "order.*")
	require.Contains(t, c.ok("publish", "--exchange", "events", "--routing-key", "order.created", "--property", "content_type=text/plain", "--header", "n=1", "hello"), "published and routed")
	out, _, code := c.run("from stdin", "publish", "--exchange", "amq.default", "--routing-key", "orders", "-")
	require.Equal(t, 0, code)
	require.Contains(t, out, "routed")
	require.Contains(t, c.ok("publish", "--exchange", "events", "--routing-key", "nowhere", "x"), "not routed")

	q := c.ok("list", "queues")
	require.Regexp(t, `(?m)^/\s+orders\s+classic\s+true\s+2\s+0\s+0\s+\{"x-max-length":1000\}`, q)
	require.Contains(t, c.ok("list", "exchanges"), "x-delayed-message")
	require.Contains(t, c.ok("list", "bindings"), "order.*")
	js := c.ok("--format", "json", "list", "queues")
	require.Contains(t, js, `"name": "orders"`)
	got := c.ok("get", "--count", "5", "orders")
	require.Contains(t, got, "hello")
	require.Contains(t, got, "from stdin")
	require.Contains(t, c.ok("--format", "json", "get", "--ack-mode", "ack", "orders"), `"payload": "hello"`)
	// consume takes the rest and stops at --count.
	require.Contains(t, c.ok("consume", "--count", "1", "orders"), "orders\tfrom stdin")
	c.ok("publish", "--routing-key", "orders", "again")
	c.ok("purge", "queue", "orders")
	require.Contains(t, c.ok("get", "orders"), "the queue is empty")

	c.ok("declare", "vhost", "staging")
	c.ok("declare", "user", "--password", "s3cret", "--tags", "management", "alice")
	c.ok("--vhost", "staging", "declare", "permission", "--configure", "^app-", "alice")
	c.ok("declare", "policy", "--pattern", "^orders", "--apply-to", "queues", "--definition", "max-length=10", "cap")
	require.Contains(t, c.ok("list", "users"), "alice")
	require.Contains(t, c.ok("list", "vhosts"), "staging")
	require.Contains(t, c.ok("list", "permissions"), "^app-")
	require.Contains(t, c.ok("list", "policies"), "cap")
	require.Contains(t, c.ok("list", "connections"), "NAME")
	require.Contains(t, c.ok("list", "channels"), "NAME")
	require.Contains(t, c.ok("list", "consumers"), "QUEUE")
	require.Regexp(t, `queues\s+1`, c.ok("overview"))
	require.Equal(t, "ok\n", c.ok("health"))

	// Firehose tracing on and off (rabbitmqctl trace_on / trace_off).
	require.Contains(t, c.ok("trace", "on"), "tracing on for vhost /")
	require.True(t, b.Tracing("/"))
	require.Contains(t, c.ok("trace", "off", "--vhost", "/"), "tracing off for vhost /")
	require.False(t, b.Tracing("/"))

	// Definitions: export, delete, import restores the topology.
	dir := t.TempDir()
	file := filepath.Join(dir, "defs.json")
	c.ok("definitions", "export", file)
	before := c.ok("list", "bindings")
	c.ok("delete", "binding", "--source", "events", "--destination", "orders", "--routing-key", "order.*")
	c.ok("delete", "queue", "orders")
	c.ok("delete", "exchange", "events")
	c.ok("delete", "policy", "cap")
	c.ok("delete", "user", "alice")
	c.ok("delete", "vhost", "staging")
	require.NotContains(t, c.ok("list", "queues"), "orders")
	c.ok("definitions", "import", file)
	require.Equal(t, before, c.ok("list", "bindings"))
	require.Contains(t, c.ok("list", "queues"), "orders")
	require.Contains(t, c.ok("list", "users"), "alice")
	require.Contains(t, c.ok("list", "policies"), "cap")

	// perf: a short run prints live rates and a summary.
	perf := c.ok("perf", "--duration", "2s", "--producers", "1", "--consumers", "1", "--rate", "2000")
	require.Contains(t, perf, "time   1.0s")
	require.Regexp(t, `summary: .* sent \d+ .* received \d+`, perf)
	require.Contains(t, perf, "latency: p50")
	// Several queues: each producer and consumer spreads over its share
	// (queues 0 and 2 for worker 0, 1 and 3 for worker 1); consumers ack
	// with multiple across queues on one channel without a channel error.
	perf = c.ok("perf", "--duration", "2s", "--producers", "2", "--consumers", "2", "--queues", "4",
		"--queue-pattern", "spread-%d", "--persistent", "--prefetch", "10", "--rate", "500")
	require.Regexp(t, `summary: .* sent \d+ .* received [1-9]\d+`, perf)
	var qs []struct {
		Name  string
		Stats struct{ Publish, Ack int } `json:"message_stats"`
	}
	require.NoError(t, json.Unmarshal([]byte(c.ok("--format", "json", "list", "queues")), &qs))
	published := map[string]int{}
	for _, q := range qs {
		if strings.HasPrefix(q.Name, "spread-") {
			require.Positive(t, q.Stats.Ack, q.Name)
			published[q.Name] = q.Stats.Publish
		}
	}
	for i := range 4 {
		require.Greater(t, published[fmt.Sprintf("spread-%d", i)], 100, "queue spread-%d used", i)
	}

	// Bad input: a one-line error and a non-zero exit.
	c.fails(2, "list what?", "list", "nothing")
	c.fails(2, "--arg wants key=value", "declare", "queue", "--arg", "oops", "q")
	c.fails(1, "404 not found", "delete", "queue", "no-such-queue")
	c.fails(1, "400: inequivalent arg 'durable'", "declare", "queue", "--durable=false", "orders")
	c.fails(1, "401 unauthorized", "--password", "wrong", "list", "queues")
	bad := *c
	bad.url = "http://127.0.0.1:1"
	bad.fails(1, "cannot reach the broker", "list", "queues")
	c.fails(2, "--format must be table or json", "--format", "xml", "list", "queues")

	// Flags after the arguments, global and command flags alike; "--" ends
	// the flags and a flag's value may start with '-'.
	js = c.ok("list", "queues", "--format", "json", "--name", "^orders$")
	require.Contains(t, js, `"name": "orders"`)
	require.NotContains(t, js, `"name": "spread-0"`)
	c.ok("publish", "--routing-key", "orders", "--", "-dash-")
	require.Contains(t, c.ok("get", "orders", "--count", "5", "--ack-mode", "ack", "--format", "json"), `"payload": "-dash-"`)
	c.ok("declare", "queue", "--", "-x")
	require.Contains(t, c.ok("publish", "body", "--routing-key", "-x"), "published and routed")
	require.Contains(t, c.ok("consume", "--count", "1", "--", "-x"), "-x\tbody")
	c.fails(2, "flag needs an argument: --count", "get", "orders", "--count")

	// --help on every command shows an example.
	for _, args := range [][]string{{"list"}, {"declare", "queue"}, {"declare", "exchange"}, {"declare", "binding"}, {"declare", "user"},
		{"declare", "vhost"}, {"declare", "permission"}, {"declare", "policy"}, {"delete", "queue"}, {"delete", "binding"}, {"purge", "queue"},
		{"publish"}, {"get"}, {"consume"}, {"definitions", "export"}, {"definitions", "import"}, {"close", "connection"}, {"overview"}, {"perf"}} {
		help := c.ok(append(args, "--help")...)
		require.Contains(t, help, "warrenctl ", "%v --help", args)
		require.Regexp(t, `(?i)example`, help, "%v --help has an example", args)
	}
}

// TestWarrenctlFindsAMQPListener: without --amqp-url, consume and perf dial
// the AMQP listener that GET /api/overview lists (RabbitMQ's shape: node,
// protocol "amqp", ip_address, port), not the management host on 5672: the
// broker here listens on a port the kernel picked. The queues exist on this
// broker only, so reaching another one on 5672 fails the test too.
func TestWarrenctlFindsAMQPListener(t *testing.T) {
	warrenOnly(t, "drives warrenctl against an in-process Warren's management handler")
	b := startBroker(t, server.Config{})
	require.NotEqual(t, "127.0.0.1:5672", b.addr)
	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)
	c := &ctl{t: t, bin: buildCtl(t), url: hs.URL} // --amqp-url "" is no --amqp-url

	c.ok("declare", "queue", "found-by-overview")
	c.ok("publish", "--routing-key", "found-by-overview", "hello")
	require.Contains(t, c.ok("consume", "--count", "1", "found-by-overview"), "found-by-overview\thello")

	// Producers only: the queue stays, with what perf sent to this broker.
	perf := c.ok("perf", "--consumers", "0", "--duration", "1s", "--rate", "200", "--queue-pattern", "perf-by-overview")
	require.Regexp(t, `summary: .* sent [1-9]\d* `, perf)
	eventually(t, func() bool {
		var qs []struct{ Messages int }
		require.NoError(t, json.Unmarshal([]byte(c.ok("--format", "json", "list", "queues", "--name", "^perf-by-overview$")), &qs))
		return len(qs) == 1 && qs[0].Messages > 0
	}, "perf published to this broker")
}
