package multiraft

import (
	"fmt"
	"sync"
	"testing"
)

// A leader that snapshots while a live follower is behind keeps the
// entries that follower lacks (CompactHold), so it catches up from the log
// instead of by a snapshot of the whole state; with no hold it needs one.
//
// The follower is cut off for a moment: if that moment spans one of the
// leader's quorum checks (every election timeout) the follower is no
// longer "recently active" and the leader rightly stops holding for it, so
// a round may end in a snapshot; of three rounds at most one can.
func TestLeaderHoldsLogForLiveFollower(t *testing.T) {
	for _, hold := range []int{0, -1} {
		t.Run(fmt.Sprintf("hold=%d", hold), func(t *testing.T) {
			c := newTestCluster(t, 3, func(cfg *Config) {
				cfg.SnapshotEntries = 16
				cfg.CompactKeep = -1
				cfg.CompactHold = hold
				cfg.ElectionTicks = 50 // quorum checks every 0.5 s
			})
			for id := uint64(1); id <= 3; id++ {
				c.startGroup(id, 1, all3())
			}
			c.proposeN(1, "a", 5)
			lead := c.leader(1)
			slow := lead%3 + 1
			total, fromLog := 5, 0
			for round := range 3 {
				before := c.nodes[slow].h.Stats().Restores
				c.isolate(slow, true)
				var wg sync.WaitGroup
				for i := range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := c.propose(lead, 1, fmt.Sprintf("r%d-%d", round, i)); err != nil {
							t.Error(err)
						}
					}()
				}
				wg.Wait()
				c.isolate(slow, false)
				total += 64
				c.waitApplied(1, total, all3()...)
				if c.nodes[slow].h.Stats().Restores == before {
					fromLog++
				}
			}
			c.agree(1, all3()...)
			if hold == 0 && fromLog < 2 {
				t.Fatalf("the follower needed a snapshot in %d of 3 rounds", 3-fromLog)
			}
			if hold < 0 && fromLog > 0 {
				t.Fatalf("without a hold the follower caught up from the log in %d rounds (the test does not lag it enough)", fromLog)
			}
		})
	}
}
