package server

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
)

// A deduplicating exchange on a cluster. Messages are routed on the node
// that receives them, so a cache per node would let through a duplicate
// published to another node. Instead the exchange's cache is the state of
// a Raft group of its own (x-quorum-initial-group-size members, 3 by
// default, on the multiraft host that runs the quorum queues): the node
// that receives a message with an id proposes "seen id at time t" to the
// group's leader (here, or over the cluster connection), and every member
// applies the entries in log order to the same cache, so the verdict, a
// duplicate or not, is the same whichever node asked and survives the loss
// of a minority of the members and restarts (the log and its snapshots
// hold the cache; nothing is written to the store beside them). Times come
// from the entry, not from the applying node's clock.
//
// On the leader's node the verdict is immediate: the leader decides from
// the committed cache and the ids it decided on but not yet applied (its
// overlay), proposes the id and routes the message at once; its publisher
// confirm waits for the id's commit. The leader decides so only once the
// marker it proposes on taking over has applied (everything committed
// before is then in its cache), and forgets its overlay when it stops
// leading. Elsewhere a message waits for its verdict (a round trip to the
// leader, which answers once the id is committed) before it is routed.
// When no verdict comes within dedupWait (no leader: a majority of the
// members is down) the message is routed: nothing is lost, and it may be a
// duplicate.

// peerDedup asks a member of a deduplicating exchange's group for a
// verdict: group(8) hops(1) entry. Reply: status 0 and dup(1).
const peerDedup = 13

// dedupWait bounds the wait for a verdict.
const dedupWait = 5 * time.Second

type dedupGroup struct {
	s       *Server
	id      uint64
	members []string
	c       *dedupCache
	name    string // vhost/exchange, for the log

	g       atomic.Pointer[groupRef]
	stopped atomic.Bool

	// readyTerm is the term whose marker applied here while this node led:
	// it decides at once in that term (speculate).
	readyTerm atomic.Uint64
	mu        sync.Mutex       // orders speculative verdicts and their proposals
	overlay   map[string]int64 // ids decided here, not yet applied: expiry (0: never); guarded by mu
}

// commitWait is a speculative verdict's commit: fired once the id's entry
// applies (ok) or fails.
type commitWait struct {
	mu       sync.Mutex
	done, ok bool
	fn       func(bool)
}

func (w *commitWait) fire(ok bool) {
	w.mu.Lock()
	w.done, w.ok = true, ok
	fn := w.fn
	w.mu.Unlock()
	if fn != nil {
		fn(ok)
	}
}

// then calls fn with the outcome, now if it is known.
func (w *commitWait) then(fn func(bool)) {
	w.mu.Lock()
	if w.done {
		ok := w.ok
		w.mu.Unlock()
		fn(ok)
		return
	}
	w.fn = fn
	w.mu.Unlock()
}

// dedupGroups finds a node's groups by id (peerDedup requests).
type dedupGroups struct {
	mu   sync.Mutex
	byID map[uint64]*dedupGroup
}

func (r *dedupGroups) put(d *dedupGroup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID == nil {
		r.byID = map[uint64]*dedupGroup{}
	}
	r.byID[d.id] = d
}

func (r *dedupGroups) get(id uint64) *dedupGroup {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byID[id]
}

func (r *dedupGroups) remove(d *dedupGroup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byID[d.id] == d {
		delete(r.byID, d.id)
	}
}

// replicateDedup makes x's cache a group's (x already has a cache). Lock
// of v must be held.
func (v *Vhost) replicateDedup(s *Server, x *Exchange, id uint64, members []string) *dedupGroup {
	c := x.dedup
	c.st = nil // the group's log keeps the cache
	d := &dedupGroup{s: s, id: id, members: members, c: c, name: v.Name + "/" + x.Name}
	c.grp = d
	s.dedupGroups.put(d)
	return d
}

// replicateNewDedup gives a just declared deduplicating exchange its group
// (the declare as the cluster applied it: the proposing node chose the
// group and its members).
func (v *Vhost) replicateNewDedup(s *Server, name string, id uint64, members []string) {
	v.mu.Lock()
	x := v.exchanges[name]
	if x == nil || x.dedup == nil || x.dedup.grp != nil {
		v.mu.Unlock()
		return
	}
	d := v.replicateDedup(s, x, id, members)
	v.persistExchange(x)
	v.mu.Unlock()
	go d.start()
}

// start runs this node's member of the group, if it is one.
func (d *dedupGroup) start() {
	if d.s.groups == nil || !slices.Contains(d.members, d.s.cfg.NodeName) {
		return
	}
	g, err := d.s.startMember(d.id, d.members, false, &dedupSM{c: d.c, d: d}, d.stopped.Load)
	if err != nil {
		d.s.log.Error("starting a deduplicating exchange's group", zap.String("exchange", d.name), zap.Error(err))
		return
	}
	ref := &groupRef{g, make(chan struct{})}
	d.g.Store(ref)
	if d.stopped.Load() {
		d.stop()
		return
	}
	go d.follow(ref)
	if d.members[0] == d.s.cfg.NodeName {
		go campaignFirst(g, d.stopped.Load)
	}
}

