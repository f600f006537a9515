package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and bounds.
const (
	// DefaultMaxSegmentBytes is RabbitMQ's default segment size (500 MB).
	DefaultMaxSegmentBytes = 500_000_000
	// DefaultIndexInterval is the bytes of records between index entries.
	DefaultIndexInterval = 64 << 10
	// DefaultRetentionEvery is how often MaxAge and MaxBytes are checked
	// besides at each segment roll.
	DefaultRetentionEvery = 10 * time.Second
	maxBuffered           = 8 << 20
	headerLen             = 8  // length + crc
	fixedLen              = 16 // offset + ts
	indexEntryLen         = 24
)

// ErrClosed is returned by Append after Close or Delete.
var ErrClosed = errors.New("stream: log closed")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configure a log. Zero values take the defaults.
type Options struct {
	MaxSegmentBytes int64
	IndexInterval   int64
	// MaxBytes drops the oldest segments while the log is larger; 0: no limit.
	MaxBytes int64
	// MaxAge drops segments whose newest record is older; 0: no limit.
	MaxAge         time.Duration
	RetentionEvery time.Duration
	// OnCommit is called (without any lock) after records became readable
	// or segments were dropped: the queue kicks its readers.
	OnCommit func()
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Record is one record as a Reader yields it. Its slices are valid until
// the reader's next call.
type Record struct {
	Offset     uint64
	Timestamp  int64 // Unix ms
	Filter     []byte
	Exchange   []byte
	RoutingKey []byte
	Header     []byte
	Body       []byte
	// Size is the record's size on disk.
	Size int
}

type segment struct {
	base uint64 // offset of its first record
	path string
	// Guarded by Log.mu.
	end     uint64 // offset after its last synced record
	size    int64  // synced bytes
	firstTs int64
	lastTs  int64
	gone    bool // dropped by retention
}

func segPath(dir string, base uint64, ext string) string {
	return filepath.Join(dir, fmt.Sprintf("%020d%s", base, ext))
}

// Log is one stream's log.
type Log struct {
	dir  string
	opts Options

	mu sync.Mutex
	// Guarded by mu.
	segs    []*segment // oldest first; the last is written to
	next    uint64     // offset of the next append
	lastTs  int64      // timestamp of the last append
	buf     []byte     // encoded records not yet handed to the flusher
	spare   []byte
	waiters []func()
	closed  bool
	err     error // the first write error; appends fail after it
	room    *sync.Cond

	committed atomic.Uint64 // offsets below it are synced and readable

	// Owned by the flusher.
	w        *os.File // active segment
	wIdx     *os.File
	wSize    int64 // bytes written to the active segment
	wIndexed int64 // position of its last index entry, -1 none
	idxBuf   []byte

	kick  chan struct{}
	reset chan resetRequest // ResetTo, served by the flusher
	stop  chan struct{}
	done  chan struct{}
}

// Open opens (creating if needed) the log in dir and recovers it.
func Open(dir string, opts Options) (*Log, error) {
	if opts.MaxSegmentBytes <= 0 {
		opts.MaxSegmentBytes = DefaultMaxSegmentBytes
	}
	if opts.IndexInterval <= 0 {
		opts.IndexInterval = DefaultIndexInterval
	}
	if opts.RetentionEvery <= 0 {
		opts.RetentionEvery = DefaultRetentionEvery
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("stream: %w", err)
	}
	l := &Log{dir: dir, opts: opts, kick: make(chan struct{}, 1), reset: make(chan resetRequest), stop: make(chan struct{}), done: make(chan struct{})}
	l.room = sync.NewCond(&l.mu)
	if err := l.recover(); err != nil {
		return nil, err
	}
	go l.flusher()
	return l, nil
}

// recover lists the segments and checks the last one's tail.
func (l *Log) recover() error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	var bases []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		b, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		bases = append(bases, b)
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i] < bases[j] })
	for i, b := range bases {
		s := &segment{base: b, path: segPath(l.dir, b, ".seg")}
		if err := l.scanSegment(s); err != nil {
			return err
		}
		if s.size == 0 && i < len(bases)-1 {
			// An empty segment before others holds nothing: drop it.
			os.Remove(s.path)
			os.Remove(segPath(l.dir, b, ".idx"))
			continue
		}
		l.segs = append(l.segs, s)
	}
	if len(l.segs) == 0 {
		l.segs = []*segment{{base: 0, path: segPath(l.dir, 0, ".seg"), end: 0}}
	}
	last := l.segs[len(l.segs)-1]
	l.next = last.end
	l.lastTs = last.lastTs
	l.committed.Store(l.next)
	return l.openActive(last)
}

