package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// governHeap keeps the soft heap limit (--heap-limit) above what the heap
// really holds. Near the limit the collector works harder, which keeps a
// broker with little data small; but a broker whose live heap outgrows it
// (deep quorum queues, many connections) would collect without pause and
// starve everything else, Raft heartbeats included. Every second, when the
// live heap is above three quarters of the limit in force, the limit rises
// to twice the live heap; it comes back down (never below base) as the
// heap shrinks. The memory alarm (--vm-memory-high-watermark) still bounds
// the broker as a whole.
func governHeap(base uint64) {
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	cur := base
	for range time.Tick(time.Second) {
		metrics.Read(sample)
		if sample[0].Value.Kind() != metrics.KindUint64 {
			return
		}
		live := sample[0].Value.Uint64()
		want := cur
		switch {
		case live > cur/4*3:
			want = 2 * live
		case cur > base && 4*live < cur:
			want = max(base, 2*live)
		}
		if want != cur {
			debug.SetMemoryLimit(int64(want))
			cur = want
		}
	}
}
