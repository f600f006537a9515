package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/bits"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// qsm is a replicated queue's messages as the log has them, on every
// member: what a new leader rebuilds the queue from.
//
// Memory stays bounded however deep the queue: with the node's store (a
// broker always has one), each message is written there under the group's
// id when its enqueue entry applies and deleted when it is settled; what
// stays in memory is the unsettled ids with their body sizes (idSet, about
// four bytes a message), the return counts and three counters. The writes
// ask for no sync: the log is the durable record. A snapshot is only a
// checkpoint (multiraft.Checkpointer): it flushes the store and records
// the counters, so the log behind it can go (every checkpointEvery
// entries: the in-memory log stays short). At a restart the ids come back
// from a scan of the store (load), the counters from the checkpoint, and
// the entries after the checkpoint apply again over a store that may hold
// some of them already: every operation comes to the same state applied
// twice (an enqueue takes the id its position in the log gives it and
// writes the same record; settling a settled id does nothing). A follower
// that needs a snapshot gets the whole state from SnapshotData, read from
// the store when it is sent. The leader's queue keeps only its head in
// memory, within the node's memory budget, and pages the rest in from the
// store (replica.Load).
//
// Without a store (unit tests) the messages stay in memory and snapshots
// carry them.
type qsm struct {
	r  *replica
	st *store.Store // nil: messages in mem

	// mu guards the fields below (the ready loop writes; the leader's
	// queue, snapshots and listings read). The store is never called with
	// it held.
	mu        sync.Mutex
	ids       idSet
	returns   map[uint64]uint32 // return counts above 0, by id
	mem       map[uint64][]byte // without a store: id → record (see smRecord)
	next      uint64
	delivered uint64
	// leaders counts the leader markers applied: after the first, a
	// leader inherits messages its predecessor may have delivered.
	leaders uint64
	loaded  bool // ids and returns read from the store
}

// A message's record, as the store keeps it and the enqueue entry carries
// it after its op byte: at(8) ttl(8) exchange key (shortstr each)
// hdrLen(4) header body.
func decodeRecord(v []byte) (at, ttl int64, msg *queue.Message, err error) {
	rd := &peerReader{b: v}
	at, ttl = int64(rd.u64()), int64(rd.u64())
	exch, key := rd.shortstr(), rd.shortstr()
	header := rd.bytes(rd.u32())
	if rd.err != nil {
		return 0, 0, nil, rd.err
	}
	return at, ttl, queue.NewMessage(exch, key, header, rd.b), nil
}

// Apply implements multiraft.StateMachine.
func (sm *qsm) Apply(entries []multiraft.Entry) []multiraft.Result {
	out := make([]multiraft.Result, len(entries))
	for i, e := range entries {
		if len(e.Data) == 0 {
			continue
		}
		switch e.Data[0] {
		case opEnqueue:
			out[i].Value = sm.enqueue(e.Data[1:])
		case opBatch:
			sm.batch(e.Data[1:])
		case opLead:
			sm.mu.Lock()
			sm.leaders++
			sm.mu.Unlock()
			// Only this term's marker of this node, while it leads: an old
			// one replayed at a restart, or applied late, is history.
			rd := &peerReader{b: e.Data[1:]}
			if node := rd.shortstr(); rd.err == nil && node == sm.r.s.cfg.NodeName && !sm.r.stopped.Load() {
				if g := sm.r.g.Load(); g != nil && g.Term() == e.Term && g.Leader() == node {
					sm.r.becomeLeader()
				}
			}
		}
	}
	return out
}

func (sm *qsm) enqueue(b []byte) queue.PublishResult {
	_, ttl, msg, err := decodeRecord(b)
	if err != nil {
		return queue.Rejected
	}
	// The entry's bytes are ours (multiraft: Data may be kept): the store
	// and the message share them.
	sm.mu.Lock()
	sm.next++
	id := sm.next
	sm.ids.add(id, len(msg.Body))
	if sm.st == nil {
		if sm.mem == nil {
			sm.mem = map[uint64][]byte{}
		}
		sm.mem[id] = b
	}
	sm.mu.Unlock()
	if sm.st != nil {
		sm.st.PutGroupMessage(sm.r.id, id, b)
	}
	r := sm.r
	if !r.leading.Load() {
		return queue.Enqueued
	}
	res := r.q.Queue.PublishSeq(msg, ttl, id)
	if res != queue.Enqueued {
		r.addOp('S', id, 0) // refused (reject-publish, duplicate): settled at once
	}
	return res
}