// scanSegment fills s's end, size and timestamps from its index's last
// good entry and the records after it; a torn tail is cut off.
func (l *Log) scanSegment(s *segment) error {
	f, err := os.OpenFile(s.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	idx, _ := readIndex(segPath(l.dir, s.base, ".idx"))
	r := &Reader{f: f}
	// Scan from the last index entry that points at a good record (a
	// crash may have written an index entry whose record did not land).
	pos, off, good := int64(0), s.base, 0
	for j := len(idx) - 1; j >= 0; j-- {
		e := idx[j]
		if rec, _, err := r.readAt(int64(e.pos), st.Size()); err == nil && rec.Offset == e.offset {
			pos, off, good = int64(e.pos), e.offset, j+1
			break
		}
	}
	s.firstTs, s.lastTs = 0, 0
	if good > 0 {
		s.firstTs, s.lastTs = idx[0].ts, idx[good-1].ts
	}
	for {
		rec, n, err := r.readAt(pos, st.Size())
		if err != nil || rec.Offset != off {
			break
		}
		if pos == 0 {
			s.firstTs = rec.Timestamp
		}
		s.lastTs = rec.Timestamp
		pos += int64(n)
		off++
	}
	s.end, s.size = off, pos
	if pos < st.Size() {
		// A torn tail: what a crash left half-written, never confirmed.
		if err := f.Truncate(pos); err != nil {
			return fmt.Errorf("stream: cutting torn tail of %s: %w", s.path, err)
		}
	}
	if good < len(idx) || good == 0 && s.size > 0 {
		return l.rebuildIndex(s)
	}
	return nil
}

// rebuildIndex rewrites s's index from its records.
func (l *Log) rebuildIndex(s *segment) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer f.Close()
	r := &Reader{f: f}
	var out []byte
	pos, last := int64(0), int64(-1)
	for pos < s.size {
		rec, n, err := r.readAt(pos, s.size)
		if err != nil {
			break
		}
		if last < 0 || pos-last >= l.opts.IndexInterval {
			out = appendIndex(out, rec.Offset, rec.Timestamp, pos)
			last = pos
		}
		pos += int64(n)
	}
	if err := os.WriteFile(segPath(l.dir, s.base, ".idx"), out, 0o644); err != nil {
		return fmt.Errorf("stream: rebuilding index: %w", err)
	}
	return nil
}

type indexEntry struct {
	offset uint64
	ts     int64
	pos    uint64
}

func appendIndex(b []byte, off uint64, ts int64, pos int64) []byte {
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	return binary.BigEndian.AppendUint64(b, uint64(pos))
}

func readIndex(path string) ([]indexEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]indexEntry, 0, len(b)/indexEntryLen)
	for len(b) >= indexEntryLen {
		out = append(out, indexEntry{binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), binary.BigEndian.Uint64(b[16:])})
		b = b[indexEntryLen:]
	}
	return out, nil
}

// openActive opens s for appending. Called by Open and the flusher.
func (l *Log) openActive(s *segment) error {
	w, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if _, err := w.Seek(s.size, 0); err != nil {
		w.Close()
		return fmt.Errorf("stream: %w", err)
	}
	idxPath := segPath(l.dir, s.base, ".idx")
	wi, err := os.OpenFile(idxPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		w.Close()
		return fmt.Errorf("stream: %w", err)
	}
	l.w, l.wIdx, l.wSize = w, wi, s.size
	l.wIndexed = -1
	if s.size > 0 {
		// Index entries exist up to somewhere before the end; a new one
		// follows after IndexInterval more bytes.
		if idx, _ := readIndex(idxPath); len(idx) > 0 {
			l.wIndexed = int64(idx[len(idx)-1].pos)
		}
	}
	return nil
}

// Append adds one record and returns its offset. It blocks while the write
// buffer is full.
func (l *Log) Append(filter, exchange, key string, header, body []byte) (uint64, error) {
	return l.append(-1, filter, exchange, key, header, body)
}

// AppendAt is Append with the record's timestamp given (Unix ms; raised to
// the previous record's if older), not read from the clock: the members of
// a replicated stream append what their group's log decided, so that their
// logs are the same.
func (l *Log) AppendAt(ts int64, filter, exchange, key string, header, body []byte) (uint64, error) {
	return l.append(max(ts, 0), filter, exchange, key, header, body)
}

