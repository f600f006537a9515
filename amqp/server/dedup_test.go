package server

import (
	"strconv"
	"testing"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
)

func TestDedupCacheEvictsOldestAndExpires(t *testing.T) {
	c := &dedupCache{header: "h", size: 2, ids: map[string]dedupEntry{}}
	p := func(id string) *amqp.Properties { return &amqp.Properties{Headers: amqp.Table{"h": id}} }
	for _, s := range []struct {
		id  string
		dup bool
	}{{"a", false}, {"a", true}, {"b", false}, {"c", false}, {"a", false}, {"c", true}, {"b", false}} {
		if got := c.duplicate(p(s.id)); got != s.dup {
			t.Fatalf("%s: duplicate %v, want %v", s.id, got, s.dup)
		}
	}
	if c.duplicate(&amqp.Properties{}) || c.duplicate(nil) {
		t.Fatal("a message without an id is never a duplicate")
	}
	if len(c.order)-c.head > 4*c.size {
		t.Fatalf("order grew to %d", len(c.order)-c.head)
	}
}

// BenchmarkDedupCache is the per-message cost a deduplicating exchange adds
// (distinct ids, a full cache evicting one per message).
func BenchmarkDedupCache(b *testing.B) {
	c := &dedupCache{header: "x-deduplication-header", size: 100000, ids: map[string]dedupEntry{}}
	ps := make([]amqp.Properties, 1<<20)
	for i := range ps {
		ps[i] = amqp.Properties{Headers: amqp.Table{"x-deduplication-header": strconv.Itoa(i)}}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c.duplicate(&ps[i&(1<<20-1)])
		i++
	}
}

// TestDedupStateMachine: a cluster's deduplicating exchange applies its
// log alike on every member (times from the entries, not the clock), and a
// member restored from a snapshot gives the same verdicts.
func TestDedupStateMachine(t *testing.T) {
	newSM := func() *dedupSM { return &dedupSM{c: &dedupCache{size: 2, ids: map[string]dedupEntry{}}} }
	entry := func(id string, at, ttl int64) multiraft.Entry {
		return multiraft.Entry{Data: dedupEntryOf(id, at, ttl)}
	}
	log := []multiraft.Entry{
		entry("a", 1000, 0), entry("a", 1001, 0), // a duplicate
		entry("t", 1002, 10), entry("t", 1011, 0), // within its ttl
		entry("t", 1013, 10), // t expired at 1012: new again
		entry("a", 1014, 0),
	}
	want := []bool{false, true, false, true, false, true}
	a, b := newSM(), newSM()
	for _, sm := range []*dedupSM{a, b} {
		for i, r := range sm.Apply(log) {
			if r.Value != want[i] {
				t.Fatalf("entry %d: %v, want %v", i, r.Value, want[i])
			}
		}
	}
	snap, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	c := newSM()
	if err := c.Restore(snap); err != nil {
		t.Fatal(err)
	}
	// x evicts the oldest id, a.
	next := []multiraft.Entry{entry("t", 1015, 0), entry("a", 1016, 0), entry("x", 1017, 0), entry("a", 1018, 0)}
	for _, sm := range []*dedupSM{b, c} {
		got := sm.Apply(next)
		if got[0].Value != true || got[1].Value != true || got[2].Value != false || got[3].Value != false {
			t.Fatalf("after the snapshot: %+v", got)
		}
	}
	if err := c.Restore(snap[:len(snap)-3]); err == nil {
		t.Fatal("a truncated snapshot is refused")
	}
}
