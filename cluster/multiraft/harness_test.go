package multiraft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/cluster/transport"
)

// kvSM is a test state machine: the list of applied payloads.
type kvSM struct {
	mu   sync.Mutex
	data [][]byte
}

func (s *kvSM) Apply(ents []Entry) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Result, len(ents))
	for i, e := range ents {
		s.data = append(s.data, e.Data)
		out[i] = Result{Value: len(s.data)}
	}
	return out
}

func (s *kvSM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	for _, d := range s.data {
		b = binary.AppendUvarint(b, uint64(len(d)))
		b = append(b, d...)
	}
	return b, nil
}

func (s *kvSM) Restore(b []byte) error {
	var data [][]byte
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return errors.New("bad snapshot")
		}
		data = append(data, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	s.mu.Lock()
	s.data = data
	s.mu.Unlock()
	return nil
}

func (s *kvSM) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.data)
}

func (s *kvSM) copy() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.data)
}

// proxy forwards one node pair's TCP connection and can cut it.
type proxy struct {
	l  net.Listener
	wg sync.WaitGroup

	mu      sync.Mutex
	target  string
	blocked bool
	conns   map[net.Conn]bool
}

func newProxy(t testing.TB) *proxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, conns: make(map[net.Conn]bool)}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c)
			}()
		}
	}()
	return p
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	target, blocked := p.target, p.blocked
	p.mu.Unlock()
	if blocked || target == "" {
		c.Close()
		return
	}
	u, err := net.Dial("tcp", target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.blocked {
		p.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src) // ends when either side closes; the error means nothing here
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(u, c)
	go pipe(c, u)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

func (p *proxy) setTarget(addr string) {
	p.mu.Lock()
	p.target = addr
	p.mu.Unlock()
}

// block cuts the link: open connections close, new ones are refused.
func (p *proxy) block(b bool) {
	p.mu.Lock()
	p.blocked = b
	if b {
		for c := range p.conns {
			c.Close()
		}
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.l.Close()
	p.block(true)
	p.wg.Wait()
}

type testNode struct {
	id    uint64
	dir   string
	tr    *transport.Transport
	h     *Host
	done  chan error
	sms   map[uint64]*kvSM
	addr  string
	alive bool
}

type testCluster struct {
	t       testing.TB
	cfg     Config // template
	nodes   map[uint64]*testNode
	proxies map[[2]uint64]*proxy
	log     *zap.Logger
	// perNode, if set, adjusts one node's copy of cfg when it starts.
	perNode func(id uint64, cfg *Config)
}

func newTestCluster(t testing.TB, n int, tweak func(*Config)) *testCluster {
	return newTestClusterPerNode(t, n, tweak, nil)
}

// newTestClusterPerNode is newTestCluster with perNode (see testCluster).
func newTestClusterPerNode(t testing.TB, n int, tweak func(*Config), perNode func(uint64, *Config)) *testCluster {
	c := &testCluster{
		perNode: perNode,
		t:       t,
		nodes:   make(map[uint64]*testNode),
		proxies: make(map[[2]uint64]*proxy),
		log:     zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		cfg: Config{
			TickInterval:   10 * time.Millisecond,
			ElectionTicks:  10,
			HeartbeatTicks: 1,
		},
	}
	if tweak != nil {
		tweak(&c.cfg)
	}
	for i := 1; i <= n; i++ {
		c.nodes[uint64(i)] = &testNode{id: uint64(i), dir: t.TempDir(), sms: make(map[uint64]*kvSM)}
	}
	for i := 1; i <= n; i++ {
		for j := i + 1; j <= n; j++ {
			c.proxies[[2]uint64{uint64(i), uint64(j)}] = newProxy(t)
		}
	}
	for i := 1; i <= n; i++ {
		c.start(uint64(i))
	}
	t.Cleanup(c.close)
	return c
}

// addNode makes a new, not yet started node known to the cluster's proxies.
func (c *testCluster) addNode() uint64 {
	id := uint64(len(c.nodes) + 1)
	c.nodes[id] = &testNode{id: id, dir: c.t.TempDir(), sms: make(map[uint64]*kvSM)}
	for i := uint64(1); i < id; i++ {
		c.proxies[[2]uint64{i, id}] = newProxy(c.t)
	}
	c.start(id)
	for i := uint64(1); i < id; i++ {
		if n := c.nodes[i]; n.alive {
			n.tr.AddPeer(id, c.proxies[[2]uint64{i, id}].l.Addr().String())
		}
	}
	return id
}

func (c *testCluster) start(id uint64) {
	n := c.nodes[id]
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	n.addr = l.Addr().String()
	n.tr = transport.New(transport.Config{
		NodeID: id, Logger: c.log,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		IdleTimeout: 3 * time.Second,
	})
	cfg := c.cfg
	cfg.NodeID, cfg.Dir, cfg.Transport, cfg.Logger = id, n.dir, n.tr, c.log
	if c.perNode != nil {
		c.perNode(id, &cfg)
	}
	h, err := NewHost(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	n.h = h
	n.done = make(chan error, 1)
	go func() { n.done <- n.tr.Serve(l) }()
	for pair, p := range c.proxies {
		switch id {
		case pair[1]:
			p.setTarget(n.addr)
		case pair[0]:
			n.tr.AddPeer(pair[1], p.l.Addr().String())
		}
	}
	n.alive = true
}

// stop closes a node's transport and host, keeping its data.
func (c *testCluster) stop(id uint64) {
	n := c.nodes[id]
	if !n.alive {
		return
	}
	n.alive = false
	if err := n.tr.Close(); err != nil {
		c.t.Errorf("transport close: %v", err)
	}
	// Serve may not have started before Close: then it returns ErrClosed.
	if err := <-n.done; err != nil && !errors.Is(err, transport.ErrClosed) {
		c.t.Errorf("serve: %v", err)
	}
	if err := n.h.Close(); err != nil {
		c.t.Errorf("host close: %v", err)
	}
	n.sms = make(map[uint64]*kvSM)
}

func (c *testCluster) close() {
	for id := range c.nodes {
		c.stop(id)
	}
	for _, p := range c.proxies {
		p.close()
	}
}

// isolate cuts (or heals) every link of node id.
func (c *testCluster) isolate(id uint64, cut bool) {
	for pair, p := range c.proxies {
		if pair[0] == id || pair[1] == id {
			p.block(cut)
		}
	}
}

func (c *testCluster) startGroup(node, group uint64, peers []uint64) *Group {
	n := c.nodes[node]
	sm := &kvSM{}
	g, err := n.h.StartGroup(group, peers, sm)
	if err != nil {
		c.t.Fatalf("node %d start group %d: %v", node, group, err)
	}
	n.sms[group] = sm
	return g
}

// leader waits for a leader of group among the alive nodes in among (all
// when nil) that they all agree on, and returns it.
func (c *testCluster) leader(group uint64, among ...uint64) uint64 {
	c.t.Helper()
	if among == nil {
		for id, n := range c.nodes {
			if n.alive && n.h.Group(group) != nil {
				among = append(among, id)
			}
		}
	}
	var lead uint64
	waitFor(c.t, 15*time.Second, func() bool {
		lead = 0
		for _, id := range among {
			l, local := c.nodes[id].h.Group(group).Leader()
			if l == 0 || (lead != 0 && l != lead) {
				return false
			}
			lead = l
			if local && l != id {
				return false
			}
		}
		if !slices.Contains(among, lead) {
			return false // a node left out, e.g. a stopped one
		}
		_, local := c.nodes[lead].h.Group(group).Leader()
		return local
	}, fmt.Sprintf("leader of group %d among %v", group, among))
	return lead
}

func (c *testCluster) propose(node, group uint64, data string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := c.nodes[node].h.Group(group).Propose(ctx, []byte(data))
	return err
}

// waitApplied waits until group's state machine on each node holds n entries.
func (c *testCluster) waitApplied(group uint64, n int, nodes ...uint64) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, func() bool {
		for _, id := range nodes {
			if c.nodes[id].sms[group].len() < n {
				return false
			}
		}
		return true
	}, fmt.Sprintf("group %d: %d entries applied on %v", group, n, nodes))
}

// agree checks that group's state machines on nodes hold the same entries.
func (c *testCluster) agree(group uint64, nodes ...uint64) {
	c.t.Helper()
	ref := c.nodes[nodes[0]].sms[group].copy()
	for _, id := range nodes[1:] {
		got := c.nodes[id].sms[group].copy()
		if len(got) != len(ref) {
			c.t.Fatalf("group %d: node %d has %d entries, node %d has %d", group, id, len(got), nodes[0], len(ref))
		}
		for i := range ref {
			if string(got[i]) != string(ref[i]) {
				c.t.Fatalf("group %d: entry %d differs: node %d %q, node %d %q", group, i, nodes[0], ref[i], id, got[i])
			}
		}
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
