package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"sort"
)

// readAhead is a reader's buffer: what one pread fetches.
const readAhead = 64 << 10

// errShort means the bytes up to the limit end inside a record.
var errShort = errors.New("stream: record incomplete")

// ErrCorrupt is a record whose CRC or layout does not check.
var ErrCorrupt = errors.New("stream: corrupt record")

// Reader reads a log from an offset on. It is not safe for concurrent use;
// any number of readers may read one log.
type Reader struct {
	l    *Log
	seg  *segment
	f    *os.File
	pos  int64  // file position of the next record
	from uint64 // records below this offset are skipped
	next uint64 // offset of the next record to return

	buf   []byte
	bufAt int64 // file position of buf[0]
}

// NewReader returns a reader positioned at offset: the first record kept
// if offset is older, the next record written if it is newer than the log.
func (l *Log) NewReader(offset uint64) (*Reader, error) {
	return l.newReader(offset, false)
}

// NewReaderAhead is NewReader except for an offset newer than the log: the
// reader stays there, returning nothing until the log reaches it, and then
// goes on from that very record. A member of a replicated stream that is
// behind its group will get the records up to it (every member's offsets
// are the group's), so a consumer that read up to there on another member
// carries on where it asked instead of being handed again the records
// between this member's end and its offset.
func (l *Log) NewReaderAhead(offset uint64) (*Reader, error) {
	return l.newReader(offset, true)
}

func (l *Log) newReader(offset uint64, ahead bool) (*Reader, error) {
	l.mu.Lock()
	if offset < l.segs[0].base {
		offset = l.segs[0].base
	}
	if offset > l.next && !ahead {
		offset = l.next
	}
	i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > offset }) - 1
	if i < 0 {
		i = 0
	}
	s := l.segs[i]
	size := s.size
	l.mu.Unlock()
	r := &Reader{l: l, from: offset, next: offset}
	if err := r.open(s); err != nil {
		return nil, err
	}
	// Start at the index entry at or before offset; Next skips the rest.
	if idx, _ := readIndex(segPath(l.dir, s.base, ".idx")); len(idx) > 0 {
		j := sort.Search(len(idx), func(j int) bool { return idx[j].offset > offset }) - 1
		if j >= 0 && int64(idx[j].pos) <= size {
			r.pos = int64(idx[j].pos)
		}
	}
	return r, nil
}

// OffsetAt returns the offset of the first record appended at or after ts
// (Unix ms), or the next offset if there is none.
func (l *Log) OffsetAt(ts int64) (uint64, error) {
	l.mu.Lock()
	var s *segment
	var size int64
	for _, c := range l.segs {
		if c.size > 0 && c.lastTs >= ts {
			s, size = c, c.size
			break
		}
	}
	next := l.committed.Load()
	l.mu.Unlock()
	if s == nil {
		return next, nil
	}
	f, err := os.Open(s.path)
	if err != nil {
		if os.IsNotExist(err) { // dropped meanwhile: the oldest kept will do
			return l.Info().First, nil
		}
		return 0, fmt.Errorf("stream: %w", err)
	}
	defer f.Close()
	r := &Reader{f: f}
	var pos int64
	if idx, _ := readIndex(segPath(l.dir, s.base, ".idx")); len(idx) > 0 {
		j := sort.Search(len(idx), func(j int) bool { return idx[j].ts >= ts }) - 1
		if j >= 0 && int64(idx[j].pos) < size {
			pos = int64(idx[j].pos)
		}
	}
	for pos < size {
		rec, n, err := r.readAt(pos, size)
		if err != nil {
			return 0, err
		}
		if rec.Timestamp >= ts {
			return rec.Offset, nil
		}
		pos += int64(n)
	}
	return next, nil
}

func (r *Reader) open(s *segment) error {
	f, err := os.Open(s.path)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.seg, r.pos, r.bufAt, r.buf = f, s, 0, 0, r.buf[:0]
	return nil
}

// Offset is the offset of the next record the reader returns (or waits for).
func (r *Reader) Offset() uint64 {
	if r.next < r.from {
		return r.from
	}
	return r.next
}

