package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitForOr is waitFor that adds what explain says (a status, a log) when
// it times out.
func waitForOr(t *testing.T, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s\n%s", what, explain())
}

// faultRounds is WARREN_CLUSTER_FAULT_ROUNDS (make cluster-faults), else 1.
func faultRounds(t *testing.T) int {
	if s := os.Getenv("WARREN_CLUSTER_FAULT_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err, "WARREN_CLUSTER_FAULT_ROUNDS")
		return n
	}
	return 1
}

// A faultCluster is three bin/warren processes whose inter-node links all
// pass through a faultProxy in this test, one per ordered pair (dialer,
// target), so that links can be cut and healed.
//
// A node's identity is its seed address string, and it finds itself among
// the seeds by resolving the seed's host to its own listener's IP; every
// node dials a peer at that same string. So that the others reach a proxy
// instead, each node runs in its own mount namespace (unshare -m) with its
// own /etc/hosts: there, its own name (wnodeN) is 127.0.0.1, where it
// listens, and every other node's name is 127.0.0.(20+N), where this
// node's proxies to them listen (on the target's port) and forward to
// 127.0.0.1. Everything stays on loopback.
type faultCluster struct {
	t       *testing.T
	nodes   []*clusterNode
	seeds   []string               // wnodeN:port, as the nodes name each other
	proxies map[[2]int]*faultProxy // [dialer, target]
}

// unshareArgs is how to run a command in a private mount namespace here
// (as root, or through a user namespace), or nil when neither works.
func unshareArgs() []string {
	for _, a := range [][]string{{"unshare", "-m", "--propagation", "private"}, {"unshare", "-r", "-m", "--propagation", "private"}} {
		if exec.Command(a[0], append(a[1:], "true")...).Run() == nil {
			return a
		}
	}
	return nil
}

func startFaultCluster(t *testing.T) *faultCluster {
	t.Helper()
	un := unshareArgs()
	if un == nil {
		t.Skip("needs unshare(1) with a mount namespace (root or user namespaces) to give each node its own /etc/hosts")
	}
	bin := warrenBinary(t)
	const n = 3
	fc := &faultCluster{t: t, proxies: map[[2]int]*faultProxy{}}
	listen := make([]string, n)
	ports := make([]string, n)
	for i := range n {
		listen[i] = freePort(t)
		_, ports[i], _ = net.SplitHostPort(listen[i])
		fc.seeds = append(fc.seeds, fmt.Sprintf("wnode%d:%s", i+1, ports[i]))
	}
	for j := range n { // dialer
		for i := range n { // target
			if i != j {
				p, err := newFaultProxy(fmt.Sprintf("127.0.0.%d:%s", 20+j, ports[i]), listen[i])
				require.NoError(t, err)
				t.Cleanup(p.close)
				fc.proxies[[2]int{j, i}] = p
			}
		}
	}
	for j := range n {
		dir := t.TempDir()
		hosts := "127.0.0.1 localhost\n"
		for i := range n {
			ip := fmt.Sprintf("127.0.0.%d", 20+j)
			if i == j {
				ip = "127.0.0.1"
			}
			hosts += fmt.Sprintf("%s wnode%d\n", ip, i+1)
		}
		hostsFile := filepath.Join(dir, "hosts")
		require.NoError(t, os.WriteFile(hostsFile, []byte(hosts), 0o644))
		// unshare execs (same pid), sh mounts the hosts file and execs
		// warren: signals reach the broker itself.
		script := fmt.Sprintf("#!/bin/sh\nexec %s sh -c 'mount --bind \"$0\" /etc/hosts && exec \"$@\"' %q %q \"$@\"\n",
			strings.Join(un, " "), hostsFile, bin)
		wrapper := filepath.Join(dir, "warren-ns")
		require.NoError(t, os.WriteFile(wrapper, []byte(script), 0o755))
		fc.nodes = append(fc.nodes, &clusterNode{t: t, bin: wrapper, name: fmt.Sprintf("warren%d@localhost", j+1), dir: dir,
			amqp: freePort(t), http: freePort(t), clusterAdr: listen[j], seeds: strings.Join(fc.seeds, ",")})
	}
	for _, nd := range fc.nodes {
		nd.start()
	}
	t.Cleanup(func() {
		for _, nd := range fc.nodes {
			nd.kill()
		}
	})
	for _, nd := range fc.nodes {
		nd.waitHTTP()
	}
	return fc
}

