package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
)

// Options configure a WAL; zero values take defaults.
type Options struct {
	// SegmentSize is the size at which the current segment is closed and a
	// new one started (64 MiB).
	SegmentSize int64
	// Logger; zap.NewNop() when nil.
	Logger *zap.Logger
}

// GroupState is what replay recovered for one group: its latest snapshot
// (nil if none), its HardState (nil if none) and its log entries after the
// snapshot, ready for raft.MemoryStorage.
type GroupState struct {
	Snapshot  *pb.Snapshot
	HardState *pb.HardState
	Entries   []*pb.Entry
}

// Stats are cumulative counters since Open.
type Stats struct {
	Syncs    uint64 // fsyncs of segment files
	Batches  uint64 // Append calls that wrote something
	Records  uint64
	Entries  uint64 // log entries written
	Bytes    uint64
	Segments int    // segment files on disk now
	Removed  uint64 // segment files deleted
}

// WAL is a node's write-ahead log shared by all its Raft groups, plus one
// snapshot file per group. Append is meant to be called by one goroutine (the
// host's ready loop); every method is safe for concurrent use.
type WAL struct {
	dir  string
	opts Options
	log  *zap.Logger

	syncs, batches, records, entries, bytes, removed atomic.Uint64

	mu     sync.Mutex
	f      *os.File              // current segment, opened for append. Lock must be held.
	segs   []*segment            // oldest first; the last is current. Lock must be held.
	groups map[uint64]*groupInfo // live groups. Lock must be held.
	err    error                 // sticky write failure. Lock must be held.
}

// segment is one file of the log and what it holds, for deciding when it is
// no longer needed.
type segment struct {
	seq  uint64
	size int64
	// maxIndex is, per group, the highest entry index written in this
	// segment. The segment is needed while any live group has not yet taken a
	// snapshot covering it.
	maxIndex map[uint64]uint64
}

type groupInfo struct {
	hs        *pb.HardState // latest written
	snapIndex uint64        // index of the snapshot file
}

func (w *WAL) segPath(seq uint64) string {
	return filepath.Join(w.dir, fmt.Sprintf("%016x.wal", seq))
}

// Open opens (creating if needed) the WAL in dir and replays it. A torn tail
// in the last segment, as a crash mid-write leaves, is truncated at the first
// bad record; a bad record in an older segment is an error wrapping
// ErrCorrupt.
func Open(dir string, opts Options) (*WAL, map[uint64]*GroupState, error) {
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if err := os.MkdirAll(filepath.Join(dir, "snap"), 0o755); err != nil {
		return nil, nil, fmt.Errorf("wal: %w", err)
	}
	w := &WAL{dir: dir, opts: opts, log: opts.Logger, groups: make(map[uint64]*groupInfo)}
	snaps, err := w.loadSnapshots()
	if err != nil {
		return nil, nil, err
	}
	seqs, err := w.listSegments()
	if err != nil {
		return nil, nil, err
	}
	rp := newReplay(snaps)
	for i, seq := range seqs {
		seg := &segment{seq: seq, maxIndex: make(map[uint64]uint64)}
		last := i == len(seqs)-1
		if err := w.replaySegment(seg, last, rp); err != nil {
			return nil, nil, err
		}
		w.segs = append(w.segs, seg)
	}
	states, err := rp.finish()
	if err != nil {
		return nil, nil, err
	}
	for g, st := range states {
		gi := &groupInfo{hs: st.HardState}
		if st.Snapshot != nil {
			gi.snapIndex = st.Snapshot.GetMetadata().GetIndex()
		}
		w.groups[g] = gi
	}
	if len(w.segs) == 0 {
		if err := w.newSegment(1); err != nil {
			return nil, nil, err
		}
	} else {
		cur := w.segs[len(w.segs)-1]
		f, err := os.OpenFile(w.segPath(cur.seq), os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("wal: %w", err)
		}
		w.f = f
	}
	return w, states, nil
}

