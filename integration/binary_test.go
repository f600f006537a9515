package integration

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	warrenOnly(t, "starts bin/warren")
	bin := buildWarren(t)
	cmd := exec.Command(bin, "--http-listen", "127.0.0.1:0", "--prometheus-listen", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "WARREN_AMQP_LISTEN=127.0.0.1:0", "WARREN_DATA_DIR="+t.TempDir(), "WARREN_LOG_LEVEL=info")
	start := time.Now()
	addrs := runWarrenListeners(t, cmd, "AMQP", "HTTP", "PROMETHEUS")
	addr := addrs["AMQP"]
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// /api/overview lists every listener in RabbitMQ's shape.
	req, err := http.NewRequest("GET", "http://"+addrs["HTTP"]+"/api/overview", nil)
	require.NoError(t, err)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var overview struct {
		Listeners []struct {
			Protocol  string
			IPAddress string `json:"ip_address"`
			Port      int
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&overview))
	resp.Body.Close()
	got := map[string]string{}
	for _, l := range overview.Listeners {
		require.Equal(t, "127.0.0.1", l.IPAddress, "listener %+v", l)
		got[l.Protocol] = net.JoinHostPort(l.IPAddress, strconv.Itoa(l.Port))
	}
	require.Equal(t, map[string]string{"amqp": addr, "http": addrs["HTTP"], "prometheus": addrs["PROMETHEUS"]}, got)
	resp, err = http.Get("http://" + addrs["PROMETHEUS"] + "/metrics")
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

// TestBinaryConfigFile: settings from --config, overridden by the
// environment and then by flags; a typo in the file is an error.
func TestBinaryConfigFile(t *testing.T) {
	warrenOnly(t, "starts bin/warren with a config file")
	bin := buildWarren(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "warren.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(
		"amqp-listen: 127.0.0.1:0\nhttp-listen: \"\"\nprometheus-listen: \"\"\ndata-dir: "+filepath.Join(dir, "data")+
			"\nchannel-max: 7\nframe-max: 65536\ndefault-user: admin\ndefault-pass: from-file\nloopback-users: [admin]\n"), 0o600))
	cmd := exec.Command(bin, "--config", cfg, "--frame-max", "32768")
	cmd.Env = append(os.Environ(), "WARREN_DEFAULT_PASS=from-env")
	addr := runWarren(t, cmd)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	_, err := amqp.Dial("amqp://admin:from-file@" + addr + "/")
	require.Error(t, err, "the environment overrides the file")
	c, err := amqp.Dial("amqp://admin:from-env@" + addr + "/")
	require.NoError(t, err)
	defer c.Close()
	require.Equal(t, uint16(7), c.Config.ChannelMax, "channel-max from the file")
	require.Equal(t, 32768, c.Config.FrameSize, "the flag overrides the file")

	require.NoError(t, os.WriteFile(cfg, []byte("amqp-listen: 127.0.0.1:0\nchanel-max: 7\n"), 0o600))
	out, err := exec.Command(bin, "--config", cfg).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), `unknown setting "chanel-max"`)
	out, err = exec.Command(bin, "--config", filepath.Join(dir, "missing.yaml")).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "missing.yaml")
	// The documented example file is a valid configuration.
	ex := exec.Command(bin, "--config", "../warren.yaml.example", "--amqp-listen", "127.0.0.1:0", "--http-listen", "",
		"--prometheus-listen", "", "--data-dir", filepath.Join(dir, "example"))
	runWarren(t, ex)
	ex.Process.Kill()
	ex.Wait()
	out, err = exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--channel-max", "0").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--channel-max 0: must be from 1 to 65535")
}