// append appends one record stamped ts, or now if ts < 0.
func (l *Log) append(ts int64, filter, exchange, key string, header, body []byte) (uint64, error) {
	if len(filter) > 0xffff {
		filter = filter[:0xffff]
	}
	exchange, key = exchange[:min(len(exchange), 255)], key[:min(len(key), 255)]
	n := fixedLen + 2 + len(filter) + 1 + len(exchange) + 1 + len(key) + 4 + len(header) + len(body)
	l.mu.Lock()
	for len(l.buf) > maxBuffered && !l.closed && l.err == nil {
		l.room.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return 0, err
	}
	off := l.next
	l.next++
	if ts < 0 {
		ts = l.opts.Now().UnixMilli()
	}
	if ts < l.lastTs {
		ts = l.lastTs // offsets and times grow together, so a time seek is a binary search
	}
	l.lastTs = ts
	b := l.buf
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, 0, 0, 0, 0) // crc
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint64(b, uint64(ts))
	b = binary.BigEndian.AppendUint16(b, uint16(len(filter)))
	b = append(b, filter...)
	b = append(b, byte(len(exchange)))
	b = append(b, exchange...)
	b = append(b, byte(len(key)))
	b = append(b, key...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(header)))
	b = append(b, header...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(b[start+headerLen:], castagnoli))
	l.buf = b
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return off, nil
}

// AfterSync runs fn (on the flusher goroutine) once every record appended
// before the call is synced, or the log failed or closed.
func (l *Log) AfterSync(fn func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		fn()
		return
	}
	l.waiters = append(l.waiters, fn)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *Log) flusher() {
	defer close(l.done)
	t := time.NewTicker(l.opts.RetentionEvery)
	defer t.Stop()
	for {
		select {
		case <-l.kick:
			l.flush()
		case r := <-l.reset:
			l.flush()
			r.done <- l.resetTo(r.base)
		case <-t.C:
			if l.retain() {
				l.notify()
			}
		case <-l.stop:
			l.flush()
			return
		}
	}
}

func (l *Log) notify() {
	if l.opts.OnCommit != nil {
		l.opts.OnCommit()
	}
}

// flush writes and syncs what was appended, then publishes it.
func (l *Log) flush() {
	l.mu.Lock()
	buf, waiters := l.buf, l.waiters
	l.buf, l.spare, l.waiters = l.spare[:0], nil, nil
	failed := l.err != nil
	l.room.Broadcast()
	l.mu.Unlock()
	if len(buf) > 0 && !failed {
		rolled, err := l.write(buf)
		if err != nil {
			l.mu.Lock()
			if l.err == nil {
				l.err = fmt.Errorf("stream: writing %s: %w", l.dir, err)
			}
			l.room.Broadcast()
			l.mu.Unlock()
		} else {
			if rolled {
				l.retain() // before the records show: a reader never sees them with what they push out
			}
			l.committed.Store(l.lastWritten())
			l.notify()
		}
	}
	l.mu.Lock()
	if cap(l.spare) == 0 && cap(buf) <= 2*maxBuffered {
		l.spare = buf[:0]
	}
	l.mu.Unlock()
	for _, fn := range waiters {
		fn()
	}
}

func (l *Log) lastWritten() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[len(l.segs)-1].end
}

// write appends buf's records to the active segment, rolling to new ones
// as they fill, syncs, and makes them visible in the segment table.
func (l *Log) write(buf []byte) (rolled bool, err error) {
	type seen struct {
		end    uint64
		firstT int64
		lastT  int64
		any    bool
	}
	var cur seen
	chunk := 0 // start in buf of what is not yet written
	publish := func(synced bool) {
		if !cur.any {
			return
		}
		l.mu.Lock()
		s := l.segs[len(l.segs)-1]
		if s.size == 0 {
			s.firstTs = cur.firstT
		}
		s.end, s.lastTs, s.size = cur.end, cur.lastT, l.wSize
		l.mu.Unlock()
		cur = seen{}
	}
	flushChunk := func(to int) error {
		if to > chunk {
			if _, err := l.w.Write(buf[chunk:to]); err != nil {
				return err
			}
			chunk = to
		}
		if len(l.idxBuf) > 0 {
			if _, err := l.wIdx.Write(l.idxBuf); err != nil {
				return err
			}
			l.idxBuf = l.idxBuf[:0]
		}
		return nil
	}
	for p := 0; p < len(buf); {
		n := int(binary.BigEndian.Uint32(buf[p:])) + headerLen
		off := binary.BigEndian.Uint64(buf[p+headerLen:])
		ts := int64(binary.BigEndian.Uint64(buf[p+headerLen+8:]))
		if l.wSize > 0 && l.wSize+int64(n) > l.opts.MaxSegmentBytes {
			// Close the full segment (synced) and start the next one here.
			if err := flushChunk(p); err != nil {
				return rolled, err
			}
			if err := l.w.Sync(); err != nil {
				return rolled, err
			}
			publish(true)
			l.w.Close()
			l.wIdx.Close()
			s := &segment{base: off, path: segPath(l.dir, off, ".seg"), end: off}
			if err := l.openActive(s); err != nil {
				return rolled, err
			}
			syncDir(l.dir)
			l.mu.Lock()
			l.segs = append(l.segs, s)
			l.mu.Unlock()
			rolled = true
		}
		if l.wIndexed < 0 || l.wSize-l.wIndexed >= l.opts.IndexInterval {
			l.idxBuf = appendIndex(l.idxBuf, off, ts, l.wSize)
			l.wIndexed = l.wSize
		}
		if !cur.any {
			cur.firstT, cur.any = ts, true
		}
		cur.end, cur.lastT = off+1, ts
		l.wSize += int64(n)
		p += n
	}
	if err := flushChunk(len(buf)); err != nil {
		return rolled, err
	}
	if err := fdatasync(l.w); err != nil {
		return rolled, err
	}
	publish(true)
	return rolled, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync() // best effort: a new segment's name survives a power loss
		d.Close()
	}
}

