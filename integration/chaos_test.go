package integration

import (
	"fmt"
	"hash/fnv"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The chaos tests: a Jepsen-style queue test of quorum queues. Three
// bin/warren processes on loopback (startFaultCluster: every inter-node
// link through a proxy of the test) hold a few quorum queues; producers
// with publisher confirms and consumers with manual acks, spread over the
// nodes, run throughout (a client whose connection fails reconnects to any
// node that takes it). Faults come one at a time, each healed before the
// next: kill -9 of the queue's leader, of a follower, of two nodes in turn
// or at once, of all three; SIGSTOP of the leader; the leader or a follower
// cut off from the others; the link between the leader and one follower cut
// (the third node still sees both). After each, the cluster must come back
// (every node online, one leader per queue) and confirm and deliver again.
// Then the producers stop, the consumers drain the queues, and the checker
// compares what was published with what was delivered: no confirmed message
// may be lost and nothing unpublished delivered; duplicates (at-least-once)
// are counted. Each run logs one "CHAOS key=value ..." summary line.
//
// Streams run the same faults: their consumers read from first with manual
// acks and, after a failed connection, from the offset after the last they
// acked; the checker wants every confirmed message read by every consumer
// of its stream, and each consumer's offsets in order with no gap within a
// session (duplicated then counts the deliveries to the stream's other
// consumers too).
//
// TestChaosQuorumQueues and TestChaosStreams are the short runs of make
// test; TestChaosQuorumLong and TestChaosStreamsLong (make chaos,
// WARREN_CHAOS_TYPES picks them) run each kind of fault for
// WARREN_CHAOS_ROUNDS rounds on a fresh cluster, then a mixed run. WARREN_CHAOS_FAULTS picks kinds (comma
// separated, "mixed" included), WARREN_CHAOS_SEED the seed (logged by every
// run: it picks the victims, fault durations and the mixed run's faults),
// WARREN_CHAOS_DURATION bounds the whole (faults stop being injected once a
// run's share is spent; the run still drains and checks).

// chaosFaultKinds are the faults, in the order the long test runs them.
var chaosFaultKinds = []string{
	"kill-leader", "kill-follower", "kill-two-seq", "kill-two", "kill-all",
	"pause-leader", "partition-leader", "partition-follower", "partition-bridge",
}

// knownChaosBugs names the long runs that fail on a known broker bug
// ("quorum/run" or "stream/run": the bug); they skip. The short test never skips.
var knownChaosBugs = map[string]string{}

type chaosConfig struct {
	name                 string
	seed                 int64
	faults               []string // in order
	queues               int
	producers, consumers int
	hold                 func(kind string, rng *rand.Rand) time.Duration
	between              func(rng *rand.Rand) time.Duration // healthy traffic between faults
	budget               time.Duration                      // no new fault after this long
	drainWait            time.Duration
	client               chaosClientConfig
	// stream: the queues are streams (x-queue-type stream); every consumer
	// reads its stream whole, and the checker wants every confirmed message
	// read by every consumer of its stream.
	stream bool
}

// TestChaosQuorumQueues is the short chaos run (make test): five faults
// of 3 s (kill -9 of the leader; the link between the leader and a follower
// cut; the leader paused; the leader cut off; kill -9 of the leader and a
// follower at once) under traffic, then the check. About 40 s.
func TestChaosQuorumQueues(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes behind fault-injecting proxies")
	runChaos(t, shortChaos(t, "short", false))
}

// shortChaos is the short run's configuration: five faults of 3 s, one of
// each kind but the follower's, on two queues (of streams with stream).
func shortChaos(t *testing.T, name string, stream bool) chaosConfig {
	return chaosConfig{
		name:      name,
		seed:      chaosSeed(t),
		faults:    []string{"kill-leader", "partition-bridge", "pause-leader", "partition-leader", "kill-two"},
		queues:    2,
		producers: 3,
		consumers: 4,
		hold:      func(string, *rand.Rand) time.Duration { return 3 * time.Second },
		between:   func(*rand.Rand) time.Duration { return time.Second },
		budget:    40 * time.Second,
		drainWait: 30 * time.Second,
		client:    chaosClientConfig{window: 10, interval: 5 * time.Millisecond, prefetch: 20, confirmWait: 20 * time.Second, stream: stream},
		stream:    stream,
	}
}

// TestChaosStreams is the short chaos run of streams (make test): the
// faults of TestChaosQuorumQueues under producers with confirms and
// consumers reading from first with manual acks, each resuming after the
// last offset it acked when its connection fails. About 40 s.
func TestChaosStreams(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes behind fault-injecting proxies")
	runChaos(t, shortChaos(t, "short-stream", true))
}

// TestChaosQuorumLong is make chaos: every kind of fault for
// WARREN_CHAOS_ROUNDS rounds (each kind on a cluster of its own), then as
// many random faults of every kind.
func TestChaosQuorumLong(t *testing.T) { runChaosLong(t, false) }

// TestChaosStreamsLong is TestChaosQuorumLong's runs on streams.
func TestChaosStreamsLong(t *testing.T) { runChaosLong(t, true) }

// runChaosLong runs the long chaos test on quorum queues or streams, if
// WARREN_CHAOS_TYPES (comma separated: quorum, stream; both by default)
// asks for that type.
func runChaosLong(t *testing.T, stream bool) {
	warrenOnly(t, "starts a cluster of bin/warren processes behind fault-injecting proxies")
	rs := os.Getenv("WARREN_CHAOS_ROUNDS")
	if rs == "" {
		t.Skip("make chaos runs it (WARREN_CHAOS_ROUNDS=N)")
	}
	typ := map[bool]string{false: "quorum", true: "stream"}[stream]
	if ts := os.Getenv("WARREN_CHAOS_TYPES"); ts != "" && !slices.Contains(strings.Split(ts, ","), typ) {
		t.Skipf("WARREN_CHAOS_TYPES=%s", ts)
	}
	rounds, err := strconv.Atoi(rs)
	require.NoError(t, err, "WARREN_CHAOS_ROUNDS")
	runs := append(slices.Clone(chaosFaultKinds), "mixed")
	if s := os.Getenv("WARREN_CHAOS_FAULTS"); s != "" {
		runs = strings.Split(s, ",")
		for _, r := range runs {
			require.True(t, r == "mixed" || slices.Contains(chaosFaultKinds, r), "WARREN_CHAOS_FAULTS: no fault %q (have %v and mixed)", r, chaosFaultKinds)
		}
	}
	total := 90 * time.Minute
	if s := os.Getenv("WARREN_CHAOS_DURATION"); s != "" {
		total, err = time.ParseDuration(s)
		require.NoError(t, err, "WARREN_CHAOS_DURATION")
	}
	base := chaosSeed(t)
	deadline := time.Now().Add(total)
	for i, run := range runs {
		t.Run(run, func(t *testing.T) {
			if bug := knownChaosBugs[typ+"/"+run]; bug != "" {
				t.Skip("KNOWN BUG: " + bug)
			}
			h := fnv.New64a()
			h.Write([]byte(run))
			seed := base ^ int64(h.Sum64()>>1)
			rng := rand.New(rand.NewSource(seed))
			var faults []string
			for range rounds {
				k := run
				if run == "mixed" {
					k = chaosFaultKinds[rng.Intn(len(chaosFaultKinds))]
				}
				faults = append(faults, k)
			}
			// This run's share of what is left, less its start and drain.
			budget := time.Until(deadline)/time.Duration(len(runs)-i) - 40*time.Second
			t.Logf("reproduce: WARREN_CHAOS_SEED=%d WARREN_CHAOS_FAULTS=%s WARREN_CHAOS_ROUNDS=%d (this run's seed %d)", base, run, rounds, seed)
			name := run
			if stream {
				name += "-stream"
			}
			runChaos(t, chaosConfig{
				name:      name,
				seed:      seed,
				faults:    faults,
				queues:    2,
				producers: 3,
				consumers: 4,
				hold: func(kind string, rng *rand.Rand) time.Duration {
					// Pauses and partitions sometimes outlast the cluster
					// links' idle timeout (10 s), so that connections are
					// declared lost too.
					switch {
					case strings.HasPrefix(kind, "kill"):
						return time.Second + time.Duration(rng.Int63n(int64(5*time.Second)))
					default:
						return 2*time.Second + time.Duration(rng.Int63n(int64(12*time.Second)))
					}
				},
				between: func(rng *rand.Rand) time.Duration {
					return time.Second + time.Duration(rng.Int63n(int64(3*time.Second)))
				},
				budget:    max(budget, 0),
				drainWait: 60 * time.Second,
				client:    chaosClientConfig{window: 10, interval: 5 * time.Millisecond, prefetch: 20, confirmWait: 20 * time.Second, stream: stream},
				stream:    stream,
			})
		})
	}
}

// chaosSeed is WARREN_CHAOS_SEED, else one from the clock.
func chaosSeed(t *testing.T) int64 {
	if s := os.Getenv("WARREN_CHAOS_SEED"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "WARREN_CHAOS_SEED")
		return n
	}
	return time.Now().UnixNano() & (1<<40 - 1)
}