// stop ends this node's member (the exchange was deleted).
func (d *dedupGroup) stop() {
	d.stopped.Store(true)
	d.s.dedupGroups.remove(d)
	if ref := d.g.Swap(nil); ref != nil {
		close(ref.done)
		if d.s.groups != nil {
			go d.s.groups.StopQueueGroup(d.id)
		}
	}
}

// follow tracks the group's leader: a node that takes over proposes its
// marker (an entry too short to be an id), and decides at once from when it
// applies in the same term; one that stops leading forgets its overlay.
func (d *dedupGroup) follow(ref *groupRef) {
	for {
		ch := ref.LeaderChanged()
		d.mu.Lock()
		d.readyTerm.Store(0)
		clear(d.overlay)
		d.mu.Unlock()
		if ref.Leader() == d.s.cfg.NodeName {
			term := ref.Term()
			ref.ProposeAsync([]byte{dedupMarker}, func(_ any, err error) {
				if err == nil && ref.Term() == term && ref.Leader() == d.s.cfg.NodeName {
					d.readyTerm.Store(term)
				}
			})
		}
		select {
		case <-ch:
		case <-ref.done:
			return
		}
	}
}

// dedupMarker is a new leader's marker entry.
const dedupMarker = 'M'

// speculate decides on entry here, the leader of term: a duplicate if the
// committed cache or the overlay holds its id, else the id is proposed and
// w fires when it applies.
func (d *dedupGroup) speculate(ref *groupRef, term uint64, entry []byte) (dup bool, w *commitWait, err error) {
	at := int64(binary.BigEndian.Uint64(entry))
	id := string(entry[16:])
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.readyTerm.Load() != term {
		return false, nil, errNoVerdict
	}
	if exp, ok := d.overlay[id]; ok && (exp == 0 || exp > at) {
		return true, nil, nil
	}
	d.c.mu.Lock()
	e, ok := d.c.ids[id]
	d.c.mu.Unlock()
	if ok && (e.exp == 0 || e.exp > at) {
		return true, nil, nil
	}
	w = &commitWait{}
	if err := ref.ProposeAsync(entry, func(_ any, err error) { w.fire(err == nil) }); err != nil {
		return false, nil, err
	}
	d.overlayLocked(entry)
	return false, w, nil
}

// overlayLocked adds entry's id to the overlay. d.mu must be held.
func (d *dedupGroup) overlayLocked(entry []byte) {
	at := int64(binary.BigEndian.Uint64(entry))
	ttl := int64(binary.BigEndian.Uint64(entry[8:]))
	var exp int64
	if ttl > 0 {
		exp = at + ttl
	}
	if d.overlay == nil {
		d.overlay = map[string]int64{}
	}
	d.overlay[string(entry[16:])] = exp
}

// applied forgets an id of the overlay once its entry applied.
func (d *dedupGroup) applied(id []byte) {
	d.mu.Lock()
	if len(d.overlay) > 0 {
		delete(d.overlay, string(id))
	}
	d.mu.Unlock()
}

// dedupEntry is the group's log entry: at(8) ttl(8) id.
func dedupEntryOf(id string, at, ttl int64) []byte {
	b := make([]byte, 16, 16+len(id))
	binary.BigEndian.PutUint64(b, uint64(at))
	binary.BigEndian.PutUint64(b[8:], uint64(ttl))
	return append(b, id...)
}

