package multiraft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// startGroups starts groups 1..n on every node of c with all of c's nodes as
// members, and commits one entry in each so that every group has a leader.
func (c *testCluster) startGroups(n int) {
	c.t.Helper()
	var ids []uint64
	for id := range c.nodes {
		ids = append(ids, id)
	}
	for g := uint64(1); g <= uint64(n); g++ {
		for _, id := range ids {
			c.startGroup(id, g, ids)
		}
	}
	c.proposeAll(n, "warm-up")
}

// proposeAll commits data in groups 1..n, 32 groups at a time.
func (c *testCluster) proposeAll(n int, data string) {
	c.t.Helper()
	next := make(chan uint64)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				if err := c.proposeAnywhere(g, data); err != nil {
					errs <- err
				}
			}
		}()
	}
	for g := uint64(1); g <= uint64(n); g++ {
		next <- g
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		c.t.Fatal(err)
	}
}

// waitQuiesced waits until n groups are quiesced on each of nodes.
func (c *testCluster) waitQuiesced(n int, timeout time.Duration, nodes ...uint64) {
	c.t.Helper()
	waitFor(c.t, timeout, func() bool {
		for _, id := range nodes {
			if c.nodes[id].h.Stats().Quiesced != n {
				return false
			}
		}
		return true
	}, fmt.Sprintf("%d groups quiesced on %v", n, nodes))
}

// newLeader waits until nodes agree that one of them leads group, with a
// timeout, and returns it. Unlike leader, it copes with the others still
// naming a node that does not run the group any more.
func (c *testCluster) newLeader(group uint64, timeout time.Duration, nodes ...uint64) uint64 {
	c.t.Helper()
	var lead uint64
	waitFor(c.t, timeout, func() bool {
		lead = 0
		for _, id := range nodes {
			l, _ := c.nodes[id].h.Group(group).Leader()
			if l == 0 || (lead != 0 && l != lead) {
				return false
			}
			lead = l
		}
		if !slices.Contains(nodes, lead) {
			return false
		}
		_, local := c.nodes[lead].h.Group(group).Leader()
		return local
	}, fmt.Sprintf("a leader of group %d among %v", group, nodes))
	return lead
}

// settled waits until group's state machines on nodes hold the same number
// of entries, at least n, and checks that they agree. (proposeAnywhere may
// commit an entry twice when a leadership change makes it retry.)
func (c *testCluster) settled(group uint64, n int, nodes ...uint64) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, func() bool {
		l := c.nodes[nodes[0]].sms[group].len()
		for _, id := range nodes[1:] {
			if c.nodes[id].sms[group].len() != l {
				return false
			}
		}
		return l >= n
	}, fmt.Sprintf("group %d: the same %d+ entries applied on %v", group, n, nodes))
	c.agree(group, nodes...)
}

// leadAll moves the leadership of groups 1..n to node to.
func (c *testCluster) leadAll(n int, to uint64) {
	c.t.Helper()
	for g := uint64(1); g <= uint64(n); g++ {
		waitFor(c.t, 15*time.Second, func() bool {
			lead := c.leader(g)
			if lead == to {
				return true
			}
			c.nodes[lead].h.Group(g).TransferLeadership(to)
			select {
			case <-c.nodes[to].h.Group(g).LeaderChanged():
			case <-time.After(200 * time.Millisecond):
			}
			return false
		}, fmt.Sprintf("node %d leads group %d", to, g))
	}
}

func TestIdleGroupsQuiesce(t *testing.T) {
	const groups = 1000
	// 3,000 replicas on two shared cores under -race: a slower clock.
	const tick = 50 * time.Millisecond
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TickInterval = tick })
	c.startGroups(groups)
	c.waitQuiesced(groups, 60*time.Second, all3()...)

	before := make(map[uint64]Stats)
	for id := uint64(1); id <= 3; id++ {
		before[id] = c.nodes[id].h.Stats()
	}
	const window = 2 * time.Second
	time.Sleep(window)
	for id := uint64(1); id <= 3; id++ {
		s, b := c.nodes[id].h.Stats(), before[id]
		msgs, frames, beats, ticks := s.Messages-b.Messages, s.Frames-b.Frames, s.Beats-b.Beats, s.Ticks-b.Ticks
		t.Logf("node %d, %v idle: %d Raft messages in %d frames, %d liveness beats, %d group ticks; %d groups quiesced, %d quiesces, %d wakes in all",
			id, window, msgs, frames, beats, ticks, s.Quiesced, s.Quiesces, s.Wakes)
		if msgs != 0 || ticks != 0 || s.Quiesced != groups {
			t.Errorf("node %d is not quiet: %d messages, %d ticks, %d of %d groups quiesced", id, msgs, ticks, s.Quiesced, groups)
		}
		// One beat per peer per tick: 2 × 40 in the window, give or take.
		if want := uint64(2 * window / tick); beats < want/2 || beats > want*2 {
			t.Errorf("node %d sent %d liveness beats in %v, want about %d", id, beats, window, want)
		}
		if s.PeersDown != 0 {
			t.Errorf("node %d judges %d peers down", id, s.PeersDown)
		}
	}
}