// chaosRun is one run: a cluster, its clients, the faults and the check.
type chaosRun struct {
	t       *testing.T
	cfg     chaosConfig
	fc      *faultCluster
	rng     *rand.Rand
	h       *chaosHistory
	queues  []string
	down    []bool // killed
	paused  []bool // SIGSTOPped
	cutOff  []bool // links cut (isolated, or one side of a cut pair)
	clients []*chaosClient
	start   time.Time
	broken  bool // the cluster did not recover: no more faults
}

func runChaos(t *testing.T, cfg chaosConfig) {
	c := &chaosRun{t: t, cfg: cfg, rng: rand.New(rand.NewSource(cfg.seed)), start: time.Now(),
		down: make([]bool, 3), paused: make([]bool, 3), cutOff: make([]bool, 3)}
	t.Logf("chaos run %s: seed %d, faults %v", cfg.name, cfg.seed, cfg.faults)
	c.fc = startFaultCluster(t)
	nodes := c.fc.nodes
	for i := range cfg.queues {
		c.queues = append(c.queues, fmt.Sprintf("chaos-%d", i))
	}
	c.h = newChaosHistory(c.queues)
	t.Cleanup(c.stopClients) // before the nodes go (cleanups run last first)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("WARREN_CHAOS_KEEP") != "" {
			c.report()
		}
	})

	// Each queue declared on another node: their leaders differ.
	for i, q := range c.queues {
		ch := nodes[i%3].channel()
		args := amqp.Table{"x-queue-type": "quorum",
			// Far above what the faults cause: a message dropped at the
			// delivery limit would count as lost.
			"x-delivery-limit": 1000}
		if cfg.stream {
			args = amqp.Table{"x-queue-type": "stream"}
		}
		_, err := ch.QueueDeclare(q, true, false, false, false, args)
		require.NoError(t, err)
	}
	require.True(t, c.waitHealthy("the queues declared"), "the cluster never became healthy")

	urls := make([]string, len(nodes))
	for i, nd := range nodes {
		urls[i] = nd.url()
	}
	for i := range cfg.producers + cfg.consumers {
		cl := &chaosClient{id: i, kind: "producer", home: i % 3, urls: urls, h: c.h, cfg: cfg.client,
			rng: rand.New(rand.NewSource(cfg.seed + int64(i) + 1)), stop: make(chan struct{}), done: make(chan struct{})}
		if i >= cfg.producers {
			cl.kind, cl.id = "consumer", i-cfg.producers
			cl.q, cl.home = cl.id%cfg.queues, cl.id%3
		}
		c.clients = append(c.clients, cl)
		go cl.run()
	}
	c.waitProgress("traffic at start")
	c.note("traffic runs: %s", c.states())

	injected := 0
	for i, kind := range cfg.faults {
		if c.broken {
			break
		}
		if cfg.budget > 0 && time.Since(c.start) > cfg.budget {
			c.note("time budget (%v) spent: %d of %d faults injected", cfg.budget, i, len(cfg.faults))
			break
		}
		hold := cfg.hold(kind, c.rng)
		c.note("fault %d/%d: %s for %v", i+1, len(cfg.faults), kind, hold.Round(time.Millisecond))
		c.inject(kind, hold)
		injected++
		if c.broken || !c.waitHealthy("healing after "+kind) || !c.waitProgress("traffic after "+kind) {
			c.broken = true
			break
		}
		c.note("after %s: %s", kind, c.states())
		time.Sleep(cfg.between(c.rng))
	}

	var stuck, left, streamLost int
	var skipped []string
	if cfg.stream {
		streamLost, skipped = c.drainStreams()
	} else {
		stuck, left = c.drain()
	}
	r := c.h.check()
	t.Logf("CHAOS run=%s seed=%d faults=%d kinds=%s queues=%d producers=%d consumers=%d attempted=%d confirmed=%d nacked=%d unknown=%d "+
		"deliveries=%d distinct=%d lost=%d unexpected=%d duplicated=%d dup_extra=%d dup_unflagged=%d redelivered=%d unknown_delivered=%d nacked_delivered=%d "+
		"max_delivery_count=%d stuck=%d left=%d stream_lost=%d stream_skipped=%d reconnects=%d healed=%t secs=%.0f",
		cfg.name, cfg.seed, injected, strings.Join(uniq(cfg.faults[:injected]), ","), cfg.queues, cfg.producers, cfg.consumers,
		r.Attempted, r.Confirmed, r.Nacked, r.Unknown, r.Deliveries, r.Distinct, r.Lost, r.Unexpected, r.Duplicated, r.DupExtra,
		r.DupUnflagged, r.Redelivered, r.UnknownDelivered, r.NackedDelivered, r.MaxDeliveryCount, stuck, left, streamLost, len(skipped),
		c.reconnects(), !c.broken, time.Since(c.start).Seconds())
	if r.Lost > 0 {
		t.Errorf("%d confirmed messages never delivered:\n%s", r.Lost, c.h.describeLost(r.lost, c.nodeName))
	}
	if r.Unexpected > 0 {
		t.Errorf("%d deliveries of messages never published (to that queue):\n%s", r.Unexpected, strings.Join(r.bad, "\n"))
	}
	if stuck > 0 {
		t.Errorf("%d messages stayed in the queues while their consumers were attached (a fresh basic.get found them after the drain)", stuck)
	}
	if left != 0 {
		t.Errorf("the queues' leaders still count %d messages once every client is gone and basic.get finds nothing: deliveries held for consumers that no longer exist", left)
	}
	if r.Confirmed == 0 {
		t.Errorf("nothing was confirmed")
	}
	if streamLost > 0 {
		t.Errorf("stream consumers missed %d confirmed messages of their streams", streamLost)
	}
	if len(skipped) > 0 {
		t.Errorf("stream consumers got %d deliveries out of offset order (a gap, or an offset twice in a session):\n%s",
			len(skipped), strings.Join(skipped[:min(len(skipped), 20)], "\n"))
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

func uniq(s []string) []string {
	var out []string
	for _, x := range s {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func (c *chaosRun) note(format string, args ...any) {
	c.t.Helper()
	msg := fmt.Sprintf(format, args...)
	c.h.event("test", "%s", msg)
	c.t.Logf("%7.3fs %s", c.h.since().Seconds(), msg)
}

func (c *chaosRun) nodeName(i int) string { return fmt.Sprintf("node%d", i+1) }

// nodeIndex is the index of a node named name (warrenN@localhost), or -1.
func (c *chaosRun) nodeIndex(name string) int {
	return slices.IndexFunc(c.fc.nodes, func(nd *clusterNode) bool { return nd.name == name })
}

// answering lists the nodes the test can ask now (running, not paused).
func (c *chaosRun) answering() []int {
	var out []int
	for i := range c.fc.nodes {
		if !c.down[i] && !c.paused[i] {
			out = append(out, i)
		}
	}
	return out
}

// chaosQueue is a quorum queue as GET /api/queues/{vhost}/{name} shows it.
type chaosQueue struct {
	Leader    string   `json:"leader"`
	Online    []string `json:"online"`
	Messages  int      `json:"messages"`
	Unacked   int      `json:"messages_unacknowledged"`
	Consumers int      `json:"consumers"`
}

func (c *chaosRun) view(i, q int) (chaosQueue, error) {
	var qi chaosQueue
	err := chaosAPI(c.fc.nodes[i], "/api/queues/%2F/"+c.queues[q], &qi)
	return qi, err
}

// health says what keeps the cluster from being healthy ("" when it is):
// every node running, and for each queue every node naming the same leader
// (which says it leads) with all three members online.
func (c *chaosRun) health() string {
	for i := range c.fc.nodes {
		if c.down[i] || c.paused[i] || c.cutOff[i] {
			return fmt.Sprintf("node %d down, paused or cut off", i+1)
		}
	}
	for q := range c.queues {
		leader := ""
		for i := range c.fc.nodes {
			qi, err := c.view(i, q)
			switch {
			case err != nil:
				return fmt.Sprintf("node %d: %v", i+1, err)
			case qi.Leader == "":
				return fmt.Sprintf("node %d: %s has no leader", i+1, c.queues[q])
			case leader != "" && qi.Leader != leader:
				var views []string
				for j := range c.fc.nodes {
					v, err := c.view(j, q)
					views = append(views, fmt.Sprintf("node %d: %s%s", j+1, v.Leader, errText(err)))
				}
				return fmt.Sprintf("%s: the nodes name different leaders (%s)", c.queues[q], strings.Join(views, ", "))
			case len(qi.Online) != 3:
				return fmt.Sprintf("node %d: %s online %v", i+1, c.queues[q], qi.Online)
			}
			leader = qi.Leader
		}
	}
	return ""
}

// waitHealthy waits (up to a minute) for health; false (the test failed)
// if it never comes.
func (c *chaosRun) waitHealthy(what string) bool {
	c.t.Helper()
	start := time.Now()
	var why string
	for time.Since(start) < time.Minute {
		if why = c.health(); why == "" {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Errorf("%s: the cluster was not healthy a minute after the faults healed: %s", what, why)
	c.broken = true
	return false
}

// waitProgress waits (up to 45 s) for 20 more confirms and 20 more
// deliveries; false (the test failed) if they never come.
func (c *chaosRun) waitProgress(what string) bool {
	c.t.Helper()
	c0, d0, _ := c.h.progress()
	start := time.Now()
	for time.Since(start) < 45*time.Second {
		if cf, d, _ := c.h.progress(); cf >= c0+20 && d >= d0+20 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	cf, d, _ := c.h.progress()
	c.t.Errorf("%s: no progress in 45 s on a healthy cluster: %d confirms and %d deliveries more", what, cf-c0, d-d0)
	c.broken = true
	return false
}

// leaderOf is the node leading queue q as the running nodes agree (the
// leader itself says so), or -1 after 20 s.
func (c *chaosRun) leaderOf(q int) int {
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		for _, i := range c.answering() {
			qi, err := c.view(i, q)
			if err != nil || qi.Leader == "" {
				continue
			}
			l := c.nodeIndex(qi.Leader)
			if l < 0 || c.down[l] || c.paused[l] {
				continue
			}
			if lv, err := c.view(l, q); err == nil && lv.Leader == qi.Leader {
				return l
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return -1
}

// states says, for each queue, what its leader counts: messages, unacked,
// consumers (and how many consumers of it the test runs).
func (c *chaosRun) states() string {
	var out []string
	for q, name := range c.queues {
		l := c.leaderOf(q)
		if l < 0 {
			out = append(out, name+": no leader")
			continue
		}
		qi, err := c.view(l, q)
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		out = append(out, fmt.Sprintf("%s@node%d messages=%d unacked=%d consumers=%d (test consumers %d)",
			name, l+1, qi.Messages, qi.Unacked, qi.Consumers, c.consumersOf(q)))
	}
	return strings.Join(out, "; ")
}

func (c *chaosRun) consumersOf(q int) int {
	n := 0
	for _, cl := range c.clients {
		if cl.kind == "consumer" && cl.q == q {
			n++
		}
	}
	return n
}

// victimLeader is queue 0's leader (a random node if none is found).
func (c *chaosRun) victimLeader() int {
	l := c.leaderOf(0)
	if l < 0 {
		l = c.rng.Intn(3)
		c.note("no leader of %s found: taking node %d", c.queues[0], l+1)
	}
	return l
}

// other is a random node that is not not.
func (c *chaosRun) other(not int) int { return (not + 1 + c.rng.Intn(2)) % 3 }

func (c *chaosRun) leaders() string {
	var s []string
	for q := range c.queues {
		l := c.leaderOf(q)
		name := "none"
		if l >= 0 {
			name = c.nodeName(l)
		}
		s = append(s, c.queues[q]+"@"+name)
	}
	return strings.Join(s, " ")
}

func (c *chaosRun) kill(i int) {
	c.note("kill -9 node %d", i+1)
	c.fc.nodes[i].kill()
	c.down[i] = true
}

func (c *chaosRun) restart(i int) {
	c.note("restart node %d", i+1)
	c.fc.nodes[i].start()
	c.fc.nodes[i].waitHTTP()
	c.down[i] = false
}

func (c *chaosRun) pause(i int, stop bool) {
	if stop {
		c.note("SIGSTOP node %d", i+1)
		c.fc.nodes[i].signal(syscall.SIGSTOP)
	} else {
		c.note("SIGCONT node %d", i+1)
		c.fc.nodes[i].signal(syscall.SIGCONT)
	}
	c.paused[i] = stop
}

func (c *chaosRun) isolate(i int, cut bool) {
	if cut {
		c.note("cut every link of node %d", i+1)
	} else {
		c.note("heal the links of node %d", i+1)
	}
	c.fc.isolate(i, cut)
	c.cutOff[i] = cut
}

// cutPair cuts (or heals) the link between nodes a and b only.
func (c *chaosRun) cutPair(a, b int, cut bool) {
	if cut {
		c.note("cut the link node %d - node %d", a+1, b+1)
	} else {
		c.note("heal the link node %d - node %d", a+1, b+1)
	}
	c.fc.proxies[[2]int{a, b}].setCut(cut)
	c.fc.proxies[[2]int{b, a}].setCut(cut)
	c.cutOff[a], c.cutOff[b] = cut, cut
}

// watch waits hold, noting when the nodes in reach name a new leader of
// queue 0 (not old).
func (c *chaosRun) watch(old int, hold time.Duration, reach ...int) {
	start := time.Now()
	seen := false
	for time.Since(start) < hold {
		if !seen {
			for _, i := range reach {
				if qi, err := c.view(i, 0); err == nil && qi.Leader != "" && qi.Leader != c.fc.nodes[old].name {
					c.note("%s: node %d names leader %s after %v", c.queues[0], i+1, qi.Leader, time.Since(start).Round(time.Millisecond))
					seen = true
					break
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !seen && len(reach) > 0 {
		c.note("%s: no new leader in %v", c.queues[0], hold)
	}
}

func (c *chaosRun) inject(kind string, hold time.Duration) {
	c.note("leaders: %s", c.leaders())
	switch kind {
	case "kill-leader":
		l := c.victimLeader()
		c.kill(l)
		c.watch(l, hold, c.answering()...)
		c.restart(l)
	case "kill-follower":
		f := c.other(c.victimLeader())
		c.kill(f)
		time.Sleep(hold)
		c.restart(f)
	case "kill-two-seq": // the leader, back, then the next leader (or a follower), back
		l := c.victimLeader()
		c.kill(l)
		c.watch(l, hold, c.answering()...)
		c.restart(l)
		if !c.waitHealthy("node " + strconv.Itoa(l+1) + " back") {
			return
		}
		v := c.victimLeader()
		if v == l {
			v = c.other(l)
		}
		c.kill(v)
		c.watch(v, hold, c.answering()...)
		c.restart(v)
	case "kill-two": // two at once: the queues are unavailable until one is back
		l := c.victimLeader()
		f := c.other(l)
		c.kill(l)
		c.kill(f)
		time.Sleep(hold)
		first, second := l, f
		if c.rng.Intn(2) == 0 {
			first, second = f, l
		}
		c.restart(first)
		time.Sleep(time.Duration(c.rng.Int63n(int64(time.Second))))
		c.restart(second)
	case "kill-all":
		for _, i := range c.rng.Perm(3) {
			c.kill(i)
		}
		time.Sleep(hold)
		for _, i := range c.rng.Perm(3) {
			c.restart(i)
		}
	case "pause-leader":
		l := c.victimLeader()
		c.pause(l, true)
		c.watch(l, hold, c.answering()...)
		c.pause(l, false)
	case "partition-leader": // the leader alone in the minority
		l := c.victimLeader()
		c.isolate(l, true)
		c.watch(l, hold, c.other(l))
		c.isolate(l, false)
	case "partition-follower":
		f := c.other(c.victimLeader())
		c.isolate(f, true)
		time.Sleep(hold)
		c.isolate(f, false)
	case "partition-bridge": // leader and one follower cut apart; the third sees both
		l := c.victimLeader()
		f := c.other(l)
		c.cutPair(l, f, true)
		c.watch(l, hold, 3-l-f)
		c.cutPair(l, f, false)
	default:
		c.t.Fatalf("no fault %q", kind)
	}
}

// drain stops the producers, lets the consumers empty the queues (until
// the leaders count no message and nothing came for 3 s; or nothing came
// for 10 s; or drainWait), stops them, and gets what is left with fresh
// connections (stuck: messages the consumers never received). left is
// what the queues' leaders still count after that.
func (c *chaosRun) drain() (stuck, left int) {
	c.note("drain: producers stop")
	c.stopKind("producer", time.Minute)
	start := time.Now()
	for {
		_, _, last := c.h.progress()
		msgs, err := c.queued()
		if err == nil && msgs == 0 && time.Since(last) > 3*time.Second {
			break
		}
		if time.Since(last) > 10*time.Second && time.Since(start) > 10*time.Second {
			c.note("drain: nothing delivered for 10 s, the queues hold %d messages (%v)", msgs, err)
			c.dump()
			break
		}
		if time.Since(start) > c.cfg.drainWait {
			c.note("drain: after %v the queues still hold %d messages (%v); nothing delivered for %v", c.cfg.drainWait, msgs, err, time.Since(last).Round(time.Millisecond))
			c.dump()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.note("drain: consumers stop")
	c.stopKind("consumer", time.Minute)
	// Closed consumers' unacked messages come back (asynchronously when
	// the consumer was attached through another node).
	start = time.Now()
	for {
		for q, name := range c.queues {
			n, err := c.sweep(q)
			if err != nil {
				c.t.Errorf("getting what is left of %s: %v", name, err)
			}
			stuck += n
		}
		var err error
		if left, err = c.queued(); err != nil {
			c.note("counting the queues after the drain: %v", err)
		}
		if left == 0 || time.Since(start) > 5*time.Second {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if stuck > 0 || left != 0 {
		c.note("drain: %d messages got after the consumers closed, %d left", stuck, left)
		if left != 0 {
			c.dump()
		}
	}
	return stuck, left
}

// drainStreams stops the producers and waits until every stream consumer
// has read every confirmed message of its stream (or nothing came for 10 s,
// or drainWait), then stops the consumers. lost counts, over the
// consumers, the confirmed messages of its stream each never read; skipped
// are the deliveries out of offset order they saw.
func (c *chaosRun) drainStreams() (lost int, skipped []string) {
	c.note("drain: producers stop")
	c.stopKind("producer", time.Minute)
	var consumers []*chaosClient
	for _, cl := range c.clients {
		if cl.kind == "consumer" {
			consumers = append(consumers, cl)
		}
	}
	missing := func() (n int, some string) {
		for _, cl := range consumers {
			m := cl.streamMissing()
			n += len(m)
			if len(m) > 0 && some == "" {
				some = fmt.Sprintf("%s misses %d, the first %s", cl.name(), len(m), chaosBody(m[0], cl.q))
			}
		}
		return n, some
	}
	start := time.Now()
	for {
		_, _, last := c.h.progress()
		n, some := missing()
		if n == 0 {
			break
		}
		if time.Since(last) > 10*time.Second && time.Since(start) > 10*time.Second || time.Since(start) > c.cfg.drainWait {
			c.note("drain: the consumers still miss %d confirmed messages (%s); nothing delivered for %v", n, some, time.Since(last).Round(time.Millisecond))
			c.dump()
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.note("drain: consumers stop")
	c.stopKind("consumer", time.Minute)
	for _, cl := range consumers {
		lost += len(cl.streamMissing())
		cl.mu.Lock()
		skipped = append(skipped, cl.skipped...)
		cl.mu.Unlock()
	}
	return lost, skipped
}

// dump logs what each node says of the queues and their consumers.
func (c *chaosRun) dump() {
	for _, i := range c.answering() {
		nd := c.fc.nodes[i]
		for _, q := range c.queues {
			c.t.Logf("node %d: GET /api/queues/%%2F/%s: %s", i+1, q, chaosRaw(nd, "/api/queues/%2F/"+q))
		}
		c.t.Logf("node %d: GET /api/consumers: %s", i+1, chaosRaw(nd, "/api/consumers"))
	}
}

// queued is how many messages the queues' leaders hold (ready and unacked).
func (c *chaosRun) queued() (int, error) {
	total := 0
	for q := range c.queues {
		l := c.leaderOf(q)
		if l < 0 {
			return -1, fmt.Errorf("%s has no leader", c.queues[q])
		}
		qi, err := c.view(l, q)
		if err != nil {
			return -1, err
		}
		total += qi.Messages
	}
	return total, nil
}

// sweep gets (and acks) every message left in queue q, through a fresh
// connection to its leader's node.
func (c *chaosRun) sweep(q int) (int, error) {
	l := c.leaderOf(q)
	if l < 0 {
		return 0, fmt.Errorf("no leader")
	}
	conn, err := amqp.Dial(c.fc.nodes[l].url())
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	n := 0
	for {
		d, ok, err := ch.Get(c.queues[q], false)
		if err != nil || !ok {
			return n, err
		}
		n++
		c.h.delivered(&d, q, l, "sweep")
		if err := d.Ack(false); err != nil {
			return n, err
		}
	}
}

// stopKind stops the clients of a kind and waits (up to d) for them.
func (c *chaosRun) stopKind(kind string, d time.Duration) {
	var wait []*chaosClient
	for _, cl := range c.clients {
		if cl.kind == kind && !cl.stopped() {
			close(cl.stop)
			wait = append(wait, cl)
		}
	}
	deadline := time.After(d)
	for _, cl := range wait {
		select {
		case <-cl.done:
		case <-deadline:
			c.t.Errorf("%s did not stop within %v", cl.name(), d)
			return
		}
	}
}

// stopClients stops every client (a cleanup: also after a failure).
func (c *chaosRun) stopClients() {
	for i, p := range c.paused {
		if p && !c.down[i] && c.fc.nodes[i].cmd != nil {
			c.fc.nodes[i].cmd.Process.Signal(syscall.SIGCONT)
		}
	}
	c.stopKind("producer", time.Minute)
	c.stopKind("consumer", time.Minute)
}

func (c *chaosRun) reconnects() int {
	n := 0
	for _, cl := range c.clients {
		cl.mu.Lock()
		n += cl.connects - 1
		cl.mu.Unlock()
	}
	return n
}

// report, after a failure (or with WARREN_CHAOS_KEEP set): what the clients saw, the nodes' warnings and
// errors, and a copy of their logs kept after the test.
func (c *chaosRun) report() {
	c.h.mu.Lock()
	events, counts := slices.Clone(c.h.events), c.h.eventCounts
	c.h.mu.Unlock()
	c.t.Logf("client events %v; the first ones:\n%s", counts, strings.Join(events[:min(len(events), 300)], "\n"))
	keep, err := os.MkdirTemp("", "warren-chaos-"+c.cfg.name+"-")
	if err != nil {
		return
	}
	os.WriteFile(filepath.Join(keep, "events.txt"), []byte(strings.Join(events, "\n")+"\n"), 0o644)
	for i, nd := range c.fc.nodes {
		text := nd.logText()
		os.WriteFile(filepath.Join(keep, fmt.Sprintf("node%d.log", i+1)), []byte(text), 0o644)
		var bad []string
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "\twarn\t") || strings.Contains(line, "\terror\t") || strings.Contains(line, "panic") {
				bad = append(bad, line)
			}
		}
		if len(bad) > 40 {
			bad = append(bad[:40], fmt.Sprintf("... %d more", len(bad)-40))
		}
		c.t.Logf("node %d (%s) warnings and errors:\n%s", i+1, nd.name, strings.Join(bad, "\n"))
	}
	c.t.Logf("node logs and client events kept in %s", keep)
}

// TestChaosQuorumRepro holds minimal, deterministic reproductions of what
// the chaos runs found (make chaos runs them; so does setting
// WARREN_CHAOS_ROUNDS). Each fails while its bug is there.
func TestChaosQuorumRepro(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	if os.Getenv("WARREN_CHAOS_ROUNDS") == "" {
		t.Skip("make chaos runs it (WARREN_CHAOS_ROUNDS=N)")
	}
	// A consumer on the node a new queue names as its leader, attached as
	// soon as it does, is attached once: once its deliveries are acked (and
	// once it is gone) no message is left unacked. Twelve queues, four
	// declared on each node (the race does not hit every time).
	t.Run("attach-once", func(t *testing.T) {
		nodes := startTestCluster(t, 3, 0)
		var conns []*amqp.Connection
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		var names []string
		for i := range 12 {
			name := fmt.Sprintf("repro-%d", i)
			names = append(names, name)
			_, err := nodes[i%3].channel().QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
			require.NoError(t, err)
			qi := reproQueue(t, nodes, name, func(q chaosQueue) bool { return q.Leader != "" })
			l := slices.IndexFunc(nodes, func(nd *clusterNode) bool { return nd.name == qi.Leader })
			require.GreaterOrEqual(t, l, 0, "leader %q", qi.Leader)
			conn, err := amqp.Dial(nodes[l].url())
			require.NoError(t, err)
			conns = append(conns, conn)
			ch, err := conn.Channel()
			require.NoError(t, err)
			require.NoError(t, ch.Qos(5, 0, false))
			ds, err := ch.Consume(name, "c", false, false, false, false, nil)
			require.NoError(t, err)
			reproPublish(t, nodes[(l+1)%3], name, 100)
			n, distinct := reproConsume(ds, time.Second)
			t.Logf("%s (leader %s): %d deliveries of %d distinct messages", name, qi.Leader, n, distinct)
			require.Equal(t, 100, distinct, "%s: every message delivered", name)
		}
		for _, name := range names {
			qi := reproQueue(t, nodes, name, func(q chaosQueue) bool { return q.Unacked == 0 && q.Consumers == 1 })
			assert.Equal(t, 1, qi.Consumers, "%s: one client consumer: %+v", name, qi)
			assert.Equal(t, 0, qi.Unacked, "%s: every delivery acked: %+v", name, qi)
		}
		for _, c := range conns {
			c.Close()
		}
		for _, name := range names {
			qi := reproQueue(t, nodes, name, func(q chaosQueue) bool { return q.Unacked == 0 && q.Consumers == 0 })
			assert.Equal(t, 0, qi.Consumers, "%s: the consumer's connection is closed: %+v", name, qi)
			assert.Equal(t, 0, qi.Unacked, "%s: the consumer's connection is closed: %+v", name, qi)
		}
	})
	// Messages acked before every node is killed (kill -9) stay acked:
	// consumers attached as soon as the nodes are back (one on each node,
	// for each of three queues) get nothing.
	t.Run("acked-stay-acked-after-restart", func(t *testing.T) {
		nodes := startTestCluster(t, 3, 0)
		names := []string{"repro-0", "repro-1", "repro-2"}
		for i, name := range names {
			_, err := nodes[i].channel().QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum"})
			require.NoError(t, err)
		}
		for i, name := range names {
			reproQueue(t, nodes, name, func(q chaosQueue) bool { return q.Leader != "" && len(q.Online) == 3 })
			reproPublish(t, nodes[(i+1)%3], name, 100)
			conn, err := amqp.Dial(nodes[(i+2)%3].url())
			require.NoError(t, err)
			ch, err := conn.Channel()
			require.NoError(t, err)
			ds, err := ch.Consume(name, "c", false, false, false, false, nil)
			require.NoError(t, err)
			_, distinct := reproConsume(ds, time.Second)
			require.Equal(t, 100, distinct)
			reproQueue(t, nodes, name, func(q chaosQueue) bool { return q.Messages == 0 })
			conn.Close()
		}
		time.Sleep(2 * time.Second) // the acks' log entries (proposed in batches) are committed
		for _, nd := range nodes {
			nd.kill()
		}
		for _, nd := range nodes {
			nd.start()
		}
		for _, nd := range nodes {
			nd.waitHTTP()
		}
		type consumer struct {
			name string
			ds   <-chan amqp.Delivery
		}
		var cs []consumer
		for _, nd := range nodes {
			for _, name := range names {
				var conn *amqp.Connection
				waitFor(t, "a consumer of "+name+" on "+nd.name, func() bool {
					var err error
					if conn, err = amqp.Dial(nd.url()); err != nil {
						return false
					}
					if ch, err := conn.Channel(); err == nil {
						if ds, err := ch.Consume(name, "c", false, false, false, false, nil); err == nil {
							cs = append(cs, consumer{name + " on " + nd.name, ds})
							return true
						}
					}
					conn.Close()
					return false
				})
				defer conn.Close()
			}
		}
		time.Sleep(3 * time.Second)
		for _, c := range cs {
			n, distinct := reproConsume(c.ds, 100*time.Millisecond)
			assert.Equal(t, 0, n, "%s: deliveries (of %d distinct messages) acked before the restart", c.name, distinct)
		}
	})
}

// reproPublish publishes n messages to queue through nd, each confirmed.
func reproPublish(t *testing.T, nd *clusterNode, queue string, n int) {
	t.Helper()
	conn, err := amqp.Dial(nd.url())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for i := range n {
		dc, err := ch.PublishWithDeferredConfirm("", queue, false, false, amqp.Publishing{Body: []byte(strconv.Itoa(i))})
		require.NoError(t, err)
		require.True(t, dc.Wait(), "message %d confirmed", i)
	}
}

// reproConsume acks deliveries until none comes for quiet: how many, of
// how many distinct bodies.
func reproConsume(ds <-chan amqp.Delivery, quiet time.Duration) (n, distinct int) {
	seen := map[string]bool{}
	for {
		select {
		case d, ok := <-ds:
			if !ok {
				return n, len(seen)
			}
			n++
			seen[string(d.Body)] = true
			d.Ack(false)
		case <-time.After(quiet):
			return n, len(seen)
		}
	}
}

// reproQueue is the queue as its leader shows it, once ok (or after 5 s).
func reproQueue(t *testing.T, nodes []*clusterNode, name string, ok func(chaosQueue) bool) chaosQueue {
	t.Helper()
	var qi chaosQueue
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := chaosAPI(nodes[0], "/api/queues/%2F/"+name, &qi); err == nil && ok(qi) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return qi
}
