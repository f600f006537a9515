package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/queue"
)

// An entry value is kind(1) expiresAt(8, unix ns, 0 for none) payload.
const (
	kindInline = 1 // payload: the message record (one queue holds it)
	kindRef    = 2 // payload: msgID(8) of a shared record
	kindSpill  = 3 // payload: the message record of a transient message paged out
)

const (
	prefixEntry     = 'q'
	prefixMessage   = 'm'
	prefixDelivered = 'w'
	prefixReturns   = 'r' // qid seq → u32: how often the entry was returned (delivery-limit)
	prefixDef       = 'd'
)

// Batch bounds: the committer writes whatever accumulated while it synced
// the previous batch; Append waits while more than maxPendingBytes wait.
const (
	maxPendingBytes = 8 << 20
	maxPendingOps   = 100000
	gcInterval      = time.Minute
	// A flatten runs once this many deletions piled up and no write came
	// for flattenIdle.
	flattenAfterDeletes = 50000
	flattenIdle         = 5 * time.Second
	// trimInterval: how often the resident pages of Badger's mapped files
	// are dropped from the broker's RSS (see trimMappedFiles). Compaction
	// pulls tens of megabytes of tables in within a second; a walk of
	// /proc/self/maps costs microseconds.
	trimInterval = 100 * time.Millisecond
)

// ErrClosed is returned by calls after Close.
var ErrClosed = errors.New("store: closed")

// Store is Warren's Badger-backed persistence.
type Store struct {
	db  *badger.DB
	log *zap.Logger
	dir string
	// spools hold non-durable queues' paged-out tails (spool.go).
	spools *spools

	mu sync.Mutex
	// Guarded by mu: the pending batch.
	ops       []op
	puts      map[string]int // key → index in ops of a pending put
	delivered map[uint64]uint64
	callbacks []func()
	// needSync is set by what must reach the disk before the batch counts
	// as written: durable messages, definitions, AfterSync waiters. A batch
	// of only removals and spilled transient messages is written without
	// an msync (a process crash cannot lose it: it is in the page cache; a
	// power loss can at worst bring back acknowledged messages, which the
	// next synced batch rules out); the next synced batch covers it.
	needSync  bool
	pendBytes int
	nextMsgID uint64
	// shared counts the entries that refer to each shared message record.
	shared     map[uint64]int32
	closed     bool
	roomFreed  *sync.Cond
	commitKick chan struct{}

	stop chan struct{}
	done chan struct{}
	err  error // sticky write error, guarded by mu

	// Owned by the committer: deletions written since the last flatten, and
	// when the last batch was written, to compact when the store is idle.
	deletes   int
	lastWrite time.Time
	unsynced  bool // written to Badger since the last msync
	// viewMu keeps Close from closing Badger under a read of view
	// (replicated.go); viewClosed is set under it.
	viewMu     sync.RWMutex
	viewClosed bool
	// batches and syncs count written batches and msyncs (for tests).
	batches, syncs atomic.Int64
}

type op struct {
	key []byte
	val []byte // nil for a delete
	del bool
	// cancelled ops are skipped at write time.
	cancelled bool
}

// Open opens (or creates) the store in dir. A directory that Badger cannot
// open is an error naming the path, never a silently empty broker.
func Open(dir string, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: data directory %s: %w", dir, err)
	}
	opts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log.Named("badger").Sugar()}).
		// We sync once per batch ourselves (db.Sync after each WriteBatch).
		WithSyncWrites(false).
		// Memory stays bounded: Badger's defaults (5 × 64 MB memtables,
		// 256 MB block cache) alone would exceed the broker's budget.
		WithMemTableSize(8 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8).
		WithBlockCacheSize(8 << 20).
		WithBaseTableSize(2 << 20).
		WithIndexCacheSize(16 << 20).
		// Small messages (the common case) live in the LSM tree, where
		// compaction reclaims their space after deletion; large bodies go
		// to the value log, which value-log GC reclaims.
		WithValueThreshold(4 << 10).
		WithValueLogFileSize(128 << 20).
		// Queue traffic is write-once, delete-soon: no compression CPU.
		WithCompression(options.None).
		// Single writer (the committer); no transactions to conflict.
		WithDetectConflicts(false).
		// Badger's minimum: each compactor holds table builders and pulls
		// tables into memory, and two cores gain nothing from more.
		WithNumCompactors(2).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("store: cannot open data directory %s: %w", dir, err)
	}
	s := &Store{
		db:         db,
		log:        log,
		dir:        dir,
		puts:       map[string]int{},
		delivered:  map[uint64]uint64{},
		shared:     map[uint64]int32{},
		commitKick: make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	s.roomFreed = sync.NewCond(&s.mu)
	// After Badger's directory lock is ours: the spool of a running broker
	// must not be cleared by a second one.
	if s.spools, err = openSpools(filepath.Clean(dir)+"-spool", log.Named("spool")); err != nil {
		db.Close()
		return nil, err
	}
	if s.nextMsgID, err = s.lastID(prefixMessage); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: reading %s: %w", dir, err)
	}
	go s.committer()
	return s, nil
}