// Next returns the next synced record, or ok false when the reader has
// caught up with the log. The record's slices are valid until the next
// call.
func (r *Reader) Next() (rec Record, ok bool, err error) {
	for {
		l := r.l
		l.mu.Lock()
		size := r.seg.size
		var after *segment
		if r.pos >= size {
			// The first segment after this one, if any: this one is full.
			i := sort.Search(len(l.segs), func(i int) bool { return l.segs[i].base > r.seg.base })
			if i < len(l.segs) {
				after = l.segs[i]
			}
		}
		l.mu.Unlock()
		if r.pos < size {
			rec, n, err := r.readAt(r.pos, size)
			if err != nil {
				return Record{}, false, fmt.Errorf("%w at %s:%d", err, r.seg.path, r.pos)
			}
			r.pos += int64(n)
			r.next = rec.Offset + 1
			if rec.Offset < r.from {
				continue
			}
			return rec, true, nil
		}
		if after == nil {
			return Record{}, false, nil
		}
		if err := r.open(after); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Retention dropped it before we got there: go to the
				// oldest segment kept.
				l.mu.Lock()
				first := l.segs[0]
				l.mu.Unlock()
				if first.base <= after.base {
					return Record{}, false, err
				}
				r.seg, r.pos = first, 0
				if err := r.open(first); err != nil {
					return Record{}, false, err
				}
			} else {
				return Record{}, false, err
			}
		}
	}
}

// Close releases the reader's file.
func (r *Reader) Close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
	r.buf = nil
}

// fill makes buf hold the file from pos on, at least need bytes if the
// file has them below limit.
func (r *Reader) fill(pos int64, need int, limit int64) error {
	want := max(readAhead, need)
	if int64(want) > limit-pos {
		want = int(limit - pos)
	}
	if cap(r.buf) < want || cap(r.buf) > 4*readAhead && want <= readAhead {
		r.buf = make([]byte, 0, max(want, readAhead))
	}
	b := r.buf[:want]
	n, err := r.f.ReadAt(b, pos)
	if n < want && err != nil && err != io.EOF {
		return err
	}
	r.buf, r.bufAt = b[:n], pos
	return nil
}

// readAt parses the record at file position pos, whose segment holds
// limit valid bytes. It returns the record and its size.
func (r *Reader) readAt(pos, limit int64) (Record, int, error) {
	if pos+headerLen > limit {
		return Record{}, 0, errShort
	}
	in := func(n int) bool { return pos >= r.bufAt && pos+int64(n) <= r.bufAt+int64(len(r.buf)) }
	if !in(headerLen) {
		if err := r.fill(pos, headerLen, limit); err != nil {
			return Record{}, 0, err
		}
		if !in(headerLen) {
			return Record{}, 0, errShort
		}
	}
	p := r.buf[pos-r.bufAt:]
	n := int(binary.BigEndian.Uint32(p)) + headerLen
	if n < headerLen+fixedLen+2+1+1+4 || n > 1<<30 {
		return Record{}, 0, ErrCorrupt
	}
	if pos+int64(n) > limit {
		return Record{}, 0, errShort
	}
	if !in(n) {
		if err := r.fill(pos, n, limit); err != nil {
			return Record{}, 0, err
		}
		if !in(n) {
			return Record{}, 0, errShort
		}
		p = r.buf
	}
	p = p[:n]
	if crc32.Checksum(p[headerLen:], castagnoli) != binary.BigEndian.Uint32(p[4:]) {
		return Record{}, 0, ErrCorrupt
	}
	rec, ok := parse(p[headerLen:])
	if !ok {
		return Record{}, 0, ErrCorrupt
	}
	rec.Size = n
	return rec, n, nil
}

// parse splits a record's fields (after length and CRC).
func parse(p []byte) (Record, bool) {
	var rec Record
	rec.Offset = binary.BigEndian.Uint64(p)
	rec.Timestamp = int64(binary.BigEndian.Uint64(p[8:]))
	p = p[fixedLen:]
	fl := int(binary.BigEndian.Uint16(p))
	p = p[2:]
	if len(p) < fl+1 {
		return rec, false
	}
	rec.Filter, p = p[:fl], p[fl:]
	el := int(p[0])
	if len(p) < 1+el+1 {
		return rec, false
	}
	rec.Exchange, p = p[1:1+el], p[1+el:]
	kl := int(p[0])
	if len(p) < 1+kl+4 {
		return rec, false
	}
	rec.RoutingKey, p = p[1:1+kl], p[1+kl:]
	hl := int(binary.BigEndian.Uint32(p))
	if len(p) < 4+hl {
		return rec, false
	}
	rec.Header, rec.Body = p[4:4+hl], p[4+hl:]
	return rec, true
}
