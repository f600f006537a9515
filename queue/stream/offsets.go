package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// Offsets holds a stream's tracked consumer offsets: for each consumer
// name, the offset a consumer of that name resumes from. It lives beside
// the log, in the sidecar file OffsetsFile of the stream's directory, so
// it goes with the stream when the directory is removed.
//
// An update is the small deterministic operation Set(name, offset): the
// last update of a name wins. AppendUpdate and ParseUpdate encode it, so a
// replicated stream can carry updates as log entries and apply them in log
// order on every member; the file is then a snapshot of the applied map.
// It is a sidecar rather than records in the log because a record in the
// log takes an offset (consumers would see holes) and retention would drop
// old tracking records with their segment.
//
// Set changes memory only and wakes a writer goroutine, which rewrites the
// whole file (it is small: one entry per name) to a temporary file,
// fsyncs it and renames it over the old one, at most once per FlushEvery:
// a burst of acks costs one write. A crash keeps the last file written,
// so at most the updates of the last FlushEvery are lost; the loss only
// moves a name back (its consumer gets again what it had acked), never
// forward.
type Offsets struct {
	path  string
	every time.Duration

	mu sync.Mutex
	// Guarded by mu.
	cur    map[string]uint64 // the latest updates
	synced map[string]uint64 // what the file holds
	dirty  bool
	err    error // the last write's failure, nil once a write succeeds

	// The writer starts at the first Set, so a stream without named
	// consumers has no goroutine for them.
	start sync.Once
	kick  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// OffsetsFile is the name of the tracked offsets file in a stream's
// directory (the log's recovery looks only at .seg and .idx files).
const OffsetsFile = "offsets"

// DefaultFlushEvery bounds how often tracked offsets are written.
const DefaultFlushEvery = 200 * time.Millisecond

// MaxNameLen bounds a tracked consumer name (a shortstr's length, as a
// consumer tag's).
const MaxNameLen = 255

const offsetsMagic = "WSO1"

// ErrBadOffsets is a tracked offsets file or update that does not parse.
var ErrBadOffsets = errors.New("stream: bad tracked offsets")

// OpenOffsets reads dir's tracked offsets (none if the file is missing);
// flushEvery 0 takes DefaultFlushEvery.
func OpenOffsets(dir string, flushEvery time.Duration) (*Offsets, error) {
	if flushEvery <= 0 {
		flushEvery = DefaultFlushEvery
	}
	o := &Offsets{path: filepath.Join(dir, OffsetsFile), every: flushEvery, cur: map[string]uint64{}, synced: map[string]uint64{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	b, err := os.ReadFile(o.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("stream: %w", err)
	default:
		m, err := decodeOffsets(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %s", err, o.path)
		}
		for k, v := range m {
			o.cur[k], o.synced[k] = v, v
		}
	}
	os.Remove(o.path + ".tmp") // what a crash mid-write left
	return o, nil
}

// Get returns name's offset.
func (o *Offsets) Get(name string) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.cur[name]
	return v, ok
}

// Set records that name resumes from offset; the file follows within
// FlushEvery.
func (o *Offsets) Set(name string, offset uint64) {
	o.mu.Lock()
	if v, ok := o.cur[name]; ok && v == offset {
		o.mu.Unlock()
		return
	}
	o.cur[name] = offset
	o.dirty = true
	o.mu.Unlock()
	o.start.Do(func() { go o.writer() })
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// Delete forgets name (an operator's clean-up: a consumer of that name
// then starts at next, or its explicit offset). It reports whether name
// was tracked. A replicated stream carries it as an operation too.
func (o *Offsets) Delete(name string) bool {
	o.mu.Lock()
	_, ok := o.cur[name]
	if ok {
		delete(o.cur, name)
		o.dirty = true
	}
	o.mu.Unlock()
	if ok {
		o.start.Do(func() { go o.writer() })
		select {
		case o.kick <- struct{}{}:
		default:
		}
	}
	return ok
}

// Tracked is one name's offset: the latest, and the one on disk.
type Tracked struct {
	Name   string
	Offset uint64
	Synced uint64 // what a crash now would resume from
}

// All lists the tracked names in name order.
func (o *Offsets) All() []Tracked {
	o.mu.Lock()
	out := make([]Tracked, 0, len(o.cur))
	for k, v := range o.cur {
		out = append(out, Tracked{Name: k, Offset: v, Synced: o.synced[k]})
	}
	o.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Err is the last write's failure (the next update retries), if any.
func (o *Offsets) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Close writes what is pending and stops the writer.
func (o *Offsets) Close() error {
	o.start.Do(func() { close(o.done) }) // never started: nothing to write
	select {
	case <-o.stop:
	default:
		close(o.stop)
	}
	<-o.done
	return o.Err()
}

func (o *Offsets) writer() {
	defer close(o.done)
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-o.kick:
		case <-o.stop:
			o.write()
			return
		}
		o.write()
		// At most one write per interval: updates meanwhile form the next.
		t.Reset(o.every)
		select {
		case <-t.C:
		case <-o.stop:
			t.Stop()
			o.write()
			return
		}
	}
}

// write rewrites the file if anything changed since the last write.
func (o *Offsets) write() {
	o.mu.Lock()
	if !o.dirty {
		o.mu.Unlock()
		return
	}
	snap := make(map[string]uint64, len(o.cur))
	for k, v := range o.cur {
		snap[k] = v
	}
	o.dirty = false
	o.mu.Unlock()
	err := writeAtomic(o.path, encodeOffsets(snap))
	o.mu.Lock()
	o.err = err
	if err != nil {
		o.dirty = true // retried at the next update or Close
	} else {
		o.synced = snap
	}
	o.mu.Unlock()
}

// writeAtomic replaces path with b: a synced temporary file renamed over
// it, then the directory synced, so a crash leaves the old file or the
// new one whole.
func writeAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("stream: writing %s: %w", tmp, err)
	}
	if err := fdatasync(f); err != nil {
		f.Close()
		return fmt.Errorf("stream: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// AppendUpdate appends the encoding of the update Set(name, offset):
// name length u8, name, offset u64. Names longer than MaxNameLen are cut.
func AppendUpdate(b []byte, name string, offset uint64) []byte {
	name = name[:min(len(name), MaxNameLen)]
	b = append(b, byte(len(name)))
	b = append(b, name...)
	return binary.BigEndian.AppendUint64(b, offset)
}

// ParseUpdate decodes one update from the front of b and returns the rest.
func ParseUpdate(b []byte) (name string, offset uint64, rest []byte, err error) {
	if len(b) < 1 || len(b) < 1+int(b[0])+8 {
		return "", 0, nil, ErrBadOffsets
	}
	n := int(b[0])
	return string(b[1 : 1+n]), binary.BigEndian.Uint64(b[1+n:]), b[1+n+8:], nil
}

// encodeOffsets is the file: magic, count u32, the updates in name order,
// and a CRC-32C of all before it.
func encodeOffsets(m map[string]uint64) []byte {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	b := append([]byte(offsetsMagic), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[len(offsetsMagic):], uint32(len(names)))
	for _, k := range names {
		b = AppendUpdate(b, k, m[k])
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeOffsets(b []byte) (map[string]uint64, error) {
	if len(b) < len(offsetsMagic)+8 || string(b[:len(offsetsMagic)]) != offsetsMagic {
		return nil, ErrBadOffsets
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return nil, ErrBadOffsets
	}
	n := binary.BigEndian.Uint32(body[len(offsetsMagic):])
	p := body[len(offsetsMagic)+4:]
	m := make(map[string]uint64, min(int(n), 1<<16))
	for i := uint32(0); i < n; i++ {
		name, off, rest, err := ParseUpdate(p)
		if err != nil {
			return nil, err
		}
		m[name], p = off, rest
	}
	if len(p) != 0 {
		return nil, ErrBadOffsets
	}
	return m, nil
}