func (w *WAL) listSegments() ([]uint64, error) {
	des, err := os.ReadDir(w.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var seqs []uint64
	for _, de := range des {
		hex, ok := strings.CutSuffix(de.Name(), ".wal")
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	return seqs, nil
}

func (w *WAL) replaySegment(seg *segment, last bool, rp *replay) error {
	path := w.segPath(seg.seq)
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	off := 0
	for off < len(b) {
		r, n, err := DecodeRecord(b[off:])
		if err != nil {
			if !last {
				return fmt.Errorf("wal: %s at offset %d: %w", filepath.Base(path), off, err)
			}
			w.log.Warn("truncating torn WAL tail", zap.String("segment", filepath.Base(path)),
				zap.Int("offset", off), zap.Int("dropped", len(b)-off), zap.Error(err))
			if err := os.Truncate(path, int64(off)); err != nil {
				return fmt.Errorf("wal: truncate torn tail: %w", err)
			}
			break
		}
		if err := rp.apply(r); err != nil {
			return fmt.Errorf("wal: %s at offset %d: %w", filepath.Base(path), off, err)
		}
		if r.Kind == KindEntries && len(r.Entries) > 0 {
			seg.maxIndex[r.Group] = max(seg.maxIndex[r.Group], r.Entries[len(r.Entries)-1].GetIndex())
		}
		off += n
	}
	seg.size = int64(off)
	return nil
}

// newSegment creates segment seq and makes it current.
// w.mu must be held (or w not yet shared).
func (w *WAL) newSegment(seq uint64) error {
	f, err := os.OpenFile(w.segPath(seq), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("wal: new segment: %w", err)
	}
	if err := syncDir(w.dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: new segment: %w", err)
	}
	w.f = f
	w.segs = append(w.segs, &segment{seq: seq, maxIndex: make(map[uint64]uint64)})
	return nil
}

// Batch collects records for one Append. Reuse it with Reset.
type Batch struct {
	buf      []byte
	maxIndex []groupIndex
	hard     []groupHard
	removed  []uint64
	entries  int
	records  int
}

type groupIndex struct{ group, index uint64 }
type groupHard struct {
	group uint64
	hs    *pb.HardState
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.buf = b.buf[:0]
	b.maxIndex = b.maxIndex[:0]
	b.hard = b.hard[:0]
	b.removed = b.removed[:0]
	b.entries, b.records = 0, 0
}

// Empty reports whether the batch has no records.
func (b *Batch) Empty() bool { return b.records == 0 }

// Entries adds a group's new log entries, split into records of at most
// about 1 MiB.
func (b *Batch) Entries(group uint64, ents []*pb.Entry) {
	for len(ents) > 0 {
		n, size := 0, 0
		for n < len(ents) && (n == 0 || size < 1<<20) {
			size += len(ents[n].GetData()) + 24
			n++
		}
		b.buf = AppendEntries(b.buf, group, ents[:n])
		b.records++
		b.entries += n
		b.maxIndex = append(b.maxIndex, groupIndex{group, ents[n-1].GetIndex()})
		ents = ents[n:]
	}
}

// HardState adds a group's HardState.
func (b *Batch) HardState(group uint64, hs *pb.HardState) {
	b.buf = AppendHardState(b.buf, group, hs)
	b.records++
	b.hard = append(b.hard, groupHard{group, hs})
}

// Snapshot adds a snapshot marker; the snapshot file must already be saved
// with SaveSnapshot.
func (b *Batch) Snapshot(group, index, term uint64, replace bool) {
	b.buf = AppendSnapshot(b.buf, group, index, term, replace)
	b.records++
}

// Remove adds a group removal: on replay the group is gone. Its snapshot
// file is deleted once the batch is durable.
func (b *Batch) Remove(group uint64) {
	b.buf = AppendRemove(b.buf, group)
	b.records++
	b.removed = append(b.removed, group)
}

// Append writes the batch with one write and, if sync, one fsync. When the
// current segment is full it first rolls to a new one that opens with a
// checkpoint of every live group's HardState and snapshot index, so older
// segments are needed only for their entries. A failed write or sync is
// sticky: the WAL refuses further appends.
func (w *WAL) Append(b *Batch, sync bool) error {
	if b.Empty() {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	buf := b.buf
	cur := w.segs[len(w.segs)-1]
	if cur.size >= w.opts.SegmentSize {
		if err := w.rollLocked(); err != nil {
			w.err = err
			return err
		}
		cur = w.segs[len(w.segs)-1]
		buf = append(w.checkpointLocked(nil), b.buf...)
		w.records.Add(uint64(2 * len(w.groups)))
	}
	if _, err := w.f.Write(buf); err != nil {
		w.err = fmt.Errorf("wal: write: %w", err)
		return w.err
	}
	if sync {
		if err := w.f.Sync(); err != nil {
			w.err = fmt.Errorf("wal: fsync: %w", err)
			return w.err
		}
		w.syncs.Add(1)
	}
	cur.size += int64(len(buf))
	for _, e := range b.maxIndex {
		if _, ok := w.groups[e.group]; !ok {
			w.groups[e.group] = &groupInfo{}
		}
		cur.maxIndex[e.group] = max(cur.maxIndex[e.group], e.index)
	}
	for _, h := range b.hard {
		gi := w.groups[h.group]
		if gi == nil {
			gi = &groupInfo{}
			w.groups[h.group] = gi
		}
		gi.hs = h.hs
	}
	for _, g := range b.removed {
		delete(w.groups, g)
		if err := os.Remove(w.snapPath(g)); err != nil && !errors.Is(err, os.ErrNotExist) {
			w.log.Warn("remove snapshot file", zap.Uint64("group", g), zap.Error(err))
		}
	}
	w.batches.Add(1)
	w.records.Add(uint64(b.records))
	w.entries.Add(uint64(b.entries))
	w.bytes.Add(uint64(len(buf)))
	return nil
}

// rollLocked closes the current segment and starts the next.
// w.mu must be held.
func (w *WAL) rollLocked() error {
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("wal: fsync before roll: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("wal: close segment: %w", err)
	}
	return w.newSegment(w.segs[len(w.segs)-1].seq + 1)
}

// checkpointLocked appends, for every live group, its snapshot marker and
// latest HardState. w.mu must be held.
func (w *WAL) checkpointLocked(dst []byte) []byte {
	for g, gi := range w.groups {
		if gi.snapIndex > 0 {
			dst = AppendSnapshot(dst, g, gi.snapIndex, 0, false)
		}
		if gi.hs != nil {
			dst = AppendHardState(dst, g, gi.hs)
		}
	}
	return dst
}

// SaveSnapshot durably stores a group's snapshot file, replacing the older
// one. received says the snapshot came from the leader and replaces the log;
// the caller then adds a Snapshot marker with replace to its next batch.
func (w *WAL) SaveSnapshot(group uint64, snap *pb.Snapshot, received bool) error {
	b, err := encodeSnapshot(snap, received)
	if err != nil {
		return err
	}
	if err := writeFileSync(w.snapPath(group), b); err != nil {
		return fmt.Errorf("wal: save snapshot of group %d: %w", group, err)
	}
	w.mu.Lock()
	gi := w.groups[group]
	if gi == nil {
		gi = &groupInfo{}
		w.groups[group] = gi
	}
	gi.snapIndex = max(gi.snapIndex, snap.GetMetadata().GetIndex())
	w.mu.Unlock()
	return nil
}

// ReleaseSegments deletes the oldest segments that no live group needs: a
// segment is needed while it holds entries of a group above that group's
// snapshot index. Only a prefix is deleted, so replay always sees a suffix of
// history. It returns how many segments were deleted.
func (w *WAL) ReleaseSegments() (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for len(w.segs) > 1 && w.releasableLocked(w.segs[0]) {
		if err := os.Remove(w.segPath(w.segs[0].seq)); err != nil {
			return n, fmt.Errorf("wal: remove segment: %w", err)
		}
		w.segs = w.segs[1:]
		n++
		w.removed.Add(1)
	}
	return n, nil
}

// releasableLocked reports whether seg holds nothing a live group needs.
// w.mu must be held.
func (w *WAL) releasableLocked(seg *segment) bool {
	for g, idx := range seg.maxIndex {
		if gi, live := w.groups[g]; live && idx > gi.snapIndex {
			return false
		}
	}
	return true
}

// Pinning returns the groups whose entries keep the oldest non-current
// segment alive, with the index each needs a snapshot at to release it.
func (w *WAL) Pinning() map[uint64]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) < 2 {
		return nil
	}
	out := make(map[uint64]uint64)
	for g, idx := range w.segs[0].maxIndex {
		if gi, live := w.groups[g]; live && idx > gi.snapIndex {
			out[g] = idx
		}
	}
	return out
}

// Stats returns the counters.
func (w *WAL) Stats() Stats {
	w.mu.Lock()
	segs := len(w.segs)
	w.mu.Unlock()
	return Stats{
		Syncs:    w.syncs.Load(),
		Batches:  w.batches.Load(),
		Records:  w.records.Load(),
		Entries:  w.entries.Load(),
		Bytes:    w.bytes.Load(),
		Segments: segs,
		Removed:  w.removed.Load(),
	}
}

// Close syncs and closes the current segment.
func (w *WAL) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if w.err == nil {
		w.err = errors.New("wal: closed")
	}
	if err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}