// lastID returns the highest 8-byte id under a one-byte prefix.
func (s *Store) lastID(prefix byte) (uint64, error) {
	var id uint64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte{prefix}})
		defer it.Close()
		it.Seek([]byte{prefix, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if it.Valid() {
			k := it.Item().Key()
			if len(k) >= 9 {
				id = binary.BigEndian.Uint64(k[1:9])
			}
		}
		return nil
	})
	return id, err
}

// Close flushes the pending batch, stops the committer and closes Badger.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.spools.closeAll()
	s.viewMu.Lock()
	s.viewClosed = true
	s.viewMu.Unlock()
	return s.db.Close()
}

func entryKey(qid, seq uint64) []byte {
	k := make([]byte, 17)
	k[0] = prefixEntry
	binary.BigEndian.PutUint64(k[1:], qid)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

func idKey(prefix byte, id uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func encodeMessage(m *queue.Message) []byte {
	return appendMessage(make([]byte, 0, encodedLen(m)), m)
}

// encodedLen is the size of m's record.
func encodedLen(m *queue.Message) int {
	return 2 + len(m.Exchange) + len(m.RoutingKey) + 4 + len(m.Header) + len(m.Body)
}

// appendMessage appends m's record (see the package doc) to b.
func appendMessage(b []byte, m *queue.Message) []byte {
	b = append(b, byte(len(m.Exchange)))
	b = append(b, m.Exchange...)
	b = append(b, byte(len(m.RoutingKey)))
	b = append(b, m.RoutingKey...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Header)))
	b = append(b, m.Header...)
	return append(b, m.Body...)
}

var errCorrupt = errors.New("corrupt message record")

// decodeMessage decodes a message record, interning its exchange and
// routing key in names (messages read back in one batch share them).
func decodeMessage(b []byte, names *queue.Names) (*queue.Message, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, errCorrupt
	}
	x, b := names.InternBytes(b[1:1+b[0]]), b[1+b[0]:]
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return nil, errCorrupt
	}
	rk, b := names.InternBytes(b[1:1+b[0]]), b[1+b[0]:]
	if len(b) < 4 {
		return nil, errCorrupt
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, errCorrupt
	}
	// One allocation for header and body, as on the publish path.
	buf := append([]byte(nil), b[4:]...)
	return queue.NewMessage(x, rk, buf[:n:n], buf[n:]), nil
}

// --- queue.Journal ---

func entryValue(kind byte, expiresAt int64, payload []byte) []byte {
	v := make([]byte, 9, 9+len(payload))
	v[0] = kind
	binary.BigEndian.PutUint64(v[1:], uint64(expiresAt))
	return append(v, payload...)
}

// waitRoomLocked blocks while the pending batch is full. Lock must be held.
func (s *Store) waitRoomLocked() {
	for (s.pendBytes > maxPendingBytes || len(s.ops) > maxPendingOps) && !s.closed {
		s.roomFreed.Wait()
	}
}

