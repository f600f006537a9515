package multiraft

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mq/warren/cluster/transport"
)

// Chunked snapshots. A follower that needs a snapshot of a group whose
// state machine is a SnapshotStreamer gets it as a stream of chunks rather
// than inside one MsgSnap frame:
//
//   - Leader: when raft emits the MsgSnap, the ready loop pins the state
//     (OpenSnapshot, as of the last applied entry) and hands it to a
//     goroutine of its own (at most Config.SnapshotSends at once; past that
//     the MsgSnap is reported failed and raft sends it again later). The
//     goroutine writes the state through a buffer of SnapshotChunkSize and
//     sends each full buffer as a KindSnapshot request, waiting for its
//     answer before the next: the receiver's disk paces it, and no more
//     than one chunk is in flight. The last chunk carries the MsgSnap
//     itself (metadata only), the stream's size and CRC-32C. The answer to
//     the last chunk, or any failure, is reported to raft
//     (ReportSnapshot), which sends the MsgSnap again after a failure.
//     While a transfer runs, the group's in-memory log is not compacted
//     past its index, so the follower can go on from there with entries.
//   - Follower: the first chunk starts a transfer (at most
//     Config.SnapshotReceives at once) served by a goroutine that appends
//     the chunks, in order, to a file in Dir/spool. Once the last one is
//     in and its size and checksum match, it steps the MsgSnap into the
//     group with a token as the snapshot's data and records the file under
//     that token. When raft hands the snapshot back in a Ready, the ready
//     loop restores the state machine from the file (RestoreFrom), deletes
//     it and checkpoints, as for a Checkpointer's whole state in one
//     frame. A snapshot raft does not take (stale) has its file deleted at
//     the next cycle.
//   - Failures: a transfer whose sender stops sending for
//     SnapshotIdleTimeout, that a newer transfer of the same group from the
//     same node replaces, that arrives out of order or that fails its
//     checksum is dropped with its file; the sender learns it from the
//     answer (or its absence) and reports the failure. The spool directory
//     is emptied when the host starts, so a node that stopped midway keeps
//     nothing of it. Nothing reaches the state machine before the whole
//     stream is on disk and verified.
//
// Memory on either side is a few chunks, whatever the state's size. Frames
// (KindSnapshot):
//
//	op 'A'  announce (one-way): epoch uvarint (the sender's run, as in its
//	        beats). The sender takes chunked snapshots. Sent once per
//	        connection and peer run, as heartbeats.go's announce; it holds
//	        for that run only (a quick restart may bring up an older
//	        version: its beats' new epoch is told before the run
//	        announces anything). A node of an older version drops the
//	        kind, is never announced as taking them, and gets the whole
//	        state in one MsgSnap as before.
//	op 'C'  chunk (request): xfer uint64 BE (the transfer, random),
//	        group uvarint, seq uvarint (0, 1, ...), last uint8; on the last
//	        chunk: size uvarint (bytes in the stream), crc uint32 BE
//	        (CRC-32C of the stream), msgLen uvarint, msg (the MsgSnap,
//	        protobuf, its snapshot data empty); then the chunk's bytes.
//	op 'X'  abort (one-way): xfer uint64 BE. The sender gave up.

// KindSnapshot is the transport kind of chunked snapshot frames.
const KindSnapshot = transport.FirstUserKind + 4

