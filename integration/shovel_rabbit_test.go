package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// Shovels between Warren and a real RabbitMQ 3.10.8 (the oracle of
// ../shared/tools/rabbitmq-oracle.sh), each broker killed (SIGKILL) and
// restarted during the transfer. They skip where RabbitMQ or the script is
// missing (.ci/run installs rabbitmq-server). WARREN_SHOVEL_MESSAGES sets the
// number of messages (make shovel-test: 100,000), WARREN_SHOVEL_KILLS the
// brokers killed in turn (default warren,rabbitmq,warren,rabbitmq).

// oracleScript is the RabbitMQ launcher shared by the worktrees.
const oracleScript = "../../shared/tools/rabbitmq-oracle.sh"

// rabbitNode is a RabbitMQ node on loopback that a test started.
type rabbitNode struct {
	port, mport int
	node        string
}

// startRabbit starts a RabbitMQ node on port (management on port+10000),
// with its shovel plugins when shovels, and stops it when the test ends.
func startRabbit(t *testing.T, port int, shovels bool) *rabbitNode {
	t.Helper()
	warrenOnly(t, "starts RabbitMQ itself, beside Warren")
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		t.Skip("rabbitmq-server is not installed")
	}
	if _, err := os.Stat(oracleScript); err != nil {
		t.Skip("no " + oracleScript)
	}
	r := &rabbitNode{port: port, mport: port + 10000, node: fmt.Sprintf("oracle%d@localhost", port)}
	t.Cleanup(func() { exec.Command("rabbitmqctl", "-n", r.node, "stop").Run() })
	r.start(t)
	if shovels {
		cmd := exec.Command("rabbitmq-plugins", "-n", r.node, "enable", "rabbitmq_shovel", "rabbitmq_shovel_management")
		cmd.Env = append(os.Environ(), "RABBITMQ_ENABLED_PLUGINS_FILE="+r.pluginsFile())
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
	}
	return r
}

func (r *rabbitNode) pluginsFile() string {
	return filepath.Join("/tmp", fmt.Sprintf("rabbitmq-oracle-%d", r.port), "enabled_plugins")
}

func (r *rabbitNode) start(t *testing.T) {
	t.Helper()
	out, err := exec.Command(oracleScript, "start", strconv.Itoa(r.port), strconv.Itoa(r.mport)).CombinedOutput()
	require.NoError(t, err, string(out))
}

// kill SIGKILLs the node's Erlang VM.
func (r *rabbitNode) kill(t *testing.T) {
	t.Helper()
	out, err := exec.Command("rabbitmqctl", "-n", r.node, "eval", "os:getpid().").Output()
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.Trim(strings.TrimSpace(string(out)), `"`))
	require.NoError(t, err, string(out))
	p, err := os.FindProcess(pid)
	require.NoError(t, err)
	require.NoError(t, p.Kill())
	for range 100 { // until its port is free
		if exec.Command("rabbitmqctl", "-n", r.node, "status").Run() != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rabbitNode) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/%%2F", r.port) }

func (r *rabbitNode) api(t *testing.T) *apiClient {
	return &apiClient{t: t, base: fmt.Sprintf("http://127.0.0.1:%d", r.mport), user: "guest", pass: "guest", vhost: "/", v: "%2F"}
}

// warrenProc is bin/warren on a data directory, restartable.
type warrenProc struct {
	bin, dir   string
	cmd        *exec.Cmd
	amqp, http string
}

func startWarrenProc(t *testing.T) *warrenProc {
	t.Helper()
	w := &warrenProc{bin: warrenBinary(t), dir: t.TempDir()}
	w.start(t)
	t.Cleanup(func() {
		if w.cmd != nil {
			w.cmd.Process.Kill()
			w.cmd.Wait()
		}
	})
	return w
}

func (w *warrenProc) start(t *testing.T) {
	t.Helper()
	w.cmd = exec.Command(w.bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--prometheus-listen", "",
		"--data-dir", w.dir, "--log-level", "info")
	addrs := runWarrenListeners(t, w.cmd, "AMQP", "HTTP")
	w.amqp, w.http = addrs["AMQP"], addrs["HTTP"]
}

func (w *warrenProc) kill(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Kill())
	w.cmd.Wait()
	w.cmd = nil
}

func (w *warrenProc) url() string { return "amqp://guest:guest@" + w.amqp + "/%2F" }

func (w *warrenProc) api(t *testing.T) *apiClient {
	return &apiClient{t: t, base: "http://" + w.http, user: "guest", pass: "guest", vhost: "/", v: "%2F"}
}

// queueReady is a queue's ready messages at url, or -1 when the broker or
// the queue cannot be reached.
func queueReady(url, q string) int {
	c, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
	if err != nil {
		return -1
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return -1
	}
	qi, err := ch.QueueDeclarePassive(q, true, false, false, false, nil)
	if err != nil {
		return -1
	}
	return qi.Messages
}

