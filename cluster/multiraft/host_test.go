package multiraft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestThreeNodesCommit(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, []uint64{1, 2, 3})
	}
	lead := c.leader(1)
	for i := range 20 {
		if err := c.propose(lead, 1, fmt.Sprintf("e%d", i)); err != nil {
			t.Fatalf("propose %d: %v", i, err)
		}
	}
	c.waitApplied(1, 20, 1, 2, 3)
	c.agree(1, 1, 2, 3)

	// A follower refuses and names the leader.
	follower := lead%3 + 1
	err := c.propose(follower, 1, "x")
	var nle *NotLeaderError
	if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) || nle.Leader != lead {
		t.Fatalf("propose on follower: %v, want NotLeaderError naming %d", err, lead)
	}
	// The result of Apply comes back to the proposer.
	v, err := c.nodes[lead].h.Group(1).Propose(t.Context(), []byte("last"))
	if err != nil || v != 21 {
		t.Fatalf("propose: %v, %v; want 21", v, err)
	}
}

// proposeAnywhere proposes on whichever node leads, following NotLeader
// hints, until it succeeds or the deadline passes.
func (c *testCluster) proposeAnywhere(group uint64, data string) error {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	node := uint64(1)
	for {
		n := c.nodes[node]
		var err error
		if n.alive && n.h.Group(group) != nil {
			_, err = n.h.Group(group).Propose(ctx, []byte(data))
			if err == nil {
				return nil
			}
		}
		var nle *NotLeaderError
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("group %d: %w (last: %v)", group, ctx.Err(), err)
		case errors.As(err, &nle) && nle.Leader != 0 && !errors.Is(err, ErrLeadershipLost):
			node = nle.Leader
		default:
			node = node%uint64(len(c.nodes)) + 1
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond): // no leader yet: an election is under way
			}
		}
	}
}

func TestHundredGroupsBatchFsync(t *testing.T) {
	const groups, perGroup = 100, 10
	// 300 replicas on two shared cores under -race: a slower clock keeps
	// elections calm.
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.TickInterval = 50 * time.Millisecond })
	for g := uint64(1); g <= groups; g++ {
		for id := uint64(1); id <= 3; id++ {
			c.startGroup(id, g, []uint64{1, 2, 3})
		}
	}
	before := make(map[uint64]Stats)
	for id := uint64(1); id <= 3; id++ {
		before[id] = c.nodes[id].h.Stats()
	}
	var wg sync.WaitGroup
	errs := make(chan error, groups)
	for g := uint64(1); g <= groups; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGroup {
				if err := c.proposeAnywhere(g, fmt.Sprintf("g%d-%d", g, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := uint64(1); g <= groups; g++ {
		c.waitApplied(g, perGroup, 1, 2, 3)
		c.agree(g, 1, 2, 3)
	}
	for id := uint64(1); id <= 3; id++ {
		s := c.nodes[id].h.Stats()
		syncs := s.WAL.Syncs - before[id].WAL.Syncs
		entries := s.WAL.Entries - before[id].WAL.Entries
		t.Logf("node %d: %d entries in %d fsyncs (%.1f per fsync), %d messages in %d frames",
			id, entries, syncs, float64(entries)/float64(syncs), s.Messages, s.Frames)
		if entries < groups*perGroup {
			t.Errorf("node %d wrote %d entries, want >= %d", id, entries, groups*perGroup)
		}
		if syncs*4 > entries {
			t.Errorf("node %d: %d fsyncs for %d entries; want at least 4 entries per fsync", id, syncs, entries)
		}
	}
}
