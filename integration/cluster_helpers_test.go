package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// clusterNode is one bin/warren process of a test cluster on loopback.
type clusterNode struct {
	t                      *testing.T
	bin, name, dir         string
	amqp, http, clusterAdr string
	seeds                  string
	args                   []string // more flags
	cmd                    *exec.Cmd
	log                    *os.File
}

// freePort returns a loopback address with a port nothing listens on now,
// for a broker process started later (or restarted) on it. The port comes
// from below the kernel's ephemeral range, so no outgoing connection and no
// listener on :0 of any test running alongside is handed it in between;
// ports go round in turn from a random start, each checked free.
func freePort(t testing.TB) string {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	lo, hi := 10000, ephemeralLow()
	if hi-lo < 1000 { // an unusual ephemeral range: take what the kernel gives
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().String()
	}
	if nextPort < lo || nextPort >= hi {
		nextPort = lo + rand.Intn(hi-lo)
	}
	for i := 0; i < hi-lo; i++ {
		p := nextPort
		if nextPort++; nextPort >= hi {
			nextPort = lo
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		if handed[addr] {
			continue
		}
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			handed[addr] = true
			return addr
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return ""
}

var (
	portMu   sync.Mutex
	nextPort int
)

// handed are the addresses freePort and joinAddr gave out, never given
// twice (a node prepared but not started has not bound its ports yet).
var handed = map[string]bool{}

func portTaken(a string) bool {
	portMu.Lock()
	defer portMu.Unlock()
	return handed[a]
}

func takePort(a string) {
	portMu.Lock()
	defer portMu.Unlock()
	handed[a] = true
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if
// it cannot be read).
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(raw), &lo, &hi); err != nil || lo <= 0 {
		return 32768
	}
	return lo
}

var (
	clusterBinOnce sync.Once
	clusterBin     string
	clusterBinErr  error
)

// warrenBinary builds cmd/warren once for all cluster tests.
func warrenBinary(t *testing.T) string {
	t.Helper()
	clusterBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warren-cluster-bin")
		if err != nil {
			clusterBinErr = err
			return
		}
		clusterBin = filepath.Join(dir, "warren")
		out, err := exec.Command("go", "build", "-o", clusterBin, "../cmd/warren").CombinedOutput()
		if err != nil {
			clusterBinErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	require.NoError(t, clusterBinErr)
	return clusterBin
}

// startTestCluster starts n nodes that name each other as seeds. extra
// nodes are prepared (ports, data directories) but not started, with the
// same seeds: they join when started.
func startTestCluster(t *testing.T, n, extra int, args ...string) []*clusterNode {
	t.Helper()
	bin := warrenBinary(t)
	nodes := make([]*clusterNode, n+extra)
	var seeds []string
	for i := range nodes {
		nodes[i] = &clusterNode{t: t, bin: bin, name: fmt.Sprintf("warren%d@localhost", i+1), dir: t.TempDir(),
			amqp: freePort(t), http: freePort(t), clusterAdr: freePort(t), args: args}
		if i < n {
			seeds = append(seeds, nodes[i].clusterAdr)
		}
	}
	for i, nd := range nodes {
		nd.seeds = strings.Join(seeds, ",")
		if i < n {
			nd.start()
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.kill()
		}
	})
	for _, nd := range nodes[:n] {
		nd.waitHTTP()
	}
	return nodes
}

func (nd *clusterNode) start() {
	t := nd.t
	t.Helper()
	f, err := os.OpenFile(filepath.Join(nd.dir, "warren.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	require.NoError(t, err)
	nd.log = f
	args := append([]string{"--node-name", nd.name, "--data-dir", filepath.Join(nd.dir, "data"),
		"--amqp-listen", nd.amqp, "--http-listen", nd.http, "--prometheus-listen", "",
		"--cluster-listen", nd.clusterAdr, "--cluster-seeds", nd.seeds, "--cluster-tick", "50ms", "--log-level", "info"}, nd.args...)
	nd.cmd = exec.Command(nd.bin, args...)
	nd.cmd.Stdout, nd.cmd.Stderr = f, f
	require.NoError(t, nd.cmd.Start())
}

// waitHTTP waits until the node's management API answers.
func (nd *clusterNode) waitHTTP() {
	nd.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + nd.http + "/api/health/checks/alive"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	nd.t.Fatalf("%s did not start; log:\n%s", nd.name, nd.logText())
}

func (nd *clusterNode) logText() string {
	b, _ := os.ReadFile(filepath.Join(nd.dir, "warren.log"))
	return string(b)
}

// kill -9s the node (a no-op when it is not running).
func (nd *clusterNode) kill() {
	if nd.cmd == nil {
		return
	}
	nd.cmd.Process.Kill()
	nd.cmd.Wait()
	nd.cmd = nil
	nd.log.Close()
}

// signal sends sig to the running node.
func (nd *clusterNode) signal(sig syscall.Signal) {
	require.NoError(nd.t, nd.cmd.Process.Signal(sig))
}

func (nd *clusterNode) url() string { return "amqp://guest:guest@" + nd.amqp + "/" }

// channel opens a connection to the node, closed when the test ends, and
// a channel on it.
func (nd *clusterNode) channel() *amqp.Channel {
	nd.t.Helper()
	c, err := amqp.Dial(nd.url())
	require.NoError(nd.t, err)
	nd.t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	require.NoError(nd.t, err)
	return ch
}

// api calls the node's management API as guest.
func (nd *clusterNode) api(method, path, body string) (int, []byte) {
	nd.t.Helper()
	req, err := http.NewRequest(method, "http://"+nd.http+path, strings.NewReader(body))
	require.NoError(nd.t, err)
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	require.NoError(nd.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// names lists the "name" of each object GET path returns.
func (nd *clusterNode) names(path string) []string {
	nd.t.Helper()
	code, raw := nd.api("GET", path, "")
	require.Equal(nd.t, 200, code, string(raw))
	var items []map[string]any
	require.NoError(nd.t, json.Unmarshal(raw, &items))
	var out []string
	for _, it := range items {
		if n, ok := it["name"].(string); ok {
			out = append(out, n)
		}
	}
	return out
}

type clusterStatus struct {
	Nodes []struct {
		ID      uint64 `json:"id"`
		Name    string `json:"name"`
		Addr    string `json:"addr"`
		Running bool   `json:"running"`
		Leader  bool   `json:"leader"`
		Voter   bool   `json:"voter"`
	} `json:"nodes"`
}

func (nd *clusterNode) status() clusterStatus {
	nd.t.Helper()
	code, raw := nd.api("GET", "/api/cluster", "")
	require.Equal(nd.t, 200, code, string(raw))
	var st clusterStatus
	require.NoError(nd.t, json.Unmarshal(raw, &st))
	return st
}

// waitFor polls cond (every 20 ms, up to 20 s); on a timeout the test
// fails with what and, when given, what explain says of the state.
func waitFor(t *testing.T, what string, cond func() bool, explain ...func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, e := range explain {
		what += "\n" + e()
	}
	t.Fatalf("timed out waiting for %s", what)
}