// smWrite is a change to the store that a batch makes: a settled message
// (returns: whether it had a return count) or a return count.
type smWrite struct {
	id      uint64
	n       uint32
	settled bool
}

func (sm *qsm) batch(b []byte) {
	var ws []smWrite
	sm.mu.Lock()
	settle := func(id uint64) {
		if _, ok := sm.ids.remove(id); !ok {
			return
		}
		_, had := sm.returns[id]
		delete(sm.returns, id)
		delete(sm.mem, id)
		ws = append(ws, smWrite{id: id, settled: true, n: b2u(had)})
	}
	for len(b) >= 9 {
		op, id := b[0], binary.BigEndian.Uint64(b[1:9])
		b = b[9:]
		switch op {
		case 'S':
			settle(id)
		case 'D':
			sm.delivered = max(sm.delivered, id)
		case 'R':
			if len(b) < 4 {
				b = nil
				break
			}
			n := binary.BigEndian.Uint32(b)
			b = b[4:]
			if !sm.ids.has(id) {
				break
			}
			if n == 0 {
				delete(sm.returns, id)
			} else {
				if sm.returns == nil {
					sm.returns = map[uint64]uint32{}
				}
				sm.returns[id] = n
			}
			ws = append(ws, smWrite{id: id, n: n})
		case 'F':
			var drop []uint64
			sm.ids.ascend(id, func(k uint64, _ int64) bool {
				drop = append(drop, k)
				return true
			})
			for _, k := range drop {
				settle(k)
			}
		}
	}
	sm.mu.Unlock()
	if sm.st == nil {
		return
	}
	for _, w := range ws {
		if w.settled {
			sm.st.DeleteGroupMessage(sm.r.id, w.id, w.n != 0)
		} else {
			sm.st.SetGroupReturns(sm.r.id, w.id, w.n)
		}
	}
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// load reads the ids and return counts of the group's messages from the
// store, once, before the group starts (a restart: its checkpoint then
// gives the counters).
func (sm *qsm) load() error {
	sm.mu.Lock()
	done := sm.loaded || sm.st == nil
	sm.loaded = true
	sm.mu.Unlock()
	if done {
		return nil
	}
	var ids idSet
	returns, err := sm.st.ScanGroup(sm.r.id, func(id uint64, n int64) { ids.add(id, int(n)) })
	if err != nil {
		return err
	}
	sm.mu.Lock()
	sm.ids, sm.returns = ids, returns
	sm.mu.Unlock()
	return nil
}

// drop forgets the group's messages (its member here stopped for good).
func (sm *qsm) drop() {
	sm.mu.Lock()
	sm.ids, sm.returns, sm.mem = idSet{}, nil, nil
	sm.mu.Unlock()
	if sm.st != nil {
		if err := sm.st.DropGroup(sm.r.id); err != nil {
			sm.r.log.Warn("dropping the queue's messages", zap.Error(err))
		}
	}
}

// queueTTL is the queue's x-message-ttl in ms, -1 for none.
func (sm *qsm) queueTTL() int64 {
	if n, ok := amqp.Int(sm.r.q.Args["x-message-ttl"]); ok {
		return n
	}
	return -1
}

// entryOf makes a queue entry of a stored message: delivered at or below
// watermark, or returned, it comes back redelivered.
func entryOf(gm store.GroupMessage, watermark uint64, qttl, now int64) queue.Entry {
	en := queue.Entry{Msg: gm.Msg, Seq: gm.ID, Returns: gm.Returns, Journaled: true,
		Redelivered: gm.ID <= watermark || gm.Returns > 0}
	ttl := gm.TTL
	if qttl >= 0 && (ttl < 0 || qttl < ttl) {
		ttl = qttl
	}
	if ttl >= 0 {
		en.ExpiresAt = max(gm.At+ttl*int64(time.Millisecond), now)
	}
	return en
}

// read returns up to max of the messages from id from on (and, past the
// first, up to maxBytes as queue.Cost counts them), in order.
func (sm *qsm) read(from uint64, max int, maxBytes int64) ([]store.GroupMessage, error) {
	if sm.st != nil {
		return sm.st.LoadGroupMessages(sm.r.id, from, max, maxBytes)
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	var out []store.GroupMessage
	var bytes int64
	var err error
	sm.ids.ascend(from, func(id uint64, _ int64) bool {
		if len(out) >= max || len(out) > 0 && bytes >= maxBytes {
			return false
		}
		at, ttl, msg, derr := decodeRecord(sm.mem[id])
		if derr != nil {
			err = fmt.Errorf("message %d: %w", id, derr)
			return false
		}
		out = append(out, store.GroupMessage{ID: id, At: at, TTL: ttl, Returns: sm.returns[id], Msg: msg})
		bytes += queue.Cost(&queue.Entry{Msg: msg})
		return true
	})
	return out, err
}

// watermarkLocked is what a leader taking over now counts as delivered:
// after a change of leader every inherited message (a former leader may
// have delivered past the mark it last logged). Lock must be held.
func (sm *qsm) watermarkLocked() uint64 {
	if sm.leaders > 1 {
		return sm.next
	}
	return sm.delivered
}

// head is what a new leader's queue starts with: the first messages, up to
// window of them and maxBytes, in memory; the rest as the queue's paged-out
// part, which it reads (replica.Load) as its consumers reach it.
func (sm *qsm) head(window int, maxBytes int64) ([]queue.Entry, queue.DiskPart, uint64, error) {
	gms, err := sm.read(0, window, maxBytes)
	if err != nil {
		return nil, queue.DiskPart{}, 0, err
	}
	sm.mu.Lock()
	watermark := sm.watermarkLocked()
	n, bytes, last := sm.ids.n, sm.ids.bytes, sm.ids.last()
	sm.mu.Unlock()
	now, qttl := time.Now().UnixNano(), sm.queueTTL()
	es := make([]queue.Entry, len(gms))
	for i, gm := range gms {
		es[i] = entryOf(gm, watermark, qttl, now)
		bytes -= int64(len(gm.Msg.Body))
	}
	var disk queue.DiskPart
	if rest := n - len(es); rest > 0 {
		disk = queue.DiskPart{N: rest, Bytes: max(bytes, 0), From: 1, Last: last}
		if len(es) > 0 {
			disk.From = es[len(es)-1].Seq + 1
		}
	}
	return es, disk, watermark, nil
}

// entries are all the unsettled messages in order (tests).
func (sm *qsm) entries() []queue.Entry {
	es, disk, _, err := sm.head(1<<30, 1<<62)
	if err != nil || disk.N > 0 {
		return nil
	}
	return es
}

// checkpointEvery is how many log entries a group with a store applies
// between checkpoints: the log since the last one is all a member keeps
// in memory (and replays at a restart).
const checkpointEvery = 4096

// SnapshotDue implements multiraft.SnapshotPolicy. With a store a snapshot
// is a cheap checkpoint, taken every checkpointEvery entries. Without one
// it holds the unsettled messages, so one is taken once the log since the
// last holds twice as many entries as that (and at least snapshotMin).
func (sm *qsm) SnapshotDue(since uint64) bool {
	if sm.st != nil {
		return since >= checkpointEvery
	}
	return since >= snapshotMin && since >= 2*uint64(sm.count())
}

// snapshotMin is the fewest log entries between a queue's snapshots
// without a store.
const snapshotMin = 8192

// Snapshot formats: a checkpoint, or the whole state (what a follower is
// sent). A snapshot of an earlier version starts with next, a zero byte
// in any real queue.
const (
	snapCheckpoint = 'C' // next(8) delivered(8) leaders(8)
	snapFull       = 'V' // next(8) delivered(8) leaders(8), then per message id(8) returns(4) len(4) record
)

// Snapshot implements multiraft.Checkpointer: with a store, a checkpoint.
func (sm *qsm) Snapshot() ([]byte, error) {
	if sm.st == nil {
		return sm.SnapshotData()
	}
	sm.st.Flush()
	if err := sm.st.Err(); err != nil {
		return nil, err
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.appendCountersLocked([]byte{snapCheckpoint}), nil
}

func (sm *qsm) appendCountersLocked(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, sm.next)
	b = binary.BigEndian.AppendUint64(b, sm.delivered)
	return binary.BigEndian.AppendUint64(b, sm.leaders)
}

// SnapshotData implements multiraft.Checkpointer: the whole state.
func (sm *qsm) SnapshotData() ([]byte, error) {
	appendOne := func(b []byte, id uint64, n uint32, rec []byte) []byte {
		b = binary.BigEndian.AppendUint64(b, id)
		b = binary.BigEndian.AppendUint32(b, n)
		b = binary.BigEndian.AppendUint32(b, uint32(len(rec)))
		return append(b, rec...)
	}
	sm.mu.Lock()
	b := make([]byte, 0, 25+sm.ids.n*32+int(sm.ids.bytes))
	b = sm.appendCountersLocked(append(b, snapFull))
	if sm.st == nil {
		sm.ids.ascend(0, func(id uint64, _ int64) bool {
			b = appendOne(b, id, sm.returns[id], sm.mem[id])
			return true
		})
		sm.mu.Unlock()
		return b, nil
	}
	returns := maps.Clone(sm.returns)
	sm.mu.Unlock()
	err := sm.st.GroupValues(sm.r.id, func(id uint64, v []byte) error {
		b = appendOne(b, id, returns[id], v)
		return nil
	})
	return b, err
}

var errSnapshot = errors.New("bad queue snapshot")

// OpenSnapshot implements multiraft.SnapshotStreamer: the whole state
// (SnapshotData's form) as a stream, for a follower's node that takes
// chunked snapshots. The host calls it on its ready loop between two
// cycles' applies: every store write of the entries applied so far was
// queued before it (the store writes them out before the read opens), and
// none of a later entry was, so the store read and the counters taken
// here are both exactly the state as of the last applied entry. The read
// then streams from a Badger read transaction while entries go on
// applying.
func (sm *qsm) OpenSnapshot() (multiraft.SnapshotSource, error) {
	if sm.st == nil {
		b, err := sm.SnapshotData()
		if err != nil {
			return nil, err
		}
		return &qsmSource{head: b}, nil
	}
	gs, err := sm.st.OpenGroupSnapshot(sm.r.id)
	if err != nil {
		return nil, err
	}
	sm.mu.Lock()
	head := sm.appendCountersLocked([]byte{snapFull})
	sm.mu.Unlock()
	return &qsmSource{head: head, gs: gs}, nil
}

// qsmSource is a queue's state pinned by OpenSnapshot.
type qsmSource struct {
	head []byte               // snapFull and the counters (without a store: everything)
	gs   *store.GroupSnapshot // nil without a store
}

func (s *qsmSource) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(s.head)
	total := int64(n)
	if err != nil || s.gs == nil {
		return total, err
	}
	var hdr [16]byte
	err = s.gs.Each(func(id uint64, returns uint32, v []byte) error {
		binary.BigEndian.PutUint64(hdr[:], id)
		binary.BigEndian.PutUint32(hdr[8:], returns)
		binary.BigEndian.PutUint32(hdr[12:], uint32(len(v)))
		n, err := w.Write(hdr[:])
		total += int64(n)
		if err != nil {
			return err
		}
		n, err = w.Write(v)
		total += int64(n)
		return err
	})
	return total, err
}

func (s *qsmSource) Close() error {
	if s.gs != nil {
		s.gs.Close()
	}
	return nil
}

// maxSnapshotRecord bounds one message's record in a streamed snapshot.
const maxSnapshotRecord = 1 << 30

// RestoreFrom implements multiraft.SnapshotStreamer: the whole state as
// OpenSnapshot wrote it, read a message at a time into the store (which
// bounds what it holds unwritten), replacing what it held.
func (sm *qsm) RestoreFrom(r io.Reader) error {
	if sm.st == nil {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		return sm.Restore(b)
	}
	var head [25]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return fmt.Errorf("%w: %w", errSnapshot, err)
	}
	if head[0] != snapFull {
		return fmt.Errorf("%w: format %d", errSnapshot, head[0])
	}
	rd := &peerReader{b: head[1:]}
	next, delivered, leaders := rd.u64(), rd.u64(), rd.u64()
	if err := sm.st.DropGroup(sm.r.id); err != nil {
		return err
	}
	var ids idSet
	var returns map[uint64]uint32
	var hdr [16]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("%w: %w", errSnapshot, err)
		}
		id, n, size := binary.BigEndian.Uint64(hdr[:]), binary.BigEndian.Uint32(hdr[8:]), binary.BigEndian.Uint32(hdr[12:])
		if size > maxSnapshotRecord {
			return fmt.Errorf("%w: message %d of %d bytes", errSnapshot, id, size)
		}
		rec := make([]byte, size)
		if _, err := io.ReadFull(r, rec); err != nil {
			return fmt.Errorf("%w: message %d: %w", errSnapshot, id, err)
		}
		_, _, msg, err := decodeRecord(rec)
		if err != nil {
			return fmt.Errorf("%w: message %d: %w", errSnapshot, id, err)
		}
		ids.add(id, len(msg.Body))
		sm.st.PutGroupMessage(sm.r.id, id, rec)
		if n > 0 {
			if returns == nil {
				returns = map[uint64]uint32{}
			}
			returns[id] = n
			sm.st.SetGroupReturns(sm.r.id, id, n)
		}
	}
	sm.mu.Lock()
	sm.next, sm.delivered, sm.leaders = next, delivered, leaders
	sm.ids, sm.returns, sm.mem, sm.loaded = ids, returns, nil, true
	sm.mu.Unlock()
	return nil
}

