package multiraft

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"
)

// Two configuration changes asked at once of a leader both happen: raft
// drops one proposed while another is still unapplied (it becomes an
// empty entry), so the host proposes the second only once the first is
// applied, instead of leaving its caller waiting for an entry that never
// comes.
func TestConcurrentConfChanges(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	lead := c.leader(1)
	g := c.nodes[lead].h.Group(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 0, 2)
	var mu sync.Mutex
	for id := uint64(1); id <= 3; id++ {
		if id == lead {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := g.RemoveNode(ctx, id)
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("removing a member: %v", err)
		}
	}
	if voters := g.Status().Config.Voters[0].Slice(); !slices.Equal(voters, []uint64{lead}) {
		t.Fatalf("voters %v, want only %d", voters, lead)
	}
	if err := c.propose(lead, 1, "alone"); err != nil {
		t.Fatal(err)
	}
}
