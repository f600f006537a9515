package store

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/queue"
)

// The spool holds the paged-out tail of non-durable queues (queue.Spooler).
// That tail is written at the back, read from the front and never survives
// a restart, so it lives in plain append-only segment files, one directory
// per queue beside Badger's, instead of in the LSM tree: no per-message
// index insert, no tombstone per removal, no compaction, no msync. A
// segment is deleted once read; the whole directory is emptied at startup.
//
// Records: u32 length of what follows, u64 seq, i64 expiresAt (unix ns, 0
// none), then the message as encodeMessage writes it.
//
// Writes are gathered in memory (spoolFlushAt bytes) and written with one
// write call. When a write fails (disk full), the spool stops using files:
// what the files hold is read first, then the rest from memory, so nothing
// is lost and the order holds; the failure is logged once.

const (
	spoolSegment = 32 << 20 // bytes per segment file
	spoolFlushAt = 256 << 10
	spoolReadAt  = 1 << 20 // read-ahead per read call
	// spoolBuffers bounds the write and read buffers of all spools
	// together: with thousands of paging queues, per-queue buffers of the
	// sizes above would hold more memory than the messages the budget
	// keeps. Each spool's share shrinks down to spoolMinBuf.
	spoolBuffers = 16 << 20
	spoolMinBuf  = 8 << 10
)

type spools struct {
	dir string
	log *zap.Logger
	mu  sync.Mutex
	m   map[uint64]*spool
	n   atomic.Int64 // len(m), read without mu
}

// bufShare is one spool's share of spoolBuffers, between spoolMinBuf and
// limit.
func (ss *spools) bufShare(limit int) int {
	return min(limit, max(spoolMinBuf, int(spoolBuffers/max(ss.n.Load(), 1))))
}

func openSpools(dir string, log *zap.Logger) (*spools, error) {
	// Nothing spooled survives a restart: the queues it belonged to are gone.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("store: clearing spool %s: %w", dir, err)
	}
	return &spools{dir: dir, log: log, m: map[uint64]*spool{}}, nil
}

func (ss *spools) get(qid uint64, create bool) *spool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sp := ss.m[qid]
	if sp == nil && create {
		sp = &spool{ss: ss, dir: filepath.Join(ss.dir, fmt.Sprint(qid)), log: ss.log, ends: map[int]int64{}, segMax: spoolSegment}
		ss.m[qid] = sp
		ss.n.Store(int64(len(ss.m)))
	}
	return sp
}

func (ss *spools) drop(qid uint64) {
	ss.mu.Lock()
	sp := ss.m[qid]
	delete(ss.m, qid)
	ss.n.Store(int64(len(ss.m)))
	ss.mu.Unlock()
	if sp != nil {
		sp.close()
		os.RemoveAll(sp.dir)
	}
}

// closeAll removes every spool's files. Their handles are left to the
// queues that own them (which may still be running): an unlinked file's
// descriptor stays valid until it is closed.
func (ss *spools) closeAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.m = map[uint64]*spool{}
	ss.n.Store(0)
	os.RemoveAll(ss.dir)
}

// spool is one queue's; its methods run under that queue's lock.
type spool struct {
	ss     *spools
	dir    string
	log    *zap.Logger
	segMax int64 // bytes per segment file

	wseg   int // segment being written
	wf     *os.File
	wend   int64  // bytes of wseg on disk
	wbuf   []byte // records not yet written (all of them once failed)
	failed bool

	rseg int // segment being read
	rf   *os.File
	roff int64  // next file offset to read in rseg
	rbuf []byte // read but not yet parsed: rbuf[rpos:]
	rpos int

	ends map[int]int64 // sizes of finished segments
}

func (sp *spool) segPath(n int) string { return filepath.Join(sp.dir, fmt.Sprintf("%08d.seg", n)) }

func (sp *spool) write(seq uint64, m *queue.Message, expiresAt int64) {
	b := binary.BigEndian.AppendUint32(sp.wbuf, uint32(16+encodedLen(m)))
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, uint64(expiresAt))
	sp.wbuf = appendMessage(b, m)
	if len(sp.wbuf) >= sp.ss.bufShare(spoolFlushAt) {
		sp.flush()
	}
}