// Restore implements multiraft.StateMachine: a checkpoint at a restart
// (the store has the messages), or the whole state (from the leader, or
// of an earlier version), which replaces what the store holds.
func (sm *qsm) Restore(data []byte) error {
	if len(data) == 0 {
		return errSnapshot
	}
	rd := &peerReader{b: data[1:]}
	switch data[0] {
	case snapCheckpoint:
		next, delivered, leaders := rd.u64(), rd.u64(), rd.u64()
		if rd.err != nil || len(rd.b) != 0 {
			return errSnapshot
		}
		if err := sm.load(); err != nil {
			return err
		}
		sm.mu.Lock()
		sm.next, sm.delivered, sm.leaders = next, delivered, leaders
		sm.mu.Unlock()
		return nil
	case snapFull:
	default:
		rd.b = data // an earlier version's: the counters, then messages in its own form
	}
	next, delivered, leaders := rd.u64(), rd.u64(), rd.u64()
	type one struct {
		id  uint64
		n   uint32
		rec []byte
	}
	var all []one
	for rd.err == nil && len(rd.b) > 0 {
		var o one
		if data[0] == snapFull {
			o.id, o.n = rd.u64(), rd.u32()
			o.rec = rd.bytes(rd.u32())
		} else {
			id, at, ttl, n := rd.u64(), rd.u64(), rd.u64(), rd.u32()
			exch, key := rd.shortstr(), rd.shortstr()
			header := rd.bytes(rd.u32())
			body := rd.bytes(rd.u32())
			rec := binary.BigEndian.AppendUint64(nil, at)
			rec = binary.BigEndian.AppendUint64(rec, ttl)
			rec = appendShortstr(appendShortstr(rec, exch), key)
			rec = binary.BigEndian.AppendUint32(rec, uint32(len(header)))
			o = one{id: id, n: n, rec: append(append(rec, header...), body...)}
		}
		if rd.err != nil {
			break
		}
		if _, _, _, err := decodeRecord(o.rec); err != nil {
			return fmt.Errorf("%w: message %d: %w", errSnapshot, o.id, err)
		}
		all = append(all, o)
	}
	if rd.err != nil {
		return fmt.Errorf("%w: %w", errSnapshot, rd.err)
	}
	if sm.st != nil {
		if err := sm.st.DropGroup(sm.r.id); err != nil {
			return err
		}
	}
	var ids idSet
	var returns map[uint64]uint32
	var mem map[uint64][]byte
	if sm.st == nil {
		mem = make(map[uint64][]byte, len(all))
	}
	for _, o := range all {
		_, _, msg, _ := decodeRecord(o.rec)
		ids.add(o.id, len(msg.Body))
		if o.n > 0 {
			if returns == nil {
				returns = map[uint64]uint32{}
			}
			returns[o.id] = o.n
		}
		if sm.st == nil {
			mem[o.id] = o.rec
			continue
		}
		sm.st.PutGroupMessage(sm.r.id, o.id, o.rec)
		if o.n > 0 {
			sm.st.SetGroupReturns(sm.r.id, o.id, o.n)
		}
	}
	sm.mu.Lock()
	sm.next, sm.delivered, sm.leaders = next, delivered, leaders
	sm.ids, sm.returns, sm.mem, sm.loaded = ids, returns, mem, true
	sm.mu.Unlock()
	return nil
}

