package server

import (
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// Message deduplication on an exchange, in the form LavinMQ and the
// community rabbitmq-message-deduplication plugin use: an exchange of any
// type declared with x-message-deduplication true remembers the ids (the
// x-deduplication-header header, or the header its x-deduplication-header
// argument names) of the messages published to it, x-cache-size of them for
// x-cache-ttl ms (a message's own x-cache-ttl header wins), and routes a
// message whose id it remembers nowhere: it is unroutable, so a mandatory
// one comes back 312 and a confirm is an ack, as the plugin's route/2
// returning no queues does. The cache of a durable exchange is kept in the
// store (one small record per id, store.KindDedup), so it survives restarts.
// The queue form is in the queue package (queue/dedup.go).
//
// Only exchanges with the argument pay anything: routing checks one nil
// pointer otherwise.

type dedupCache struct {
	header string
	size   int
	ttl    int64 // ms, 0: entries live until evicted

	st     *store.Store // nil: not kept (transient exchange, no store, or grp's)
	grp    *dedupGroup  // on a cluster: the group whose log holds the cache
	prefix string       // vhost \0 exchange \0, the records' name prefix

	mu    sync.Mutex
	ids   map[string]dedupEntry
	order []dedupSlot // insertion order, oldest first, from head
	head  int
	seq   uint64
}

type dedupEntry struct {
	exp int64 // Unix ms; 0: never
	seq uint64
}

type dedupSlot struct {
	id  string
	seq uint64
}

// dedupRecord is an id's record in the store: [expiry, sequence].
type dedupRecord [2]int64

// validateDedupArgs checks an exchange's deduplication arguments with the
// plugin's text (rabbit_message_deduplication_exchange validate/1).
func validateDedupArgs(args amqp.Table) error {
	if !queue.DedupEnabled(args) {
		return nil
	}
	if n, ok := amqp.Int(args["x-cache-size"]); !ok || n <= 0 {
		return amqp.Errorf(amqp.PreconditionFailed, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0")
	}
	if v, present := args["x-cache-ttl"]; present {
		if n, ok := amqp.Int(v); !ok || n <= 0 {
			return amqp.Errorf(amqp.PreconditionFailed, "Invalid argument, 'x-cache-ttl' must be an integer greater than 0")
		}
	}
	return nil
}

// newDedupCache returns x's cache, or nil when x does not deduplicate.
func (v *Vhost) newDedupCache(x *Exchange) *dedupCache {
	if !queue.DedupEnabled(x.Args) {
		return nil
	}
	size, _ := amqp.Int(x.Args["x-cache-size"])
	ttl, _ := amqp.Int(x.Args["x-cache-ttl"])
	c := &dedupCache{header: queue.DedupHeaderOf(x.Args), size: int(max(size, 1)), ttl: ttl, ids: map[string]dedupEntry{}}
	if x.Durable && v.store != nil {
		c.st, c.prefix = v.store, v.Name+"\x00"+x.Name+"\x00"
	}
	return c
}

// duplicate records the message's id and reports whether it was already
// there (and not expired). A message without the header is never one.
func (c *dedupCache) duplicate(p *amqp.Properties) bool {
	id, ttl, ok := c.idOf(p)
	if !ok {
		return false
	}
	return c.seen(id, time.Now().UnixMilli(), ttl)
}

// idOf returns the message's id and how long to remember it (its own
// x-cache-ttl header wins over the exchange's); ok is false without an id.
func (c *dedupCache) idOf(p *amqp.Properties) (id string, ttl int64, ok bool) {
	if p == nil {
		return "", 0, false
	}
	if id, ok = queue.DedupID(p, c.header); !ok {
		return "", 0, false
	}
	ttl = c.ttl
	if n, ok := amqp.Int(p.Headers["x-cache-ttl"]); ok && n > 0 {
		ttl = n
	}
	return id, ttl, true
}

// seen records id at time now (Unix ms) and reports whether it was already
// there and not expired by then. Deterministic: a cluster's members apply
// it alike (dedup_group.go).
func (c *dedupCache) seen(id string, now, ttl int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.ids[id]; ok && (e.exp == 0 || e.exp > now) {
		return true
	}
	var exp int64
	if ttl > 0 {
		exp = now + ttl
	}
	c.seq++
	c.putLocked(id, dedupEntry{exp: exp, seq: c.seq})
	return false
}

// putLocked adds or replaces id, evicting the oldest ids beyond the size.
// Lock must be held.
func (c *dedupCache) putLocked(id string, e dedupEntry) {
	c.ids[id] = e
	c.order = append(c.order, dedupSlot{id: id, seq: e.seq})
	if c.st != nil {
		c.st.PutDef(store.KindDedup, c.prefix+id, dedupRecord{e.exp, int64(e.seq)})
	}
	for len(c.ids) > c.size && c.head < len(c.order) {
		s := c.order[c.head]
		c.order[c.head] = dedupSlot{}
		c.head++
		if cur, ok := c.ids[s.id]; ok && cur.seq == s.seq {
			delete(c.ids, s.id)
			if c.st != nil {
				c.st.DeleteDef(store.KindDedup, c.prefix+s.id)
			}
		}
	}
	// Slots of replaced ids linger until compaction, bounded by twice the
	// cache size.
	if c.head > len(c.order)/2 && len(c.order) > 2*c.size {
		live := c.order[:0]
		for _, s := range c.order[c.head:] {
			if cur, ok := c.ids[s.id]; ok && cur.seq == s.seq {
				live = append(live, s)
			}
		}
		clear(c.order[len(live):])
		c.order, c.head = live, 0
	}
}

// drop forgets the stored ids of a deleted exchange.
func (c *dedupCache) drop() {
	if c == nil {
		return
	}
	if c.grp != nil {
		c.grp.stop()
	}
	if c.st == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.ids {
		c.st.DeleteDef(store.KindDedup, c.prefix+id)
	}
}

// restoreDedupCaches loads the stored ids into the caches of the restored
// durable exchanges, oldest first, dropping expired ones and those of
// exchanges that are gone.
func restoreDedupCaches(st *store.Store, vhosts map[string]*Vhost) error {
	type loaded struct {
		c  *dedupCache
		id string
		r  dedupRecord
	}
	var all []loaded
	now := time.Now().UnixMilli()
	err := st.Defs(store.KindDedup, func(name string, raw []byte) error {
		parts := strings.SplitN(name, "\x00", 3)
		var r dedupRecord
		if len(parts) != 3 || json.Unmarshal(raw, &r) != nil {
			st.DeleteDef(store.KindDedup, name)
			return nil
		}
		var c *dedupCache
		if v := vhosts[parts[0]]; v != nil {
			if x := v.exchanges[parts[1]]; x != nil {
				c = x.dedup
			}
		}
		if c == nil || r[0] != 0 && r[0] <= now {
			st.DeleteDef(store.KindDedup, name)
			return nil
		}
		all = append(all, loaded{c, parts[2], r})
		return nil
	})
	if err != nil {
		return err
	}
	// Oldest first, so that eviction order carries over.
	sort.Slice(all, func(i, j int) bool { return all[i].r[1] < all[j].r[1] })
	for _, l := range all {
		l.c.mu.Lock()
		l.c.seq = max(l.c.seq, uint64(l.r[1]))
		l.c.ids[l.id] = dedupEntry{exp: l.r[0], seq: uint64(l.r[1])}
		l.c.order = append(l.c.order, dedupSlot{id: l.id, seq: uint64(l.r[1])})
		l.c.mu.Unlock()
	}
	return nil
}