const (
	snapOpAnnounce = 'A'
	snapOpChunk    = 'C'
	snapOpAbort    = 'X'
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// snapFrame is a decoded KindSnapshot frame.
type snapFrame struct {
	op    byte
	epoch uint64 // announce
	xfer  uint64
	group uint64
	seq   uint64
	last  bool
	size  uint64      // last chunk
	crc   uint32      // last chunk
	msg   *pb.Message // last chunk
	data  []byte
}

var errSnapFrame = errors.New("multiraft: malformed snapshot frame")

// appendSnapChunkHeader appends a chunk frame's header (everything but the
// data) to dst.
func appendSnapChunkHeader(dst []byte, f *snapFrame) ([]byte, error) {
	dst = append(dst, snapOpChunk)
	dst = binary.BigEndian.AppendUint64(dst, f.xfer)
	dst = binary.AppendUvarint(dst, f.group)
	dst = binary.AppendUvarint(dst, f.seq)
	if !f.last {
		return append(dst, 0), nil
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, f.size)
	dst = binary.BigEndian.AppendUint32(dst, f.crc)
	opts := proto.MarshalOptions{}
	dst = binary.AppendUvarint(dst, uint64(opts.Size(f.msg)))
	return opts.MarshalAppend(dst, f.msg)
}

// decodeSnapFrame decodes a KindSnapshot payload; data aliases b.
func decodeSnapFrame(b []byte) (snapFrame, error) {
	var f snapFrame
	if len(b) == 0 {
		return f, errSnapFrame
	}
	f.op, b = b[0], b[1:]
	switch f.op {
	case snapOpAnnounce:
		epoch, n := binary.Uvarint(b)
		if n <= 0 || n != len(b) {
			return f, errSnapFrame
		}
		f.epoch = epoch
		return f, nil
	case snapOpAbort, snapOpChunk:
	default:
		return f, fmt.Errorf("%w: op %d", errSnapFrame, f.op)
	}
	if len(b) < 8 {
		return f, errSnapFrame
	}
	f.xfer, b = binary.BigEndian.Uint64(b), b[8:]
	if f.op == snapOpAbort {
		if len(b) != 0 {
			return f, errSnapFrame
		}
		return f, nil
	}
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	var ok bool
	if f.group, ok = uv(); !ok {
		return f, errSnapFrame
	}
	if f.seq, ok = uv(); !ok || len(b) == 0 {
		return f, errSnapFrame
	}
	switch b[0] {
	case 0:
		b = b[1:]
	case 1:
		f.last, b = true, b[1:]
		if f.size, ok = uv(); !ok || len(b) < 4 {
			return f, errSnapFrame
		}
		f.crc, b = binary.BigEndian.Uint32(b), b[4:]
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return f, errSnapFrame
		}
		f.msg = &pb.Message{}
		if err := proto.Unmarshal(b[:n], f.msg); err != nil {
			return f, fmt.Errorf("%w: %w", errSnapFrame, err)
		}
		if f.msg.GetType() != pb.MsgSnap || f.msg.Snapshot == nil || f.msg.Snapshot.Metadata == nil {
			return f, fmt.Errorf("%w: not a snapshot message", errSnapFrame)
		}
		b = b[n:]
	default:
		return f, fmt.Errorf("%w: last %d", errSnapFrame, b[0])
	}
	f.data = b
	return f, nil
}

// takesChunks reports whether peer to announced that it takes chunked
// snapshots, and announces this node to it if it has not yet.
func (h *Host) takesChunks(to uint64) bool {
	if h.cfg.DisableChunkedSnapshots {
		return false
	}
	p := h.peer(to)
	if p == nil {
		return false
	}
	h.announceChunks(to, p)
	run := p.chunkedRun.Load()
	epoch := p.epoch.Load() // 0 without quiescence's beats
	return run != 0 && (epoch == 0 || epoch == run)
}

func (h *Host) announceChunks(to uint64, p *peerState) {
	if !h.cfg.DisableChunkedSnapshots && !p.snapAnnounced.Load() {
		if h.tr.Send(to, KindSnapshot, binary.AppendUvarint([]byte{snapOpAnnounce}, h.epoch)) == nil {
			p.snapAnnounced.Store(true)
		}
	}
}

// streamSnapshot starts sending g's whole state to the follower m is for,
// in chunks, from a goroutine of its own. Called by the ready loop instead
// of sending m; false: no transfer started (raft is to be told it failed).
func (h *Host) streamSnapshot(g *Group, st SnapshotStreamer, m *pb.Message) bool {
	to := m.GetTo()
	select {
	case h.sendSlots <- struct{}{}:
	default:
		h.log.Debug("snapshot for a follower deferred: too many being sent", zap.Uint64("group", g.id), zap.Uint64("to", to))
		return false
	}
	applied := g.applied.Load()
	term, err := g.storage.Term(applied)
	var src SnapshotSource
	if err == nil {
		src, err = st.OpenSnapshot()
	}
	if err != nil {
		<-h.sendSlots
		h.log.Warn("snapshot for a follower failed", zap.Uint64("group", g.id), zap.Uint64("to", to), zap.Error(err))
		return false
	}
	cs := g.confState
	if cs == nil {
		_, cs, _ = g.storage.InitialState()
	}
	msg := &pb.Message{
		Type: pb.MsgSnap.Enum(), From: m.From, To: m.To, Term: m.Term,
		Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(applied), Term: new(term), ConfState: cs}},
	}
	g.mu.Lock()
	if g.pins == nil {
		g.pins = map[uint64]uint64{}
	}
	g.pins[to] = applied
	g.mu.Unlock()
	h.sendWG.Add(1)
	go func() {
		defer h.sendWG.Done()
		h.runSnapshotSend(g, src, msg)
	}()
	return true
}