// count is how many messages the log holds unsettled.
func (sm *qsm) count() int {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.ids.n
}

// idSet is a group's unsettled message ids with their body sizes. Ids are
// dense (one per enqueue, settled mostly in order), so they are kept in
// chunks of idChunkSize: a bitmap and the sizes, a bit and four bytes a
// message.
type idSet struct {
	chunks map[uint64]*idChunk
	n      int
	bytes  int64
}

const idChunkSize = 1024

type idChunk struct {
	bits  [idChunkSize / 64]uint64
	sizes [idChunkSize]uint32
	n     int
}

func (s *idSet) has(id uint64) bool {
	c := s.chunks[id/idChunkSize]
	i := id % idChunkSize
	return c != nil && c.bits[i/64]&(1<<(i%64)) != 0
}

// add adds id (or updates its size).
func (s *idSet) add(id uint64, size int) {
	if s.chunks == nil {
		s.chunks = map[uint64]*idChunk{}
	}
	c := s.chunks[id/idChunkSize]
	if c == nil {
		c = &idChunk{}
		s.chunks[id/idChunkSize] = c
	}
	i := id % idChunkSize
	size = min(size, 1<<32-1)
	if c.bits[i/64]&(1<<(i%64)) != 0 {
		s.bytes -= int64(c.sizes[i])
	} else {
		c.bits[i/64] |= 1 << (i % 64)
		c.n++
		s.n++
	}
	c.sizes[i] = uint32(size)
	s.bytes += int64(size)
}

