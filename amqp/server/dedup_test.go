package server

import (
	"strconv"
	"testing"

	"github.com/warren-mq/warren/amqp"
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