// flush writes the gathered records to the current segment.
func (sp *spool) flush() {
	if sp.failed || len(sp.wbuf) == 0 {
		return
	}
	if sp.wf == nil {
		err := os.MkdirAll(sp.dir, 0o755)
		if err == nil {
			sp.wf, err = os.OpenFile(sp.segPath(sp.wseg), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		}
		if err != nil {
			sp.fail(err)
			return
		}
	}
	if _, err := sp.wf.WriteAt(sp.wbuf, sp.wend); err != nil {
		sp.wf.Truncate(sp.wend) // a partial record must not be read
		sp.fail(err)
		return
	}
	sp.wend += int64(len(sp.wbuf))
	sp.wbuf = sp.wbuf[:0]
	if cap(sp.wbuf) > 2*sp.ss.bufShare(spoolFlushAt) {
		sp.wbuf = nil // grown when the share was larger: give it back
	}
	if sp.wend >= sp.segMax {
		sp.wf.Close()
		sp.wf = nil
		sp.ends[sp.wseg] = sp.wend
		sp.wseg++
		sp.wend = 0
	}
}

func (sp *spool) fail(err error) {
	sp.failed = true
	sp.log.Error("spool write failed: the queue's paged-out messages stay in memory", zap.String("dir", sp.dir), zap.Error(err))
}

// read parses up to max records from the front.
func (sp *spool) read(max int) ([]queue.Entry, error) {
	sp.flush()
	var es []queue.Entry
	var names queue.Names
	for len(es) < max {
		rec, err := sp.next()
		if err != nil {
			return es, err
		}
		if rec == nil {
			break
		}
		if len(rec) < 16 {
			return es, fmt.Errorf("store: spool %s: %w", sp.dir, errCorrupt)
		}
		m, err := decodeMessage(rec[16:], &names)
		if err != nil {
			return es, fmt.Errorf("store: spool %s: %w", sp.dir, err)
		}
		es = append(es, queue.Entry{Msg: m, Seq: binary.BigEndian.Uint64(rec), ExpiresAt: int64(binary.BigEndian.Uint64(rec[8:]))})
	}
	if sp.rpos == len(sp.rbuf) && cap(sp.rbuf) > sp.ss.bufShare(spoolReadAt) {
		// Everything read ahead is parsed: an idle queue holds no buffer.
		sp.rbuf, sp.rpos = nil, 0
	}
	return es, nil
}

// next returns the next record (valid until the following call), or nil
// when there is none.
func (sp *spool) next() ([]byte, error) {
	for {
		if avail := sp.rbuf[sp.rpos:]; len(avail) >= 4 {
			n := int(binary.BigEndian.Uint32(avail))
			if len(avail) >= 4+n {
				sp.rpos += 4 + n
				return avail[4 : 4+n], nil
			}
		}
		// Need more: keep the unparsed part and read on.
		sp.rbuf = append(sp.rbuf[:0], sp.rbuf[sp.rpos:]...)
		sp.rpos = 0
		end, ok := sp.ends[sp.rseg]
		if !ok {
			end = sp.wend // the segment being written
		}
		if sp.roff < end {
			if sp.rf == nil {
				f, err := os.Open(sp.segPath(sp.rseg))
				if err != nil {
					return nil, fmt.Errorf("store: spool: %w", err)
				}
				sp.rf = f
			}
			want := int(min(end-sp.roff, int64(max(sp.ss.bufShare(spoolReadAt), sp.recordNeed()))))
			start := len(sp.rbuf)
			sp.rbuf = append(sp.rbuf, make([]byte, want)...)
			n, err := sp.rf.ReadAt(sp.rbuf[start:], sp.roff)
			sp.rbuf = sp.rbuf[:start+n]
			sp.roff += int64(n)
			if n < want {
				return nil, fmt.Errorf("store: spool %s: short read: %v", sp.dir, err)
			}
			continue
		}
		if sp.rseg < sp.wseg {
			// This segment is read: delete it and go on with the next.
			if sp.rf != nil {
				sp.rf.Close()
				sp.rf = nil
			}
			os.Remove(sp.segPath(sp.rseg))
			delete(sp.ends, sp.rseg)
			sp.rseg++
			sp.roff = 0
			continue
		}
		if len(sp.wbuf) > 0 {
			// Failed writes: the rest is in memory, after everything above.
			sp.rbuf = append(sp.rbuf, sp.wbuf...)
			sp.wbuf = sp.wbuf[:0]
			continue
		}
		if len(sp.rbuf) > 0 {
			return nil, fmt.Errorf("store: spool %s: %d bytes of a truncated record", sp.dir, len(sp.rbuf))
		}
		return nil, nil
	}
}

// recordNeed is the size of the partly read record at the front, if known.
func (sp *spool) recordNeed() int {
	if len(sp.rbuf) >= 4 {
		return 4 + int(binary.BigEndian.Uint32(sp.rbuf)) - len(sp.rbuf)
	}
	return 0
}

func (sp *spool) close() {
	if sp.wf != nil {
		sp.wf.Close()
		sp.wf = nil
	}
	if sp.rf != nil {
		sp.rf.Close()
		sp.rf = nil
	}
}

// --- queue.Spooler ---

// SpoolWrite implements queue.Spooler.
func (s *Store) SpoolWrite(qid, seq uint64, m *queue.Message, expiresAt int64) {
	s.spools.get(qid, true).write(seq, m, expiresAt)
}

// SpoolRead implements queue.Spooler.
func (s *Store) SpoolRead(qid uint64, max int) ([]queue.Entry, error) {
	sp := s.spools.get(qid, false)
	if sp == nil {
		return nil, nil
	}
	es, err := sp.read(max)
	if err != nil {
		s.log.Error("reading a queue's paged-out messages", zap.Error(err))
	}
	return es, err
}

// SpoolDrop implements queue.Spooler.
func (s *Store) SpoolDrop(qid uint64) { s.spools.drop(qid) }
