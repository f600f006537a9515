package multiraft

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
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

// benchIdle measures what idle groups cost: it starts groups groups on a
// 3-node cluster at the default 100 ms tick, commits one entry in each so
// every group has a leader, lets them settle for idleSettle, then watches
// b.N seconds of idleness. It reports, summed over the three hosts, the
// Raft messages, transport frames (Raft batches and liveness beats) and
// group ticks per second, the CPU the process used per second of wall time
// (user+system, in ms; the test proxies' copying included), and the share
// of group replicas quiesced at the end. Run it with a fixed count, e.g.
// -benchtime=5x.
func benchIdle(b *testing.B, groups int, quiesce bool) { benchGroups(b, groups, quiesce, true) }

// benchGroups is benchIdle with heartbeat coalescing on or off.
func benchGroups(b *testing.B, groups int, quiesce, coalesce bool) {
	c := newTestCluster(b, 3, func(cfg *Config) {
		cfg.TickInterval = 100 * time.Millisecond
		cfg.DisableQuiescence = !quiesce
		cfg.DisableCoalescing = !coalesce
	})
	for g := uint64(1); g <= uint64(groups); g++ {
		for id := uint64(1); id <= 3; id++ {
			c.startGroup(id, g, all3())
		}
	}
	next := make(chan uint64)
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				if err := c.proposeAnywhere(g, "warm-up"); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for g := uint64(1); g <= uint64(groups); g++ {
		next <- g
	}
	close(next)
	wg.Wait()
	if b.Failed() {
		return
	}
	time.Sleep(idleSettle)

	sum := func() (s Stats) {
		for id := uint64(1); id <= 3; id++ {
			n := c.nodes[id].h.Stats()
			s.Messages += n.Messages
			s.Heartbeats += n.Heartbeats
			s.Frames += n.Frames + n.Beats
			s.Ticks += n.Ticks
			s.Quiesced += n.Quiesced
		}
		return s
	}
	b.ResetTimer()
	s0 := sum()
	cpu0 := cpuTime()
	t0 := time.Now()
	time.Sleep(time.Duration(b.N) * time.Second)
	secs := time.Since(t0).Seconds()
	cpu := (cpuTime() - cpu0).Seconds()
	s1 := sum()
	b.StopTimer()
	b.ReportMetric(float64(s1.Messages-s0.Messages)/secs, "msgs/s")
	b.ReportMetric(float64(s1.Frames-s0.Frames)/secs, "frames/s")
	b.ReportMetric(float64(s1.Heartbeats-s0.Heartbeats)/secs, "coalesced/s")
	b.ReportMetric(float64(s1.Ticks-s0.Ticks)/secs, "ticks/s")
	b.ReportMetric(1000*cpu/secs, "cpu-ms/s")
	b.ReportMetric(100*float64(s1.Quiesced)/float64(3*groups), "%quiesced")
}

// idleSettle is how long benchIdle lets the groups settle after their first
// commit before it measures.
const idleSettle = 3 * time.Second

// cpuTime returns the user+system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkIdle(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		for _, q := range []bool{false, true} {
			b.Run(fmt.Sprintf("groups=%d/quiesce=%v", n, q), func(b *testing.B) { benchIdle(b, n, q) })
		}
	}
}

// BenchmarkBusyHeartbeats: groups that never quiesce (all busy, as far as
// heartbeats go), their heartbeats coalesced per peer or sent as plain Raft
// messages. Run with a fixed count, e.g. -benchtime=5x.
func BenchmarkBusyHeartbeats(b *testing.B) {
	for _, co := range []bool{true, false} {
		b.Run(fmt.Sprintf("groups=1000/coalesce=%v", co), func(b *testing.B) { benchGroups(b, 1000, false, co) })
	}
}

// BenchmarkProposeAsync proposes b.N entries of 64 bytes to one group on a
// 3-node cluster on loopback with ProposeAsync, at most window of them
// unanswered at once (as a publisher with confirms keeps a window), and
// reports the Raft messages the leader sent per entry.
func BenchmarkProposeAsync(b *testing.B) {
	const window = 1000
	c := newTestCluster(b, 3, func(cfg *Config) { cfg.TickInterval = 50 * time.Millisecond })
	for id := uint64(1); id <= 3; id++ {
		c.startGroup(id, 1, all3())
	}
	if err := c.proposeAnywhere(1, "warm-up"); err != nil {
		b.Fatal(err)
	}
	lead := c.leader(1)
	g := c.nodes[lead].h.Group(1)
	before := c.nodes[lead].h.Stats()
	payload := make([]byte, 64)
	slots := make(chan struct{}, window)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		slots <- struct{}{}
		wg.Add(1)
		err := g.ProposeAsync(payload, func(_ any, err error) {
			if err != nil {
				b.Error(err)
			}
			<-slots
			wg.Done()
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	after := c.nodes[lead].h.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
	b.ReportMetric(float64(after.Messages-before.Messages)/float64(b.N), "msgs/entry")
	if s := after.WAL.Syncs - before.WAL.Syncs; s > 0 {
		b.ReportMetric(float64(after.WAL.Entries-before.WAL.Entries)/float64(s), "entries/fsync")
	}
}