// Append implements queue.Journal.
func (s *Store) Append(qid, seq uint64, m *queue.Message, expiresAt int64) {
	s.mu.Lock()
	s.waitRoomLocked()
	if m.StoreInline && m.StoreID == 0 {
		s.putLocked(entryKey(qid, seq), entryValue(kindInline, expiresAt, encodeMessage(m)))
		s.mu.Unlock()
		s.kick()
		return
	}
	if m.StoreID == 0 {
		s.nextMsgID++
		m.StoreID = s.nextMsgID
		s.putLocked(idKey(prefixMessage, m.StoreID), encodeMessage(m))
	}
	s.shared[m.StoreID]++
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], m.StoreID)
	s.putLocked(entryKey(qid, seq), entryValue(kindRef, expiresAt, id[:]))
	s.mu.Unlock()
	s.kick()
}

// Spill implements queue.Journal. A spilled transient message does not
// survive a restart anyway, so it does not ask for a sync.
func (s *Store) Spill(qid, seq uint64, m *queue.Message, expiresAt int64) {
	s.mu.Lock()
	s.waitRoomLocked()
	sync := s.needSync
	s.putLocked(entryKey(qid, seq), entryValue(kindSpill, expiresAt, encodeMessage(m)))
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
}

// Remove implements queue.Journal. Removals do not ask for a sync (see
// needSync).
func (s *Store) Remove(qid, seq uint64, m *queue.Message) {
	s.mu.Lock()
	sync := s.needSync
	s.deleteLocked(entryKey(qid, seq))
	if m.StoreID != 0 {
		s.unrefLocked(m.StoreID)
	}
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
}

// unrefLocked drops one reference to a shared record and deletes it with
// the last. Lock must be held.
func (s *Store) unrefLocked(id uint64) {
	n := s.shared[id] - 1
	if n > 0 {
		s.shared[id] = n
		return
	}
	delete(s.shared, id)
	s.deleteLocked(idKey(prefixMessage, id))
}

// Returned implements queue.Journal.
func (s *Store) Returned(qid, seq uint64, n uint32) {
	k := entryKey(qid, seq)
	k[0] = prefixReturns
	s.mu.Lock()
	if n == 0 {
		s.deleteLocked(k)
	} else {
		s.putLocked(k, binary.BigEndian.AppendUint32(nil, n))
	}
	s.mu.Unlock()
	s.kick()
}

// loadReturns reads queue qid's return counts for seqs in [from, to].
func loadReturns(txn *badger.Txn, qid, from, to uint64) map[uint64]uint32 {
	var m map[uint64]uint32
	prefix := idKey(prefixReturns, qid)
	start := entryKey(qid, from)
	start[0] = prefixReturns
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: prefix})
	defer it.Close()
	for it.Seek(start); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 17 {
			continue
		}
		seq := binary.BigEndian.Uint64(k[9:])
		if seq > to {
			break
		}
		it.Item().Value(func(v []byte) error {
			if len(v) == 4 {
				if m == nil {
					m = map[uint64]uint32{}
				}
				m[seq] = binary.BigEndian.Uint32(v)
			}
			return nil
		})
	}
	return m
}

// Delivered implements queue.Journal.
func (s *Store) Delivered(qid, seq uint64) {
	s.mu.Lock()
	if seq > s.delivered[qid] {
		s.delivered[qid] = seq
	}
	s.mu.Unlock()
}

// putLocked adds a write. Lock must be held.
func (s *Store) putLocked(k, v []byte) {
	s.needSync = true
	s.puts[string(k)] = len(s.ops)
	s.ops = append(s.ops, op{key: k, val: v})
	s.pendBytes += len(k) + len(v)
}

// deleteLocked adds a removal, cancelling a pending write of the same key
// instead when there is one. Lock must be held.
func (s *Store) deleteLocked(k []byte) {
	s.needSync = true
	if i, ok := s.puts[string(k)]; ok {
		s.ops[i].cancelled = true
		delete(s.puts, string(k))
		return
	}
	s.ops = append(s.ops, op{key: k, del: true})
	s.pendBytes += len(k)
}

// AfterSync runs fn once everything journaled before the call is on disk.
// fn runs on the committer goroutine and must not block.
func (s *Store) AfterSync(fn func()) {
	s.mu.Lock()
	s.callbacks = append(s.callbacks, fn)
	s.needSync = true
	s.mu.Unlock()
	s.kick()
}

