package integration

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// buildWarren builds cmd/warren once per test binary.
func buildWarren(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warren")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/warren").CombinedOutput()
	require.NoError(t, err, string(out))
	return bin
}

var listenRe = regexp.MustCompile(`(AMQPS?|HTTPS?|PROMETHEUS) listening\s+\{"addr": "([^"]+)"\}`)

// TestBinaryFlagsEnvAndSIGTERM runs bin/warren as a subprocess configured by
// environment variables, and checks it starts quickly and closes clients
// with 320 on SIGTERM.
func TestBinaryFlagsEnvAndSIGTERM(t *testing.T) {
	bin := buildWarren(t)
	cmd := exec.Command(bin, "--http-listen", "127.0.0.1:0", "--prometheus-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "WARREN_AMQP_LISTEN=127.0.0.1:0", "WARREN_DATA_DIR="+t.TempDir(), "WARREN_LOG_LEVEL=info")
	start := time.Now()
	addrs := runWarrenListeners(t, cmd, "AMQP", "PROMETHEUS")
	addr := addrs["AMQP"]
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	resp, err := http.Get("http://" + addrs["PROMETHEUS"] + "/metrics")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	require.Contains(t, string(body), "rabbitmq_connections 0")
	c, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
	require.NoError(t, err)
	t.Logf("accepting connections %v after start", time.Since(start))
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case e := <-closed:
		require.NotNil(t, e)
		require.Equal(t, 320, e.Code)
	case <-time.After(10 * time.Second):
		t.Fatal("no connection.close 320 after SIGTERM")
	}
	require.NoError(t, cmd.Wait(), "clean exit after SIGTERM")
}
