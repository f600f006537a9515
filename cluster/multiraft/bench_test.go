package multiraft

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchPropose runs b.N proposals of 64 bytes spread over groups, with
// clients concurrent proposers per group, against a 3-node cluster on
// loopback, each proposer following NotLeader hints.
func benchPropose(b *testing.B, groups, clients int) {
	c := newTestCluster(b, 3, func(cfg *Config) { cfg.TickInterval = 50 * time.Millisecond })
	for g := uint64(1); g <= uint64(groups); g++ {
		for id := uint64(1); id <= 3; id++ {
			c.startGroup(id, g, all3())
		}
	}
	for g := uint64(1); g <= uint64(groups); g++ {
		if err := c.proposeAnywhere(g, "warm-up"); err != nil {
			b.Fatal(err)
		}
	}
	before := make([]Stats, 4)
	for id := uint64(1); id <= 3; id++ {
		before[id] = c.nodes[id].h.Stats()
	}
	payload := make([]byte, 64)
	var left atomic.Int64
	left.Store(int64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := uint64(1); g <= uint64(groups); g++ {
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lead := c.leader(g)
				grp := c.nodes[lead].h.Group(g)
				for left.Add(-1) >= 0 {
					if _, err := grp.Propose(context.Background(), payload); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	var syncs, entries uint64
	for id := uint64(1); id <= 3; id++ {
		s := c.nodes[id].h.Stats()
		syncs += s.WAL.Syncs - before[id].WAL.Syncs
		entries += s.WAL.Entries - before[id].WAL.Entries
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
	if syncs > 0 {
		b.ReportMetric(float64(entries)/float64(syncs), "entries/fsync")
	}
}

func BenchmarkPropose1Group(b *testing.B)    { benchPropose(b, 1, 64) }
func BenchmarkPropose100Groups(b *testing.B) { benchPropose(b, 100, 2) }