// verdict reports whether the message with id is a duplicate; ok is false
// when the group gave no verdict within dedupWait. w, when set, is the
// commit of the id this node decided on as its leader: a publisher
// confirm waits for it.
func (d *dedupGroup) verdict(id string, ttl int64) (dup bool, w *commitWait, ok bool) {
	entry := dedupEntryOf(id, time.Now().UnixMilli(), ttl)
	deadline := time.Now().Add(dedupWait)
	for !d.stopped.Load() && time.Now().Before(deadline) {
		if ref := d.g.Load(); ref != nil && ref.Leader() == d.s.cfg.NodeName {
			if term := ref.Term(); d.readyTerm.Load() == term {
				if dup, w, err := d.speculate(ref, term, entry); err == nil {
					return dup, w, true
				}
			}
		}
		dup, err := d.decide(entry, 1)
		if err == nil {
			return dup, nil, true
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.s.log.Warn("no deduplication verdict: the message is routed", zap.String("exchange", d.name))
	return false, nil, false
}

// errNoVerdict: this attempt found no leader to ask.
var errNoVerdict = errors.New("deduplication: no leader")

// decide gets the verdict on entry: proposed here when this node leads,
// else asked of the leader (or of a member, from a node that is none);
// hops bounds how far a request is passed on.
func (d *dedupGroup) decide(entry []byte, hops int) (bool, error) {
	target := ""
	if ref := d.g.Load(); ref != nil {
		lead := ref.Leader()
		if lead == d.s.cfg.NodeName {
			if term := ref.Term(); d.readyTerm.Load() == term {
				// Another node asks: decided here, answered once committed.
				dup, w, err := d.speculate(ref, term, entry)
				if err != nil || w == nil {
					return dup, err
				}
				res := make(chan bool, 1)
				w.then(func(ok bool) { res <- ok })
				select {
				case ok := <-res:
					if !ok {
						return false, errNoVerdict
					}
					return false, nil
				case <-time.After(dedupWait):
					return false, errNoVerdict
				}
			}
			// Not ready to decide yet: the log does. The id joins the
			// overlay all the same, for the verdicts after the marker (this
			// entry may come after it in the log).
			res := make(chan multiraft.Result, 1)
			d.mu.Lock()
			err := ref.ProposeAsync(entry, func(v any, err error) { res <- multiraft.Result{Value: v, Err: err} })
			if err == nil {
				d.overlayLocked(entry)
			}
			d.mu.Unlock()
			if err != nil {
				return false, err
			}
			select {
			case r := <-res:
				dup, _ := r.Value.(bool)
				return dup, r.Err
			case <-time.After(dedupWait):
				return false, errNoVerdict
			}
		}
		target = lead
	} else {
		for _, m := range d.members {
			if m != d.s.cfg.NodeName && d.s.reachable(m) {
				target = m
				break
			}
		}
	}
	if target == "" || hops <= 0 {
		return false, errNoVerdict
	}
	req := binary.BigEndian.AppendUint64([]byte{peerDedup}, d.id)
	req = append(req, byte(hops-1))
	out, err := d.s.callPeer(target, append(req, entry...))
	switch {
	case err != nil:
		return false, err
	case len(out) == 2 && out[0] == 0:
		return out[1] == 1, nil
	case len(out) > 0 && out[0] == 1:
		return false, decodeReplyErr(out)
	}
	return false, errNoVerdict
}

// handleDedup serves another node's peerDedup request.
func (s *Server) handleDedup(r *peerReader) []byte {
	id := r.u64()
	hops := r.bytes(1)
	if r.err != nil {
		return replyErr(amqp.Errorf(amqp.FrameError, "malformed deduplication request"))
	}
	d := s.dedupGroups.get(id)
	if d == nil {
		return replyErr(amqp.Errorf(amqp.NotFound, "no deduplication group %d here", id))
	}
	dup, err := d.decide(r.b, int(hops[0]))
	if err != nil {
		return replyErr(err)
	}
	if dup {
		return []byte{0, 1}
	}
	return []byte{0, 0}
}

// dedupSM applies the group's log to the exchange's cache.
type dedupSM struct {
	c *dedupCache
	d *dedupGroup // for its overlay; nil in tests
}

// Apply implements multiraft.StateMachine: each entry's result is whether
// its id was a duplicate.
func (sm *dedupSM) Apply(entries []multiraft.Entry) []multiraft.Result {
	out := make([]multiraft.Result, len(entries))
	for i, e := range entries {
		if len(e.Data) < 16 {
			continue
		}
		at := int64(binary.BigEndian.Uint64(e.Data))
		ttl := int64(binary.BigEndian.Uint64(e.Data[8:]))
		out[i].Value = sm.c.seen(string(e.Data[16:]), at, ttl)
		if sm.d != nil {
			sm.d.applied(e.Data[16:])
		}
	}
	return out
}

// Snapshot implements multiraft.StateMachine: the live ids, oldest first,
// each as len(4) id exp(8) seq(8).
func (sm *dedupSM) Snapshot() ([]byte, error) {
	c := sm.c
	c.mu.Lock()
	defer c.mu.Unlock()
	b := binary.BigEndian.AppendUint64(nil, c.seq)
	for _, s := range c.order[c.head:] {
		if e, ok := c.ids[s.id]; ok && e.seq == s.seq {
			b = binary.BigEndian.AppendUint32(b, uint32(len(s.id)))
			b = append(b, s.id...)
			b = binary.BigEndian.AppendUint64(b, uint64(e.exp))
			b = binary.BigEndian.AppendUint64(b, e.seq)
		}
	}
	return b, nil
}

// Restore implements multiraft.StateMachine.
func (sm *dedupSM) Restore(data []byte) error {
	c := sm.c
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ids)
	c.order, c.head, c.seq = c.order[:0], 0, 0
	if len(data) < 8 {
		return nil
	}
	c.seq = binary.BigEndian.Uint64(data)
	data = data[8:]
	for len(data) >= 4 {
		n := int(binary.BigEndian.Uint32(data))
		if len(data) < 4+n+16 {
			return errors.New("deduplication snapshot: truncated")
		}
		id := string(data[4 : 4+n])
		e := dedupEntry{exp: int64(binary.BigEndian.Uint64(data[4+n:])), seq: binary.BigEndian.Uint64(data[12+n:])}
		c.ids[id] = e
		c.order = append(c.order, dedupSlot{id: id, seq: e.seq})
		data = data[20+n:]
	}
	return nil
}