// runSnapshotSend writes src to the follower in chunks and reports the
// outcome to raft.
func (h *Host) runSnapshotSend(g *Group, src SnapshotSource, msg *pb.Message) {
	to := msg.GetTo()
	start := time.Now()
	w := &chunkWriter{h: h, g: g, to: to, hdr: snapFrame{xfer: randomID(), group: g.id}}
	w.buf = make([]byte, 0, h.cfg.SnapshotChunkSize)
	_, err := src.WriteTo(w)
	src.Close()
	if err == nil {
		w.hdr.last, w.hdr.size, w.hdr.crc, w.hdr.msg = true, w.size, w.crc, msg
		err = w.flush()
	}
	<-h.sendSlots
	status := raft.SnapshotFinish
	if err != nil {
		status = raft.SnapshotFailure
		if w.sent > 0 {
			_ = h.tr.Send(to, KindSnapshot, binary.BigEndian.AppendUint64([]byte{snapOpAbort}, w.hdr.xfer))
		}
		h.log.Info("snapshot for a follower failed; raft sends it again", zap.Uint64("group", g.id), zap.Uint64("to", to),
			zap.Uint64("bytes", w.size), zap.Error(err))
	} else {
		h.streamed.Add(1)
		h.log.Info("snapshot sent to a follower", zap.Uint64("group", g.id), zap.Uint64("to", to),
			zap.Uint64("index", msg.Snapshot.Metadata.GetIndex()), zap.Uint64("bytes", w.size),
			zap.Uint64("chunks", w.hdr.seq), zap.Duration("took", time.Since(start)))
	}
	g.mu.Lock()
	delete(g.pins, to)
	if g.stopErr == nil {
		g.rn.ReportSnapshot(to, status)
	}
	g.mu.Unlock()
	h.markReady(g)
}