func TestQuiescedGroupCommitsPromptly(t *testing.T) {
	const groups = 20
	// At the default 100 ms tick a proposal that waited for a tick (or an
	// election) would show.
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TickInterval = 100 * time.Millisecond })
	c.startGroups(groups)
	c.waitQuiesced(groups, 30*time.Second, all3()...)

	var took []time.Duration
	for g := uint64(1); g <= groups; g++ {
		lead := c.leader(g)
		start := time.Now()
		if _, err := c.nodes[lead].h.Group(g).Propose(t.Context(), []byte("wake")); err != nil {
			t.Fatalf("group %d: propose: %v", g, err)
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	t.Logf("a proposal to a quiesced group commits in %v (median), %v (max)", took[groups/2], took[groups-1])
	// No tick is waited for: the proposal wakes the leader, its append
	// wakes the followers.
	if took[groups/2] > 50*time.Millisecond || took[groups-1] > time.Second {
		t.Errorf("proposals to quiesced groups took %v (median), %v (max)", took[groups/2], took[groups-1])
	}
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 2, all3()...)
	}
	// Idle again, they quiesce again.
	c.waitQuiesced(groups, 30*time.Second, all3()...)
	if s := c.nodes[1].h.Stats(); s.Wakes == 0 {
		t.Fatalf("no group woke on node 1: %+v", s)
	}
}

func TestQuiescedLeaderHostDiesFailover(t *testing.T) {
	const groups = 100
	c := newTestCluster(t, 3, nil)
	c.startGroups(groups)
	c.leadAll(groups, 1)
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	start := time.Now()
	c.stop(1)
	for g := uint64(1); g <= groups; g++ {
		c.newLeader(g, 5*time.Second, 2, 3)
	}
	took := time.Since(start)
	t.Logf("%d quiesced groups elected new leaders %v after their leader's host stopped", groups, took)
	// Liveness judges the host down after ElectionTicks (100 ms), then an
	// election takes 1 to ElectionTicks ticks: about 300 ms, more under
	// -race on a loaded machine.
	if took > 3*time.Second {
		t.Errorf("failover of quiesced groups took %v", took)
	}
	c.proposeAll(groups, "after")
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 2, 2, 3)
	}
}

func TestPartitionedQuiescedLeader(t *testing.T) {
	const groups = 20
	c := newTestCluster(t, 3, nil)
	c.startGroups(groups)
	c.leadAll(groups, 1)
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	c.isolate(1, true)
	start := time.Now()
	// The majority side elects new leaders and commits.
	for g := uint64(1); g <= groups; g++ {
		lead := c.leader(g, 2, 3)
		if _, err := c.nodes[lead].h.Group(g).Propose(t.Context(), []byte("majority")); err != nil {
			t.Fatalf("group %d: propose on new leader %d: %v", g, lead, err)
		}
	}
	t.Logf("new leaders committed %v after the partition", time.Since(start))
	// The cut-off leader wakes (its peers are judged down), runs
	// CheckQuorum again and steps down, without a proposal to wake it.
	for g := uint64(1); g <= groups; g++ {
		waitFor(t, 3*time.Second, func() bool {
			_, local := c.nodes[1].h.Group(g).Leader()
			return !local
		}, fmt.Sprintf("node 1 stepping down in group %d", g))
	}
	t.Logf("the isolated leader stepped down in every group %v after the partition", time.Since(start))
	// Nothing proposed there commits.
	for g := uint64(1); g <= groups; g++ {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		_, err := c.nodes[1].h.Group(g).Propose(ctx, []byte("lost"))
		cancel()
		if err == nil || !(errors.Is(err, ErrNotLeader) || errors.Is(err, context.DeadlineExceeded)) {
			t.Fatalf("group %d: propose on the isolated node: %v", g, err)
		}
	}

	c.isolate(1, false)
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 2, all3()...)
		for _, d := range c.nodes[1].sms[g].copy() {
			if string(d) == "lost" {
				t.Fatalf("group %d: an entry proposed on the isolated node was applied", g)
			}
		}
	}
	c.proposeAll(groups, "healed")
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 3, all3()...)
	}
	c.waitQuiesced(groups, 15*time.Second, all3()...)
}