// publishSeq publishes n persistent messages numbered 0..n-1 to q at url,
// with confirms.
func publishSeq(t *testing.T, url, q string, n int) {
	t.Helper()
	c, err := amqp.Dial(url)
	require.NoError(t, err)
	defer c.Close()
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(q, true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, n))
	for i := range n {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: b[:]}))
	}
	for range n {
		require.True(t, (<-confirms).Ack)
	}
}

// drainSeq consumes q at url until every number 0..n-1 arrived (at least
// once), reconnecting as needed, and returns how many came twice or more.
func drainSeq(t *testing.T, url, q string, n int, limit time.Duration) (dups int) {
	t.Helper()
	seen := make([]int, n)
	missing := n
	deadline := time.Now().Add(limit)
	for missing > 0 && time.Now().Before(deadline) {
		c, err := amqp.Dial(url)
		if err != nil {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		ch, err := c.Channel()
		if err == nil {
			err = ch.Qos(1000, 0, false)
		}
		var ds <-chan amqp.Delivery
		if err == nil {
			ds, err = ch.Consume(q, "", false, false, false, false, nil)
		}
		for err == nil && missing > 0 && time.Now().Before(deadline) {
			select {
			case d, ok := <-ds:
				if !ok {
					err = fmt.Errorf("consumer closed")
					break
				}
				require.Len(t, d.Body, 8)
				i := binary.BigEndian.Uint64(d.Body)
				require.Less(t, i, uint64(n))
				if seen[i] == 0 {
					missing--
				} else {
					dups++
				}
				seen[i]++
				d.Ack(false)
			case <-time.After(time.Second):
			}
		}
		c.Close()
	}
	if missing > 0 {
		var first []int
		for i, s := range seen {
			if s == 0 && len(first) < 10 {
				first = append(first, i)
			}
		}
		t.Fatalf("%d of %d messages never arrived (first: %v)", missing, n, first)
	}
	return dups
}

func shovelMessages(t *testing.T, def int) int {
	if s := os.Getenv("WARREN_SHOVEL_MESSAGES"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		return n
	}
	return def
}

// TestShovelRabbitMQToWarrenAndBackSurvivesKills: two shovels on Warren,
// RabbitMQ's queue in → Warren's queue mid → RabbitMQ's queue out, both
// on-confirm; Warren and RabbitMQ are each SIGKILLed and restarted twice
// during the transfer, and every message still arrives in out at least
// once (on-confirm's promise).
func TestShovelRabbitMQToWarrenAndBackSurvivesKills(t *testing.T) {
	r := startRabbit(t, 5691, false)
	w := startWarrenProc(t)
	n := shovelMessages(t, 10000)
	sfx := suffix(t)
	in, mid, out := "shovel-in-"+sfx, "shovel-mid-"+sfx, "shovel-out-"+sfx
	publishSeq(t, r.url(), in, n)
	start := time.Now()
	api := w.api(t)
	api.expect(201, http.MethodPut, "/api/parameters/shovel/%2F/in", map[string]any{"value": map[string]any{
		"src-uri": r.url(), "src-queue": in, "dest-uri": "amqp://", "dest-queue": mid, "reconnect-delay": 1}})
	api.expect(201, http.MethodPut, "/api/parameters/shovel/%2F/out", map[string]any{"value": map[string]any{
		"src-uri": "amqp://", "src-queue": mid, "dest-uri": []any{"amqp://guest:guest@127.0.0.1:1", r.url()}, "dest-queue": out, "reconnect-delay": 1}})

	// Kill a broker each time another fifth of the messages reached out.
	kills := []string{"warren", "rabbitmq", "warren", "rabbitmq"}
	if k := os.Getenv("WARREN_SHOVEL_KILLS"); k != "" {
		kills = strings.Split(k, ",") // e.g. warren,warren: only Warren dies
	}
	// state is what a failed wait shows: where the messages are and what
	// the shovels say (-1: that broker or queue cannot be reached).
	state := func() string {
		st := fmt.Sprintf("ready in %s: %d, %s: %d, %s: %d; shovels: ", in, queueReady(r.url(), in),
			mid, queueReady(w.url(), mid), out, queueReady(r.url(), out))
		if res := w.api(t).do(http.MethodGet, "/api/shovels", nil); res.status == 200 {
			return st + string(res.raw)
		}
		return st + "Warren's API unreachable"
	}
	await := func(what string, limit time.Duration, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(limit); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s; %s", what, limit, state())
			}
		}
	}
	for i, who := range kills {
		want := n * (i + 1) / (len(kills) + 1)
		await(fmt.Sprintf("%d messages in out before killing %s", want, who), 3*time.Minute,
			func() bool { return queueReady(r.url(), out) >= want })
		t.Logf("%s: %d in out; killing %s", time.Since(start).Round(time.Millisecond), want, who)
		switch who {
		case "warren":
			w.kill(t)
			w.start(t)
		case "rabbitmq":
			r.kill(t)
			r.start(t)
		}
	}
	dups := drainSeq(t, r.url(), out, n, 5*time.Minute)
	t.Logf("%d messages RabbitMQ → Warren → RabbitMQ in %s through %d kills: every one arrived, %d twice (at least once, as on-confirm promises)",
		n, time.Since(start).Round(time.Millisecond), len(kills), dups)
	// Every message reached out, but copies may still wait: those the
	// second shovel had published and not acked in mid when a broker died
	// are requeued there and move on once it is back, after its backoff
	// (at most 8 reconnect-delays, 8 s here).
	await("in and mid empty", time.Minute, func() bool {
		return queueReady(r.url(), in) == 0 && queueReady(w.url(), mid) == 0
	})
	// Both reconnected (the last restart may still be in their backoff).
	require.Eventually(t, func() bool {
		l := w.api(t).expect(200, http.MethodGet, "/api/shovels", nil).list(t)
		for _, s := range l {
			if s.(map[string]any)["state"] != "running" {
				return false
			}
		}
		return len(l) == 2
	}, time.Minute, 100*time.Millisecond, "both shovels running again")
}