// chunkWriter sends what is written to it as chunk requests of
// SnapshotChunkSize bytes, one at a time.
type chunkWriter struct {
	h    *Host
	g    *Group
	to   uint64
	hdr  snapFrame // seq is the next chunk's
	buf  []byte
	out  []byte
	size uint64
	crc  uint32
	sent int
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.size += uint64(n)
	w.crc = crc32.Update(w.crc, crcTable, p)
	for len(p) > 0 {
		k := min(len(p), cap(w.buf)-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flush sends the buffered bytes as the next chunk and waits for its
// answer.
func (w *chunkWriter) flush() error {
	h := w.h
	w.g.mu.Lock()
	err := w.g.stopErr
	w.g.mu.Unlock()
	if err != nil {
		return err
	}
	w.out, err = appendSnapChunkHeader(w.out[:0], &w.hdr)
	if err != nil {
		return err
	}
	w.out = append(w.out, w.buf...)
	ctx, cancel := context.WithTimeout(h.sendCtx, h.cfg.SnapshotIdleTimeout)
	_, err = h.tr.Request(ctx, w.to, KindSnapshot, w.out)
	cancel()
	w.sent++
	if err != nil {
		var re *transport.RemoteError
		if errors.As(err, &re) && strings.HasPrefix(re.Text, "no handler for frame kind") {
			// A node of an older version behind the same ID: it gets
			// snapshots in one frame from now on.
			if p := h.peer(w.to); p != nil {
				p.chunkedRun.Store(0)
			}
		}
		return fmt.Errorf("chunk %d: %w", w.hdr.seq, err)
	}
	w.hdr.seq++
	w.buf = w.buf[:0]
	return nil
}

func randomID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// snapRecv is one incoming transfer, served by its own goroutine.
type snapRecv struct {
	from, xfer, group uint64
	ch                chan recvChunk // the next chunk; the sender waits for each answer
	stop              chan struct{}  // closed to drop the transfer
	stopped           bool           // Host.recvMu must be held
}

type recvChunk struct {
	f     snapFrame
	reply func([]byte, error)
}

// spooled is a complete snapshot on disk that the group's raft was given
// under token (as the snapshot's data).
type spooled struct {
	path  string
	token []byte
}

// spoolDir is where incoming snapshots are written.
func (h *Host) spoolDir() string { return filepath.Join(h.cfg.Dir, "spool") }

// onSnapshot handles a KindSnapshot frame (the transport's reader
// goroutine for that peer): it never waits for the disk.
func (h *Host) onSnapshot(from uint64, payload []byte, reply func([]byte, error)) {
	fail := func(err error) {
		if reply != nil {
			reply(nil, err)
		}
	}
	if h.closed.Load() {
		fail(ErrClosed)
		return
	}
	f, err := decodeSnapFrame(payload)
	if err != nil {
		h.log.Warn("bad snapshot frame", zap.Uint64("peer", from), zap.Error(err))
		fail(err)
		return
	}
	switch f.op {
	case snapOpAnnounce:
		if p := h.peer(from); p != nil {
			p.chunkedRun.Store(f.epoch)
		}
		return
	case snapOpAbort:
		h.recvMu.Lock()
		if r := h.recvs[[2]uint64{from, f.xfer}]; r != nil {
			h.dropRecvLocked(r)
		}
		h.recvMu.Unlock()
		return
	}
	if reply == nil {
		return // chunks are requests
	}
	key := [2]uint64{from, f.xfer}
	h.recvMu.Lock()
	r := h.recvs[key]
	if f.seq == 0 && r == nil {
		g := h.Group(f.group)
		if g == nil {
			h.recvMu.Unlock()
			if h.cfg.OnUnknownGroup != nil {
				h.cfg.OnUnknownGroup(f.group, from)
			}
			fail(fmt.Errorf("multiraft: group %d not running on node %d", f.group, h.cfg.NodeID))
			return
		}
		if _, ok := g.sm.(SnapshotStreamer); !ok {
			h.recvMu.Unlock()
			fail(fmt.Errorf("multiraft: group %d takes no streamed snapshot on node %d", f.group, h.cfg.NodeID))
			return
		}
		// A newer transfer of the group from the same node replaces an
		// older one: its sender gave up on it.
		for _, o := range h.recvs {
			if o.from == from && o.group == f.group {
				h.dropRecvLocked(o)
			}
		}
		if len(h.recvs) >= h.cfg.SnapshotReceives {
			h.recvMu.Unlock()
			fail(errors.New("multiraft: too many snapshots being received"))
			return
		}
		r = &snapRecv{from: from, xfer: f.xfer, group: f.group, ch: make(chan recvChunk, 1), stop: make(chan struct{})}
		h.recvs[key] = r
		h.recvWG.Add(1)
		go func() {
			defer h.recvWG.Done()
			h.runSnapshotRecv(r)
		}()
	}
	h.recvMu.Unlock()
	if r == nil {
		fail(fmt.Errorf("multiraft: unknown snapshot transfer %x from node %d", f.xfer, from))
		return
	}
	select {
	case r.ch <- recvChunk{f: f, reply: reply}:
	default:
		fail(errors.New("multiraft: snapshot chunk sent before the previous one was answered"))
	}
}

// dropRecvLocked stops transfer r. Host.recvMu must be held.
func (h *Host) dropRecvLocked(r *snapRecv) {
	if !r.stopped {
		r.stopped = true
		close(r.stop)
	}
	delete(h.recvs, [2]uint64{r.from, r.xfer})
}

// runSnapshotRecv spools transfer r's chunks to a file and, once it is
// whole, hands its MsgSnap to the group.
func (h *Host) runSnapshotRecv(r *snapRecv) {
	var file *os.File
	var bw *bufio.Writer
	var size uint64
	var crc uint32
	handed := false
	defer func() {
		if file != nil {
			file.Close()
			if !handed {
				os.Remove(file.Name())
			}
		}
		h.recvMu.Lock()
		h.dropRecvLocked(r)
		h.recvMu.Unlock()
	}()
	idle := time.NewTimer(h.cfg.SnapshotIdleTimeout)
	defer idle.Stop()
	var next uint64
	for {
		var c recvChunk
		select {
		case <-h.stop:
			return
		case <-r.stop:
			return
		case <-idle.C:
			h.log.Info("snapshot transfer abandoned by its sender", zap.Uint64("group", r.group), zap.Uint64("from", r.from), zap.Uint64("bytes", size))
			return
		case c = <-r.ch:
		}
		f := c.f
		err := func() error {
			if f.seq != next {
				return fmt.Errorf("multiraft: snapshot chunk %d, expected %d", f.seq, next)
			}
			if file == nil {
				var err error
				if file, err = os.CreateTemp(h.spoolDir(), fmt.Sprintf("%016x-*.snap", r.group)); err != nil {
					return err
				}
				bw = bufio.NewWriterSize(file, 256<<10)
			}
			if _, err := bw.Write(f.data); err != nil {
				return err
			}
			size += uint64(len(f.data))
			crc = crc32.Update(crc, crcTable, f.data)
			next++
			if !f.last {
				return nil
			}
			if f.size != size || f.crc != crc {
				return fmt.Errorf("multiraft: snapshot of %d bytes, crc %08x; sender sent %d, crc %08x", size, crc, f.size, f.crc)
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if err := file.Close(); err != nil {
				return err
			}
			path := file.Name()
			file = nil
			if err := h.handSpooled(r, f.msg, path); err != nil {
				os.Remove(path)
				return err
			}
			handed = true
			h.log.Info("snapshot received", zap.Uint64("group", r.group), zap.Uint64("from", r.from),
				zap.Uint64("index", f.msg.Snapshot.Metadata.GetIndex()), zap.Uint64("bytes", size))
			return nil
		}()
		c.reply(nil, err)
		if err != nil {
			h.log.Warn("snapshot transfer dropped", zap.Uint64("group", r.group), zap.Uint64("from", r.from), zap.Error(err))
			return
		}
		if f.last {
			return
		}
		idle.Reset(h.cfg.SnapshotIdleTimeout)
	}
}

// handSpooled steps a received MsgSnap into its group, its snapshot's data
// a token naming the spooled file.
func (h *Host) handSpooled(r *snapRecv, m *pb.Message, path string) error {
	if m.GetFrom() != r.from || m.GetTo() != h.cfg.NodeID {
		return fmt.Errorf("multiraft: snapshot from %d to %d on a transfer from node %d", m.GetFrom(), m.GetTo(), r.from)
	}
	g := h.Group(r.group)
	if g == nil {
		return fmt.Errorf("multiraft: group %d stopped", r.group)
	}
	sp := &spooled{path: path, token: fmt.Appendf(nil, "\x00spool %016x %016x", r.from, r.xfer)}
	m.Snapshot.Data = sp.token
	g.mu.Lock()
	if g.stopErr != nil {
		g.mu.Unlock()
		return g.stopErr
	}
	old := g.spool
	g.spool = sp
	h.stepLocked(g, m)
	g.mu.Unlock()
	if old != nil {
		os.Remove(old.path)
	}
	h.spooledIn.Add(1)
	h.markReady(g)
	return nil
}

// takeSpooled returns the spooled snapshot rd carries, if any, and forgets
// g's spooled file: raft either handed it back in rd or did not take it
// (then the file is deleted). g.mu must be held; rd was taken under it.
func (g *Group) takeSpooledLocked(rd *raft.Ready, has bool) *spooled {
	sp := g.spool
	if sp == nil {
		return nil
	}
	g.spool = nil
	if has && rd.Snapshot != nil && bytes.Equal(rd.Snapshot.GetData(), sp.token) {
		return sp
	}
	os.Remove(sp.path)
	return nil
}

// restoreSpooled restores a SnapshotStreamer from a spooled snapshot, deletes
// the file and returns the snapshot with the state machine's checkpoint as
// its data.
func (h *Host) restoreSpooled(g *Group, cp Checkpointer, sp *spooled, snap *pb.Snapshot) (*pb.Snapshot, error) {
	defer os.Remove(sp.path)
	st, ok := cp.(SnapshotStreamer)
	if !ok {
		return nil, fmt.Errorf("group %d: a streamed snapshot for a state machine that takes none", g.id)
	}
	start := time.Now()
	f, err := os.Open(sp.path)
	if err != nil {
		return nil, fmt.Errorf("group %d: %w", g.id, err)
	}
	err = st.RestoreFrom(bufio.NewReaderSize(f, 256<<10))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("group %d: restore streamed snapshot: %w", g.id, err)
	}
	data, err := cp.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("group %d: checkpoint after a snapshot: %w", g.id, err)
	}
	h.log.Info("snapshot restored", zap.Uint64("group", g.id), zap.Uint64("index", snap.GetMetadata().GetIndex()),
		zap.Duration("took", time.Since(start)))
	return &pb.Snapshot{Data: data, Metadata: snap.GetMetadata()}, nil
}

// resetSpool empties the spool directory: what a run left there is of
// transfers that did not finish.
func resetSpool(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.MkdirAll(dir, 0o755)
}
