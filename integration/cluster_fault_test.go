package integration

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// TestClusterFaultPartition cuts every inter-node link of one node (the
// leader in even rounds, a follower in odd ones) through the test's
// fault-injecting proxies: the two others elect (if need be) and take
// metadata changes; on the isolated node a change fails with 503 once it
// knows it has no leader, while a queue at home there keeps serving; after
// the links heal, every node lists the same queues and users, with the
// majority's changes and without the refused one, and the healed node takes
// changes again.
func TestClusterFaultPartition(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes behind fault-injecting proxies")
	fc := startFaultCluster(t)
	all := []int{0, 1, 2}
	for r := range faultRounds(t) {
		lead := fc.leader(0, all...)
		victim := lead
		if r%2 == 1 {
			victim = (lead + 1) % 3
		}
		a, b := (victim+1)%3, (victim+2)%3
		iso, maj := fc.nodes[victim], fc.nodes[a]
		home := fmt.Sprintf("part-home-%d", r)
		code, raw := iso.api("PUT", "/api/queues/%2F/"+home, `{"durable":true}`)
		require.Equal(t, 201, code, string(raw))
		sameNames(t, fc.nodes, "/api/queues/%2F", []string{home}, nil)

		fc.isolate(victim, true)
		// Wait for the majority's own leader first (a change forwarded to
		// the cut-off leader before that is TestClusterForwardToCutOffLeader's).
		require.NotEqual(t, victim, fc.leader(a, a, b), "the majority has a leader of its own")
		majQ, majU, isoQ := fmt.Sprintf("part-maj-%d", r), fmt.Sprintf("part-user-%d", r), fmt.Sprintf("part-iso-%d", r)
		code, raw = maj.api("PUT", "/api/queues/%2F/"+majQ, `{"durable":true}`)
		require.Equal(t, 201, code, "a queue declared on the majority: %s", raw)
		code, raw = fc.nodes[b].api("PUT", "/api/users/"+majU, `{"password":"p","tags":""}`)
		require.Equal(t, 201, code, "a user added on the majority: %s", raw)

		start := time.Now()
		code, raw = iso.api("PUT", "/api/queues/%2F/"+isoQ, `{"durable":true}`)
		require.Equal(t, 503, code, "a declare on the isolated node: %s", raw)
		require.Contains(t, string(raw), "no majority")
		t.Logf("round %d: isolated node %d (leader %d) refused a change after %v", r, victim+1, lead+1, time.Since(start).Round(time.Millisecond))

		// The isolated node's own queue keeps serving.
		c, err := amqp.Dial(iso.url())
		require.NoError(t, err)
		ch, err := c.Channel()
		require.NoError(t, err)
		publish(t, ch, "", home, body("during the partition"))
		require.Equal(t, "during the partition", getBody(t, ch, home))
		c.Close()

		fc.isolate(victim, false)
		sameNames(t, fc.nodes, "/api/queues/%2F", []string{home, majQ}, []string{isoQ})
		sameNames(t, fc.nodes, "/api/users", []string{majU}, nil)
		after := fmt.Sprintf("part-after-%d", r)
		code, raw = iso.api("PUT", "/api/queues/%2F/"+after, `{"durable":true}`)
		require.Equal(t, 201, code, "a declare on the healed node: %s", raw)
		sameNames(t, fc.nodes, "/api/queues/%2F", []string{after}, nil)
	}
}

// TestClusterFaultSIGSTOP pauses the leader (SIGSTOP): the two others
// elect a leader and take metadata changes; resumed (SIGCONT), the old
// leader takes a change itself and catches up, and every node lists the
// same queues and users.
func TestClusterFaultSIGSTOP(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	for r := range faultRounds(t) {
		var lead int
		waitFor(t, "a leader", func() bool { lead = leaderIndex(nodes, 0); return lead >= 0 })
		a, b := (lead+1)%3, (lead+2)%3
		nodes[lead].signal(syscall.SIGSTOP)
		stopped := true
		t.Cleanup(func() {
			if stopped && nodes[lead].cmd != nil {
				nodes[lead].signal(syscall.SIGCONT)
			}
		})
		waitFor(t, "a new leader among the running nodes", func() bool {
			l := leaderIndex(nodes, a)
			return l == a || l == b
		})
		q, u := fmt.Sprintf("stop-q-%d", r), fmt.Sprintf("stop-u-%d", r)
		code, raw := nodes[a].api("PUT", "/api/queues/%2F/"+q, `{"durable":true}`)
		require.Equal(t, 201, code, "a declare while the old leader is paused: %s", raw)
		code, raw = nodes[b].api("PUT", "/api/users/"+u, `{"password":"p","tags":""}`)
		require.Equal(t, 201, code, "a user added while the old leader is paused: %s", raw)

		nodes[lead].signal(syscall.SIGCONT)
		stopped = false
		// Its first change may reach it while it still believes it leads.
		resumed := fmt.Sprintf("stop-resumed-%d", r)
		code, raw = nodes[lead].api("PUT", "/api/queues/%2F/"+resumed, `{"durable":true}`)
		require.Equal(t, 201, code, "a declare on the resumed old leader: %s", raw)
		sameNames(t, nodes, "/api/queues/%2F", []string{q, resumed}, nil)
		sameNames(t, nodes, "/api/users", []string{u}, nil)
	}
}

// TestClusterFaultKillLeaderUnderDeclares: a client on a follower declares
// durable queues one after another; the leader is killed (kill -9) in the
// middle of the stream and the client goes on (reconnecting when a declare
// fails); once the killed node is restarted with its data, every declare
// that returned declare-ok is on every node.
func TestClusterFaultKillLeaderUnderDeclares(t *testing.T) {
	warrenOnly(t, "starts a cluster of bin/warren processes")
	nodes := startTestCluster(t, 3, 0)
	for r := range faultRounds(t) {
		var lead int
		waitFor(t, "a leader", func() bool { lead = leaderIndex(nodes, 0); return lead >= 0 })
		client := nodes[(lead+1)%3]

		var mu sync.Mutex
		var ok []string
		var failures int
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			var ch *amqp.Channel
			var conn *amqp.Connection
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if ch == nil {
					var err error
					if conn, err = amqp.Dial(client.url()); err != nil {
						time.Sleep(50 * time.Millisecond) // the client node is not the one killed: rare
						continue
					}
					if ch, err = conn.Channel(); err != nil {
						conn.Close()
						conn, ch = nil, nil
						continue
					}
				}
				name := fmt.Sprintf("kill-%d-%d", r, i)
				if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
					conn.Close()
					conn, ch = nil, nil
					continue
				}
				mu.Lock()
				ok = append(ok, name)
				mu.Unlock()
			}
		}()
		count := func() int { mu.Lock(); defer mu.Unlock(); return len(ok) }
		waitFor(t, "30 declares before the kill", func() bool { return count() >= 30 })
		nodes[lead].kill()
		atKill := count()
		waitFor(t, "30 declares after the kill", func() bool { return count() >= atKill+30 })
		close(stop)
		<-done
		nodes[lead].start()
		nodes[lead].waitHTTP()
		mu.Lock()
		want := append([]string(nil), ok...)
		t.Logf("round %d: leader %d killed after %d declares; %d ok in all, %d failed", r, lead+1, atKill, len(want), failures)
		mu.Unlock()
		sameNames(t, nodes, "/api/queues/%2F", want, nil)
	}
}