// leader waits until nodes[from] names a leader among live, and returns its
// index.
func (fc *faultCluster) leader(from int, live ...int) int {
	fc.t.Helper()
	lead := -1
	waitFor(fc.t, fmt.Sprintf("a leader as node %d sees it", from+1), func() bool {
		for _, n := range fc.nodes[from].status().Nodes {
			if i := slices.Index(fc.seeds, n.Addr); n.Leader && i >= 0 && slices.Contains(live, i) {
				lead = i
				return true
			}
		}
		return false
	})
	return lead
}

// isolate cuts (or, with cut false, heals) every link of node k.
func (fc *faultCluster) isolate(k int, cut bool) {
	for pair, p := range fc.proxies {
		if pair[0] == k || pair[1] == k {
			p.setCut(cut)
		}
	}
}

// faultProxy forwards TCP connections from its listener to target. Cut, it
// forwards nothing: bytes already queued and new ones are read and dropped
// (a partition loses packets, it does not reset connections), and new
// connections are accepted and held silent. Healed, it closes the
// connections it held (as a connection that lost data dies) and forwards
// new ones.
type faultProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	cut    bool               // guarded by mu
	pipes  map[*pipe]struct{} // guarded by mu
	wg     sync.WaitGroup
}

type pipe struct {
	a, b net.Conn // b nil for a connection accepted while cut
	dead atomic.Bool
}

func (p *pipe) close() {
	p.a.Close()
	if p.b != nil {
		p.b.Close()
	}
}

func newFaultProxy(listen, target string) (*faultProxy, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	fp := &faultProxy{l: l, target: target, pipes: map[*pipe]struct{}{}}
	fp.wg.Add(1)
	go fp.accept()
	return fp, nil
}

func (fp *faultProxy) accept() {
	defer fp.wg.Done()
	for {
		c, err := fp.l.Accept()
		if err != nil {
			return
		}
		p := &pipe{a: c}
		fp.mu.Lock()
		cut := fp.cut
		fp.mu.Unlock()
		if !cut {
			if b, err := net.DialTimeout("tcp", fp.target, 2*time.Second); err == nil {
				p.b = b
			} else {
				c.Close()
				continue
			}
		}
		fp.mu.Lock()
		if fp.cut {
			p.dead.Store(true)
		}
		fp.pipes[p] = struct{}{}
		fp.mu.Unlock()
		fp.wg.Add(1)
		go fp.copy(p, p.a, p.b)
		if p.b != nil {
			fp.wg.Add(1)
			go fp.copy(p, p.b, p.a)
		}
	}
}

// copy moves src to dst (dropping what it reads while p is dead; dst nil:
// dropping everything) until either side fails.
func (fp *faultProxy) copy(p *pipe, src, dst net.Conn) {
	defer fp.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && dst != nil && !p.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			p.close()
			fp.mu.Lock()
			delete(fp.pipes, p)
			fp.mu.Unlock()
			return
		}
	}
}

func (fp *faultProxy) setCut(cut bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.cut = cut
	for p := range fp.pipes {
		if cut {
			p.dead.Store(true)
		} else if p.dead.Load() {
			p.close() // its copy goroutines remove it
		}
	}
}

func (fp *faultProxy) close() {
	fp.l.Close()
	fp.mu.Lock()
	for p := range fp.pipes {
		p.close()
	}
	fp.mu.Unlock()
	fp.wg.Wait()
}

// sameNames waits until every node lists the same names at path, which
// include want and exclude dont, and returns them.
func sameNames(t *testing.T, nodes []*clusterNode, path string, want, dont []string) []string {
	t.Helper()
	var got [][]string
	waitForOr(t, "every node to list the same "+path, func() bool {
		got = got[:0]
		for _, nd := range nodes {
			ns := nd.names(path)
			slices.Sort(ns)
			got = append(got, ns)
		}
		for _, g := range got {
			if !slices.Equal(g, got[0]) {
				return false
			}
		}
		for _, w := range want {
			if !slices.Contains(got[0], w) {
				return false
			}
		}
		for _, d := range dont {
			if slices.Contains(got[0], d) {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("lists: %q\nwant %q, not %q", got, want, dont) })
	return got[0]
}