// retain drops segments beyond MaxBytes and MaxAge, never the last one.
// It reports whether it dropped any. MaxBytes counts the closed segments
// only (the one written to is kept anyway), so that which segments go
// depends on the records alone, not on when this runs: the members of a
// replicated stream, whose segments end at the same records, drop the same
// ones.
func (l *Log) retain() bool {
	if l.opts.MaxBytes <= 0 && l.opts.MaxAge <= 0 {
		return false
	}
	now := l.opts.Now().UnixMilli()
	var drop []*segment
	l.mu.Lock()
	var total int64
	for _, s := range l.segs[:len(l.segs)-1] {
		total += s.size
	}
	for len(l.segs) > 1 {
		s := l.segs[0]
		over := l.opts.MaxBytes > 0 && total > l.opts.MaxBytes
		old := l.opts.MaxAge > 0 && s.lastTs < now-l.opts.MaxAge.Milliseconds()
		if !over && !old {
			break
		}
		total -= s.size
		s.gone = true
		drop = append(drop, s)
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	for _, s := range drop {
		os.Remove(s.path)
		os.Remove(segPath(l.dir, s.base, ".idx"))
	}
	return len(drop) > 0
}

// SetRetention changes MaxBytes and MaxAge (a policy changed).
func (l *Log) SetRetention(maxBytes int64, maxAge time.Duration) {
	l.mu.Lock()
	l.opts.MaxBytes, l.opts.MaxAge = maxBytes, maxAge
	l.mu.Unlock()
	if l.retain() {
		l.notify()
	}
}

// Info is a summary of the log.
type Info struct {
	First, Next uint64 // the first offset kept and the next to be written
	Committed   uint64 // offsets below it are synced
	Bytes       int64
	Segments    int
	FirstTs     int64
	LastTs      int64
}

// Messages is the number of records kept.
func (i Info) Messages() uint64 { return i.Committed - i.First }

// Info returns the log's extent.
func (l *Log) Info() Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := Info{First: l.segs[0].base, Next: l.next, Committed: l.committed.Load(), Segments: len(l.segs)}
	for _, s := range l.segs {
		i.Bytes += s.size
	}
	i.FirstTs, i.LastTs = l.segs[0].firstTs, l.segs[len(l.segs)-1].lastTs
	return i
}

// Next returns the offset the next append gets.
func (l *Log) Next() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// Err is the write error that stopped the log, if any.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close flushes and syncs what was appended and stops the flusher.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.room.Broadcast()
	l.mu.Unlock()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	waiters := l.waiters
	l.waiters = nil
	l.mu.Unlock()
	for _, fn := range waiters {
		fn()
	}
	var err error
	if l.w != nil {
		err = l.w.Close()
		l.wIdx.Close()
	}
	return err
}

// Delete closes the log and removes its directory.
func (l *Log) Delete() error {
	l.Close()
	return os.RemoveAll(l.dir)
}

type resetRequest struct {
	base uint64
	done chan error
}

// ResetTo drops every record and goes on at offset base, with no previous
// timestamp: a member of a replicated stream whose log ends before the
// first record of a snapshot it restores. Readers go on at base.
func (l *Log) ResetTo(base uint64) error {
	done := make(chan error, 1)
	select {
	case l.reset <- resetRequest{base, done}:
		return <-done
	case <-l.done:
		return ErrClosed
	}
}

// resetTo does ResetTo on the flusher, with the buffer flushed.
func (l *Log) resetTo(base uint64) error {
	l.mu.Lock()
	if l.err != nil {
		err := l.err
		l.mu.Unlock()
		return err
	}
	old := l.segs
	for _, s := range old {
		s.gone = true
	}
	s := &segment{base: base, path: segPath(l.dir, base, ".seg"), end: base}
	l.segs = []*segment{s}
	l.next, l.lastTs = base, 0
	l.committed.Store(base)
	l.mu.Unlock()
	l.w.Close()
	l.wIdx.Close()
	for _, o := range old {
		os.Remove(o.path)
		os.Remove(segPath(l.dir, o.base, ".idx"))
	}
	if err := l.openActive(s); err != nil {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		return err
	}
	syncDir(l.dir)
	l.notify()
	return nil
}