// remove removes id and returns its size.
func (s *idSet) remove(id uint64) (int64, bool) {
	c := s.chunks[id/idChunkSize]
	i := id % idChunkSize
	if c == nil || c.bits[i/64]&(1<<(i%64)) == 0 {
		return 0, false
	}
	c.bits[i/64] &^= 1 << (i % 64)
	size := int64(c.sizes[i])
	c.n--
	s.n--
	s.bytes -= size
	if c.n == 0 {
		delete(s.chunks, id/idChunkSize)
	}
	return size, true
}

// ascend calls fn for the ids from from on, in order, while it returns
// true.
func (s *idSet) ascend(from uint64, fn func(id uint64, size int64) bool) {
	keys := make([]uint64, 0, len(s.chunks))
	for k := range s.chunks {
		if k >= from/idChunkSize {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := s.chunks[k]
		for w, word := range c.bits {
			for word != 0 {
				b := bits.TrailingZeros64(word)
				word &^= 1 << b
				i := uint64(w*64 + b)
				id := k*idChunkSize + i
				if id < from {
					continue
				}
				if !fn(id, int64(c.sizes[i])) {
					return
				}
			}
		}
	}
}

// last is the highest id, 0 when empty.
func (s *idSet) last() uint64 {
	var top uint64
	var tc *idChunk
	for k, c := range s.chunks {
		if tc == nil || k > top {
			top, tc = k, c
		}
	}
	if tc == nil {
		return 0
	}
	for w := len(tc.bits) - 1; w >= 0; w-- {
		if tc.bits[w] != 0 {
			return top*idChunkSize + uint64(w*64+63-bits.LeadingZeros64(tc.bits[w]))
		}
	}
	return 0
}