// A follower cut off while its groups are quiesced is caught up once the
// link heals, with nothing proposed after that.
func TestIsolatedFollowerCatchesUpAfterHeal(t *testing.T) {
	const groups = 20
	c := newTestCluster(t, 3, nil)
	c.startGroups(groups)
	c.leadAll(groups, 1)
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	c.isolate(3, true)
	c.proposeAll(groups, "while-cut")
	// The leader quiesces without node 3, which it judges down.
	waitFor(t, 15*time.Second, func() bool {
		return c.nodes[1].h.Stats().Quiesced == groups && c.nodes[2].h.Stats().Quiesced == groups
	}, "groups quiesced without node 3")
	c.isolate(3, false)
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 2, all3()...)
	}
	c.waitQuiesced(groups, 15*time.Second, all3()...)
	for g := uint64(1); g <= groups; g++ {
		if lead := c.leader(g); lead != 1 {
			t.Errorf("group %d: leader moved to %d", g, lead)
		}
	}
}

func TestRestartHostWithQuiescedGroups(t *testing.T) {
	const groups = 30
	c := newTestCluster(t, 3, nil)
	c.startGroups(groups)
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	restart := func(id uint64, pause time.Duration) {
		c.stop(id)
		time.Sleep(pause)
		c.start(id)
		if got := len(c.nodes[id].h.RecoveredGroups()); got != groups {
			t.Fatalf("node %d recovered %d groups, want %d", id, got, groups)
		}
		for g := uint64(1); g <= groups; g++ {
			c.startGroup(id, g, nil)
		}
	}

	// Down long enough for the others to notice, and entries committed
	// meanwhile: the restarted node catches up with no further proposal.
	c.stop(2)
	c.proposeAll(groups, "while-down")
	c.start(2)
	for g := uint64(1); g <= groups; g++ {
		c.startGroup(2, g, nil)
	}
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 2, all3()...)
	}
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	// Back before its peers judge it down: the groups it led elect again,
	// the rest take it back as a follower.
	restart(3, 0)
	start := time.Now()
	c.proposeAll(groups, "after-restart")
	t.Logf("every group committed %v after a quick restart of node 3", time.Since(start))
	for g := uint64(1); g <= groups; g++ {
		c.settled(g, 3, all3()...)
	}
	c.waitQuiesced(groups, 15*time.Second, all3()...)
}

// A leader's host that restarts quicker than the liveness timeout and does
// not start one of its groups again: the followers learn of the restart from
// its beats and elect a leader among themselves.
func TestQuickRestartWithoutGroup(t *testing.T) {
	const groups = 10
	c := newTestCluster(t, 3, nil)
	c.startGroups(groups)
	c.leadAll(groups, 1)
	c.waitQuiesced(groups, 15*time.Second, all3()...)

	c.stop(1)
	c.start(1)
	start := time.Now()
	for g := uint64(1); g < groups; g++ {
		c.startGroup(1, g, nil)
	}
	lead := c.newLeader(groups, 5*time.Second, 2, 3)
	t.Logf("group %d, left behind by its leader's restart, elected node %d %v after the restart", groups, lead, time.Since(start))
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("election after a quick restart took %v", took)
	}
	if err := c.propose(lead, groups, "after"); err != nil {
		t.Fatal(err)
	}
	c.settled(groups, 2, 2, 3)
	c.proposeAll(groups-1, "others")
	for g := uint64(1); g < groups; g++ {
		c.settled(g, 2, all3()...)
	}
}

// With quiescence off, every group ticks and no beats are sent.
func TestDisableQuiescence(t *testing.T) {
	const groups = 5
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.DisableQuiescence = true })
	c.startGroups(groups)
	time.Sleep(300 * time.Millisecond)
	for id := uint64(1); id <= 3; id++ {
		before := c.nodes[id].h.Stats()
		time.Sleep(200 * time.Millisecond)
		s := c.nodes[id].h.Stats()
		if s.Quiesced != 0 || s.Quiesces != 0 || s.Beats != 0 {
			t.Errorf("node %d: %+v", id, s)
		}
		if s.Ticks-before.Ticks < groups*5 || s.Messages == before.Messages {
			t.Errorf("node %d ticked %d times and sent %d messages in 200 ms", id, s.Ticks-before.Ticks, s.Messages-before.Messages)
		}
	}
}

// The leader of a quiesced group that removes itself from the group leaves
// the other members to elect a leader among themselves, although its node
// stays up: whether it then stops running the group (as a broker does when
// the queue's member on the leader's node is deleted) or not.
func TestQuiescedLeaderRemovesItself(t *testing.T) {
	for _, stop := range []bool{true, false} {
		t.Run(fmt.Sprintf("stop=%v", stop), func(t *testing.T) {
			c := newTestCluster(t, 3, nil)
			c.startGroups(1)
			c.leadAll(1, 1)
			c.waitQuiesced(1, 15*time.Second, all3()...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.nodes[1].h.Group(1).RemoveNode(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if stop {
				if err := c.nodes[1].h.RemoveGroup(1); err != nil {
					t.Fatal(err)
				}
			}
			c.newLeader(1, 10*time.Second, 2, 3)
			if err := c.proposeAnywhere(1, "after"); err != nil {
				t.Fatal(err)
			}
			c.settled(1, 2, 2, 3)
		})
	}
}
