package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The real client libraries people point at RabbitMQ, each run against a
// fresh Warren, over plain TCP and over TLS: amqplib from npm, pika and
// Celery from Debian, rabbitmq-c's amqp-tools from Debian. `make client-deps` installs them (make test does
// it first); a missing one is a failure, never a skip.

// clientBroker starts a broker with plain and TLS listeners and returns the
// environment a client test reads: AMQP_URL, AMQPS_URL and the PEM files
// TLS_CA, TLS_CERT and TLS_KEY (a client certificate for guest, for
// EXTERNAL). noSlash drops the URLs' trailing "/" (rabbitmq-c reads "host/"
// as the vhost "", as RabbitMQ's URI spec says).
func clientBroker(t *testing.T, noSlash bool) []string {
	t.Helper()
	p := newPKI(t)
	b, tlsAddr := startTLSBroker(t, p, false)
	url, tlsURL := b.url, "amqps://guest:guest@"+tlsAddr+"/"
	if noSlash {
		url, tlsURL = strings.TrimSuffix(url, "/"), strings.TrimSuffix(tlsURL, "/")
	}
	return []string{"AMQP_URL=" + url, "AMQPS_URL=" + tlsURL, "TLS_CA=" + p.ca, "TLS_CERT=" + p.clientCert, "TLS_KEY=" + p.clientKy}
}

// runClient runs argv in dir with env (from clientBroker) and fails the
// test, showing the output, unless it exits 0.
func runClient(t *testing.T, dir string, env []string, timeout time.Duration, argv ...string) string {
	t.Helper()
	if _, err := exec.LookPath(argv[0]); err != nil {
		t.Fatalf("%s not found (run `make client-deps`): %v", argv[0], err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), env...), "PYTHONDONTWRITEBYTECODE=1")
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	t.Logf("%s", out)
	return string(out)
}

func clientDir(t *testing.T, name string) string {
	dir, err := filepath.Abs(filepath.Join("clients", name))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestClientNodeAmqplib(t *testing.T) {
	warrenOnly(t, "the client suites also run over TLS and EXTERNAL, against Warren's TLS listener with the test's PKI")
	dir := clientDir(t, "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "amqplib")); err != nil {
		t.Fatalf("amqplib is not installed in %s (run `make client-deps`)", dir)
	}
	out := runClient(t, dir, clientBroker(t, false), 2*time.Minute, "node", "--test", "--test-reporter=spec")
	if !strings.Contains(out, "ℹ fail 0") {
		t.Fatalf("node --test reported failures:\n%s", out)
	}
}

func TestClientPythonPika(t *testing.T) {
	warrenOnly(t, "the client suites also run over TLS and EXTERNAL, against Warren's TLS listener with the test's PKI")
	runClient(t, clientDir(t, "python"), clientBroker(t, false), 2*time.Minute, "/usr/bin/python3", "-m", "unittest", "-v", "test_pika")
}

func TestClientCelery(t *testing.T) {
	warrenOnly(t, "the client suites also run over TLS and EXTERNAL, against Warren's TLS listener with the test's PKI")
	runClient(t, clientDir(t, "python"), clientBroker(t, false), 3*time.Minute, "/usr/bin/python3", "-m", "unittest", "-v", "test_celery")
}

func TestClientAmqpTools(t *testing.T) {
	warrenOnly(t, "the client suites also run over TLS and EXTERNAL, against Warren's TLS listener with the test's PKI")
	if _, err := exec.LookPath("amqp-publish"); err != nil {
		t.Fatalf("amqp-tools not installed (run `make client-deps`): %v", err)
	}
	out := runClient(t, clientDir(t, "c"), clientBroker(t, true), time.Minute, "bash", "amqp_tools.sh")
	if !strings.Contains(out, "amqp-tools: ok") {
		t.Fatalf("amqp_tools.sh did not finish:\n%s", out)
	}
}