func (s *Store) kick() {
	select {
	case s.commitKick <- struct{}{}:
	default:
	}
}

// committer writes batches until Close, then writes the last one.
func (s *Store) committer() {
	defer close(s.done)
	gc := time.NewTicker(gcInterval)
	defer gc.Stop()
	trim := time.NewTicker(trimInterval)
	defer trim.Stop()
	for {
		select {
		case <-s.commitKick:
			s.commit()
		case <-gc.C:
			s.collectGarbage()
			s.compactIfIdle()
		case <-trim.C:
			trimMappedFiles(s.dir)
		case <-s.stop:
			s.commit()
			return
		}
	}
}

// commit writes and syncs the pending batch, then runs its callbacks.
func (s *Store) commit() {
	s.mu.Lock()
	ops, cbs, delivered, sync := s.ops, s.callbacks, s.delivered, s.needSync
	s.ops, s.callbacks, s.needSync = nil, nil, false
	s.puts = map[string]int{}
	if len(delivered) > 0 {
		s.delivered = map[uint64]uint64{}
	} else {
		delivered = nil // still shared: never read it outside the lock
	}
	s.pendBytes = 0
	s.roomFreed.Broadcast()
	s.mu.Unlock()
	if len(ops) == 0 && len(cbs) == 0 && len(delivered) == 0 {
		return
	}
	for i := range ops {
		if ops[i].del && !ops[i].cancelled {
			s.deletes++
		}
	}
	s.lastWrite = time.Now()
	if err := s.write(ops, delivered, sync); err != nil {
		// A store that cannot write must not confirm: stop the broker from
		// pretending. The callbacks are dropped, so publishers never get a
		// confirm for these messages.
		s.log.Error("store write failed; confirms withheld", zap.Error(err))
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return
	}
	for _, fn := range cbs {
		fn()
	}
}

func (s *Store) write(ops []op, delivered map[uint64]uint64, sync bool) error {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	for i := range ops {
		o := &ops[i]
		if o.cancelled {
			continue
		}
		var err error
		if o.del {
			err = wb.Delete(o.key)
		} else {
			err = wb.Set(o.key, o.val)
		}
		if err != nil {
			return err
		}
		n++
	}
	for qid, seq := range delivered {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], seq)
		if err := wb.Set(idKey(prefixDelivered, qid), v[:]); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		if err := wb.Flush(); err != nil {
			return err
		}
		s.unsynced = true
		s.batches.Add(1)
	}
	if !sync || !s.unsynced {
		return nil
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	s.syncs.Add(1)
	s.unsynced = false
	return nil
}

// Err returns the first write error, if any.
func (s *Store) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Flush waits until everything journaled so far is on disk.
func (s *Store) Flush() {
	done := make(chan struct{})
	s.AfterSync(func() { close(done) })
	select {
	case <-done:
	case <-s.done:
	}
}

// collectGarbage runs Badger's value-log GC until it finds nothing to do.
func (s *Store) collectGarbage() {
	for i := 0; i < 8; i++ {
		if err := s.db.RunValueLogGC(0.5); err != nil {
			return
		}
	}
}

// compactIfIdle flattens the LSM tree once a drained backlog has left many
// deletions behind and no batch was written for a while: deleted keys are
// only dropped (and their space returned) when compaction carries their
// tombstones to the last level, which a quiet store might otherwise never
// do. Flatten pauses background compaction, so it runs only when idle.
func (s *Store) compactIfIdle() {
	if s.deletes < flattenAfterDeletes || time.Since(s.lastWrite) < flattenIdle {
		return
	}
	if err := s.db.Flatten(1); err != nil {
		s.log.Warn("compaction failed", zap.Error(err))
		return
	}
	s.deletes = 0
	s.collectGarbage()
}

type badgerLogger struct{ s *zap.SugaredLogger }

func (l badgerLogger) Errorf(f string, a ...any)   { l.s.Errorf(f, a...) }
func (l badgerLogger) Warningf(f string, a ...any) { l.s.Warnf(f, a...) }
func (l badgerLogger) Infof(f string, a ...any)    { l.s.Debugf(f, a...) }
func (l badgerLogger) Debugf(f string, a ...any)   { l.s.Debugf(f, a...) }
