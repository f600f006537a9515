package multiraft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func all3() []uint64 { return []uint64{1, 2, 3} }

func (c *testCluster) proposeN(group uint64, prefix string, n int) {
	c.t.Helper()
	for i := range n {
		if err := c.proposeAnywhere(group, fmt.Sprintf("%s%d", prefix, i)); err != nil {
			c.t.Fatal(err)
		}
	}
}

func TestRestartRejoinsAndCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	c.proposeN(1, "a", 10)
	lead := c.leader(1)
	down := lead%3 + 1
	c.stop(down)
	c.proposeN(1, "b", 10)

	c.start(down)
	if got := c.nodes[down].h.RecoveredGroups(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("recovered groups %v, want [1]", got)
	}
	c.startGroup(down, 1, nil)
	c.waitApplied(1, 20, all3()...)
	c.agree(1, all3()...)

	// The whole cluster down and up again: every member rebuilds its state
	// machine from its own WAL, then goes on committing.
	for id := uint64(1); id <= 3; id++ {
		c.stop(id)
	}
	for id := uint64(1); id <= 3; id++ {
		c.start(id)
		c.startGroup(id, 1, nil)
	}
	c.waitApplied(1, 20, all3()...)
	c.proposeN(1, "c", 5)
	c.waitApplied(1, 25, all3()...)
	c.agree(1, all3()...)
}

func TestFollowerCatchesUpBySnapshot(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 16
		cfg.CompactKeep = -1
		cfg.CompactHold = -1 // the stopped follower still looks live for a moment
		cfg.SegmentSize = 2 << 10
	})
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
		c.startGroup(id, 2, all3()) // an idle group that must not pin old segments
	}
	c.proposeN(2, "idle", 1)
	c.proposeN(1, "a", 5)
	lead := c.leader(1)
	down := lead%3 + 1
	c.stop(down)
	c.proposeN(1, "b", 60)
	// The leader's log now starts above what the stopped follower has.
	lg := c.nodes[lead].h.Group(1)
	if first, _ := lg.storage.FirstIndex(); first <= 10 {
		t.Fatalf("leader's log still starts at %d", first)
	}
	c.start(down)
	c.startGroup(down, 1, nil)
	c.startGroup(down, 2, nil)
	c.waitApplied(1, 65, all3()...)
	c.agree(1, all3()...)
	if s := c.nodes[down].h.Stats(); s.Restores == 0 {
		t.Fatalf("follower caught up without a snapshot: %+v", s)
	}
	s := c.nodes[lead].h.Stats()
	if s.Snapshots == 0 || s.WAL.Removed == 0 {
		t.Fatalf("leader took %d snapshots and removed %d segments", s.Snapshots, s.WAL.Removed)
	}
	t.Logf("leader: %d snapshots, WAL %d segments (%d removed)", s.Snapshots, s.WAL.Segments, s.WAL.Removed)

	// The caught-up follower restarts from its received snapshot.
	c.stop(down)
	c.start(down)
	c.startGroup(down, 1, nil)
	c.startGroup(down, 2, nil)
	c.proposeN(1, "c", 3)
	c.waitApplied(1, 68, all3()...)
	c.agree(1, all3()...)
}

func TestPartitionedLeaderStepsDown(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	c.proposeN(1, "a", 5)
	old := c.leader(1)
	og := c.nodes[old].h.Group(1)
	changed := og.LeaderChanged()
	c.isolate(old, true)

	// A proposal in flight on the isolated leader cannot commit; it fails
	// once the leader steps down.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := og.Propose(ctx, []byte("lost"))
	if !errors.Is(err, ErrLeadershipLost) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("propose on isolated leader: %v", err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("isolated leader never stepped down")
	}
	if _, local := og.Leader(); local {
		t.Fatal("isolated node still leads")
	}

	var rest []uint64
	for _, id := range all3() {
		if id != old {
			rest = append(rest, id)
		}
	}
	lead := c.leader(1, rest...)
	if lead == old {
		t.Fatalf("majority elected the isolated node %d", old)
	}
	c.proposeN(1, "b", 10)
	c.waitApplied(1, 15, rest...)
	term := c.nodes[lead].h.Group(1).Status().GetTerm()

	c.isolate(old, false)
	c.waitApplied(1, 15, all3()...)
	c.agree(1, all3()...)
	for _, d := range c.nodes[old].sms[1].copy() {
		if string(d) == "lost" {
			t.Fatal("the isolated leader's uncommitted entry was applied")
		}
	}
	// Pre-vote: the rejoining node did not force an election.
	if l, local := c.nodes[lead].h.Group(1).Leader(); !local || l != lead {
		t.Fatalf("leader changed from %d to %d after healing", lead, l)
	}
	if now := c.nodes[lead].h.Group(1).Status().GetTerm(); now != term {
		t.Fatalf("term moved from %d to %d after healing", term, now)
	}
	c.proposeN(1, "c", 3)
	c.waitApplied(1, 18, all3()...)
	c.agree(1, all3()...)
}

func TestMembershipAddRemove(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	c.proposeN(1, "a", 10)
	n4 := c.addNode()
	c.startGroup(n4, 1, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lead := c.leader(1, all3()...)
	if err := c.nodes[lead].h.Group(1).AddNode(ctx, n4); err != nil {
		t.Fatalf("add node %d: %v", n4, err)
	}
	c.proposeN(1, "b", 5)
	four := []uint64{1, 2, 3, n4}
	c.waitApplied(1, 15, four...)
	c.agree(1, four...)
	voters := c.nodes[n4].h.Group(1).Status().Config.Voters.IDs()
	if len(voters) != 4 {
		t.Fatalf("voters %v after adding %d", voters, n4)
	}

	// Remove the leader itself: it steps down and the rest elect a new one.
	lead = c.leader(1)
	if err := c.nodes[lead].h.Group(1).RemoveNode(ctx, lead); err != nil && !errors.Is(err, ErrLeadershipLost) {
		t.Fatalf("remove node %d: %v", lead, err)
	}
	var rest []uint64
	for _, id := range four {
		if id != lead {
			rest = append(rest, id)
		}
	}
	newLead := c.leader(1, rest...)
	if newLead == lead {
		t.Fatal("removed node still leads")
	}
	if err := c.nodes[lead].h.RemoveGroup(1); err != nil {
		t.Fatal(err)
	}
	c.proposeN(1, "c", 5)
	c.waitApplied(1, 20, rest...)
	c.agree(1, rest...)
	if v := c.nodes[newLead].h.Group(1).Status().Config.Voters.IDs(); len(v) != 3 {
		t.Fatalf("voters %v after removing %d", v, lead)
	}
	// The removed group is gone from the node's WAL for good.
	c.stop(lead)
	c.start(lead)
	if got := c.nodes[lead].h.RecoveredGroups(); len(got) != 0 {
		t.Fatalf("removed group recovered: %v", got)
	}
}