// TestRabbitMQShovelIntoWarren: RabbitMQ's own shovel with Warren as its
// destination.
func TestRabbitMQShovelIntoWarren(t *testing.T) {
	r := startRabbit(t, 5692, true)
	w := startWarrenProc(t)
	n := 5000
	sfx := suffix(t)
	src, dst := "rmq-src-"+sfx, "rmq-dst-"+sfx
	publishSeq(t, r.url(), src, n)
	r.api(t).expect(201, http.MethodPut, "/api/parameters/shovel/%2F/to-warren-"+sfx, map[string]any{"value": map[string]any{
		"src-uri": "amqp://", "src-queue": src, "dest-uri": w.url(), "dest-queue": dst,
		"src-delete-after": "queue-length", "dest-add-forward-headers": true}})
	dups := drainSeq(t, w.url(), dst, n, 2*time.Minute)
	require.Equal(t, 0, dups, "no duplicates without failures")
	require.Eventually(t, func() bool {
		return r.api(t).do(http.MethodGet, "/api/parameters/shovel/%2F/to-warren-"+sfx, nil).status == 404
	}, time.Minute, 100*time.Millisecond, "RabbitMQ's shovel deleted itself after queue-length")
}

// TestShovelInACluster: a shovel made through any node of a three-node
// cluster is stored on every node and runs on one, the metadata leader; the
// queue it declares (as the internal user) is replicated like any other.
func TestShovelInACluster(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	leader := -1
	waitFor(t, "three running members with a leader", func() bool {
		running := 0
		for _, n := range nodes[0].status().Nodes {
			if n.Running && n.Name != "" {
				running++
			}
			for j, nd := range nodes {
				if n.Leader && nd.name == n.Name {
					leader = j
				}
			}
		}
		return running == 3 && leader >= 0
	})
	follower := (leader + 1) % 3
	ch := nodes[follower].channel()
	_, err := ch.QueueDeclare("cl-shovel-src", true, false, false, false, nil)
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "cl-shovel-src", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(strconv.Itoa(i))}))
	}
	code, raw := nodes[follower].api("PUT", "/api/parameters/shovel/%2F/cl", `{"value": {"src-uri": "amqp://", "src-queue": "cl-shovel-src", "dest-uri": "amqp://", "dest-queue": "cl-shovel-dst"}}`)
	require.Equal(t, 201, code, string(raw))
	for _, nd := range nodes {
		code, raw := nd.api("GET", "/api/parameters/shovel/%2F/cl", "")
		require.Equal(t, 200, code, "%s: %s", nd.name, raw)
	}
	waitFor(t, "the shovel running on the leader", func() bool {
		_, raw := nodes[leader].api("GET", "/api/shovels", "")
		return strings.Contains(string(raw), `"state":"running"`)
	})
	for _, nd := range nodes {
		// Every node lists it once, on the leader.
		_, raw := nd.api("GET", "/api/shovels", "")
		var l []map[string]any
		require.NoError(t, json.Unmarshal(raw, &l), string(raw))
		require.Len(t, l, 1, "%s: %s", nd.name, raw)
		require.Equal(t, nodes[leader].name, l[0]["node"], "%s: %s", nd.name, raw)
	}
	for _, nd := range nodes {
		waitFor(t, "every message moved, seen from "+nd.name, func() bool {
			return queueReady(nd.url()+"%2F", "cl-shovel-dst") == 100
		})
	}
	code, raw = nodes[(leader+2)%3].api("DELETE", "/api/parameters/shovel/%2F/cl", "")
	require.Equal(t, 204, code, string(raw))
	waitFor(t, "the shovel stopped", func() bool {
		_, raw := nodes[leader].api("GET", "/api/shovels", "")
		return strings.TrimSpace(string(raw)) == "[]"
	})
}
