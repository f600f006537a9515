package multiraft

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/cluster/transport"
	"github.com/warren-mq/warren/cluster/wal"
)

// KindRaft is the transport frame kind of Raft message batches.
const KindRaft = transport.FirstUserKind

// Config configures a Host. Zero values take the defaults in brackets.
type Config struct {
	// NodeID is this node's ID, the same as the transport's; never 0.
	NodeID uint64
	// Dir holds the WAL segments and the snapshot files.
	Dir string
	// Transport carries Raft batches; the host registers KindRaft on it.
	// The caller owns it: close the transport before the host.
	Transport *transport.Transport
	// Logger [zap.NewNop()].
	Logger *zap.Logger

	// TickInterval is one Raft tick [100 ms]. ElectionTicks [10] and
	// HeartbeatTicks [1] count ticks.
	TickInterval                  time.Duration
	ElectionTicks, HeartbeatTicks int
	// MaxSizePerMsg [1 MiB] and MaxInflightMsgs [256] shape replication.
	MaxSizePerMsg   uint64
	MaxInflightMsgs int

	// SegmentSize is the WAL segment size [64 MiB].
	SegmentSize int64
	// SnapshotEntries: a group takes a snapshot after this many entries
	// applied since its last one [10000].
	SnapshotEntries uint64
	// CompactKeep: entries kept in memory below a snapshot so slightly slow
	// followers catch up without one [1000]; negative keeps none.
	CompactKeep int
	// CompactHold: a leader keeps up to this many more entries in memory
	// below a snapshot for a live follower that has not got them yet, so a
	// follower that falls behind a busy leader for a moment catches up from
	// the log, not by a snapshot of the whole state [65536].
	CompactHold int

	// DisableQuiescence keeps every group ticking (and its leader
	// heartbeating) even when it has nothing to do. By default an idle group
	// quiesces after QuiesceTicks [3] idle ticks (see doc.go).
	DisableQuiescence bool
	QuiesceTicks      int
	// DisableCoalescing sends every heartbeat as its own Raft message
	// instead of coalescing them per peer (heartbeats.go); such a node also
	// behaves as one of a version without coalescing.
	DisableCoalescing bool

	// SnapshotChunkSize is the size of the chunks a SnapshotStreamer's
	// state travels in to a follower [1 MiB, or WARREN_RAFT_SNAPSHOT_CHUNK
	// bytes when set, for tests]; see snapstream.go.
	SnapshotChunkSize int
	// MaxSnapshotFrame bounds a Checkpointer's whole state sent in one
	// frame, to a peer that takes no chunked snapshots [the transport's
	// MaxFrameSize less 64 KiB, or WARREN_RAFT_SNAPSHOT_FRAME_MAX bytes
	// when set, for tests]: a larger one is not sent and raft tries again
	// later.
	MaxSnapshotFrame int
	// SnapshotSends and SnapshotReceives bound the chunked snapshot
	// transfers under way at once from and to this node [2 and 4].
	SnapshotSends, SnapshotReceives int
	// SnapshotIdleTimeout: a transfer whose chunk waits this long for its
	// answer, or whose next chunk does not come within it, fails [30 s].
	SnapshotIdleTimeout time.Duration
	// DisableChunkedSnapshots sends every snapshot in one frame and takes
	// no chunked one, as a node of a version before them.
	DisableChunkedSnapshots bool

	// OnUnknownGroup, if set, is called (on a transport goroutine, without
	// locks) when a Raft message arrives for a group this host does not run,
	// e.g. so the broker can start a replica it was just added to.
	OnUnknownGroup func(group, from uint64)

	// beforeSync, in tests, is called by the ready loop before each WAL
	// write that is synced, after the early sends; an error fails the host
	// as a failed write would.
	beforeSync func() error
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.QuiesceTicks == 0 {
		c.QuiesceTicks = 3
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = 256
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.CompactKeep == 0 {
		c.CompactKeep = 1000
	}
	if c.CompactKeep < 0 {
		c.CompactKeep = 0
	}
	if c.CompactHold == 0 {
		c.CompactHold = 65536
	}
	if c.CompactHold < 0 {
		c.CompactHold = 0
	}
	if c.SnapshotChunkSize == 0 {
		c.SnapshotChunkSize = envInt("WARREN_RAFT_SNAPSHOT_CHUNK", 1<<20)
	}
	if c.MaxSnapshotFrame == 0 {
		c.MaxSnapshotFrame = envInt("WARREN_RAFT_SNAPSHOT_FRAME_MAX", 0)
	}
	if c.MaxSnapshotFrame == 0 && c.Transport != nil {
		c.MaxSnapshotFrame = int(c.Transport.MaxFrameSize()) - 64<<10
	}
	if c.SnapshotSends == 0 {
		c.SnapshotSends = 2
	}
	if c.SnapshotReceives == 0 {
		c.SnapshotReceives = 4
	}
	if c.SnapshotIdleTimeout == 0 {
		c.SnapshotIdleTimeout = 30 * time.Second
	}
}

// envInt reads a positive integer from the environment variable name, or
// returns def. Such variables are test knobs, not settings.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// Stats are a Host's counters: cumulative but for Groups, Quiesced and
// PeersDown, which are gauges.
type Stats struct {
	WAL      wal.Stats
	Cycles   uint64 // ready-loop iterations that did work
	Applied  uint64 // entries applied to state machines
	Messages uint64 // Raft messages sent
	// EarlyMessages: those of Messages a leader sent before its cycle's WAL
	// write was synced (appends and heartbeats; see doc.go).
	EarlyMessages uint64
	Frames        uint64 // transport frames of Raft messages sent (one per peer per cycle)
	SendFailures  uint64 // messages reported unreachable
	SkippedTicks  uint64 // ticks skipped while a ready cycle ran long
	Snapshots     uint64 // snapshots taken
	Restores      uint64 // snapshots received and restored
	// StreamedSnapshots: snapshots sent to followers in chunks and taken
	// by them; SpooledSnapshots: snapshots received in chunks, handed to
	// raft (snapstream.go).
	StreamedSnapshots, SpooledSnapshots uint64

	Groups   int    // groups running
	Quiesced int    // groups quiesced now
	Ticks    uint64 // group ticks (one per active group per host tick)
	Quiesces uint64 // times a group quiesced
	Wakes    uint64 // times a quiesced group woke up
	Beats    uint64 // liveness beats sent (frames of no message)
	// Heartbeats: plain heartbeats and responses sent coalesced
	// (heartbeats.go), counted in Messages too.
	Heartbeats uint64
	PeersDown  int // peer nodes judged down now
}

// Host runs every Raft group of one node with a fixed set of goroutines: a
// ticker and a ready loop (see doc.go).
type Host struct {
	cfg     Config
	log     *zap.Logger
	raftLog raftLogger
	wal     *wal.WAL
	tr      *transport.Transport
	seq     atomic.Uint64 // last proposal number
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	failed  atomic.Pointer[error]

	cycles, applied, messages, frames, sendFailures, snapshots, restores, skippedTicks atomic.Uint64
	heartbeats, streamed, spooledIn, early                                             atomic.Uint64
	groupTicks, quiesces, wakes, beats                                                 atomic.Uint64
	nQuiesced                                                                          atomic.Int64
	tickNo                                                                             atomic.Uint64 // host ticks so far

	// inCycle and cyclesDone let the ticker see a ready cycle longer than a
	// tick: it then skips the tick rather than let elections and CheckQuorum
	// fire on a node too busy to have read its peers' answers.
	inCycle    atomic.Bool
	cyclesDone atomic.Uint64

	mu        sync.RWMutex
	groups    map[uint64]*Group          // Lock must be held.
	list      []*Group                   // the same groups, for the ticker. Lock must be held.
	recovered map[uint64]*wal.GroupState // replayed, not yet started. Lock must be held.
	removals  []uint64                   // groups to record as removed. Lock must be held.

	readyMu sync.Mutex
	ready   []*Group      // groups with possible work. readyMu must be held.
	kick    chan struct{} // 1-slot: ready is not empty

	activeMu sync.Mutex
	active   []*Group // groups not quiesced: the ones the ticker ticks. activeMu must be held.

	peersMu sync.RWMutex
	peers   map[uint64]*peerState // liveness of the nodes this one exchanges Raft frames with. peersMu must be held.
	beat    []byte                // this run's liveness beat payload
	epoch   uint64                // this run's epoch, in its beats

	// Chunked snapshots (snapstream.go).
	sendSlots  chan struct{}   // one per transfer being sent
	sendCtx    context.Context // ends at Close
	sendCancel context.CancelFunc
	sendWG     sync.WaitGroup
	recvMu     sync.Mutex
	recvs      map[[2]uint64]*snapRecv // by sender and transfer. recvMu must be held.
	recvWG     sync.WaitGroup

	// Owned by the ready loop.
	batch    wal.Batch
	work     []work
	out      map[uint64][]groupMsg
	sendBuf  []byte
	hbBuf    []byte // coalesced heartbeats (heartbeats.go)
	markers  []marker
	lastSegs int
}

type work struct {
	g        *Group
	rd       raft.Ready
	has      bool
	early    bool          // rd.Messages go out before the WAL write is synced (see sendsEarly)
	restored bool          // the state machine has rd.Snapshot already (a Checkpointer)
	spool    *spooled      // rd.Snapshot's state, spooled (snapstream.go)
	extra    []*pb.Message // quiesce notices and wake requests, sent after rd.Messages
	snapReqs []chan error
}

type marker struct{ group, index, term uint64 }

// NewHost opens the WAL in cfg.Dir, replays it, and starts the host's
// goroutines. Groups found in the WAL wait for StartGroup to get their state
// machines; RecoveredGroups lists them.
func NewHost(cfg Config) (*Host, error) {
	cfg.setDefaults()
	if cfg.NodeID == 0 || cfg.Transport == nil || cfg.Dir == "" {
		return nil, errors.New("multiraft: NodeID, Transport and Dir are required")
	}
	log := cfg.Logger.With(zap.Uint64("node", cfg.NodeID))
	w, states, err := wal.Open(cfg.Dir, wal.Options{SegmentSize: cfg.SegmentSize, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("multiraft: %w", err)
	}
	if err := resetSpool(filepath.Join(cfg.Dir, "spool")); err != nil {
		w.Close()
		return nil, fmt.Errorf("multiraft: %w", err)
	}
	h := &Host{
		cfg:       cfg,
		sendSlots: make(chan struct{}, cfg.SnapshotSends),
		recvs:     make(map[[2]uint64]*snapRecv),
		log:       log,
		raftLog:   newRaftLogger(log),
		wal:       w,
		tr:        cfg.Transport,
		stop:      make(chan struct{}),
		groups:    make(map[uint64]*Group),
		recovered: states,
		kick:      make(chan struct{}, 1),
		out:       make(map[uint64][]groupMsg),
		peers:     make(map[uint64]*peerState),
	}
	// Proposal numbers must not repeat across restarts: an entry proposed
	// before a restart may be applied after it.
	h.seq.Store(uint64(time.Now().UnixNano()))
	h.epoch = h.seq.Load() | 1 // any unique non-zero number
	h.beat = appendBeat(nil, h.epoch)
	h.tr.Handle(KindRaft, h.onRaft)
	if !cfg.DisableCoalescing {
		h.tr.Handle(KindHeartbeats, h.onHeartbeats)
	}
	h.sendCtx, h.sendCancel = context.WithCancel(context.Background())
	if !cfg.DisableChunkedSnapshots {
		h.tr.Handle(KindSnapshot, h.onSnapshot)
	}
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		h.tickLoop()
	}()
	go func() {
		defer h.wg.Done()
		h.readyLoop()
	}()
	return h, nil
}

// RecoveredGroups returns the IDs of groups replayed from the WAL that have
// not been started yet.
func (h *Host) RecoveredGroups() []uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	ids := make([]uint64, 0, len(h.recovered))
	for id := range h.recovered {
		ids = append(ids, id)
	}
	return ids
}

// Group returns a started group, or nil.
func (h *Host) Group(id uint64) *Group {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.groups[id]
}

// StartGroup starts group id on this node with sm as its state machine.
//   - If the WAL holds the group, it restarts from there: sm is restored from
//     the group's snapshot and the entries after it are applied again;
//     peers is ignored.
//   - Otherwise, with peers (node IDs, this node included), it bootstraps a
//     new group; every initial member must pass the same peers.
//   - Otherwise (no peers) it starts empty, to join a group that adds this
//     node with AddNode; the leader then sends it the log or a snapshot.
func (h *Host) StartGroup(id uint64, peers []uint64, sm StateMachine) (*Group, error) {
	if err := h.usable(); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.groups[id] != nil {
		return nil, fmt.Errorf("%w: %d", ErrGroupExists, id)
	}
	g := &Group{
		id:        id,
		h:         h,
		sm:        sm,
		storage:   raft.NewMemoryStorage(),
		waiters:   make(map[uint64]func(Result)),
		leadCh:    make(chan struct{}),
		activeIdx: -1,
	}
	var applied uint64
	if rs := h.recovered[id]; rs != nil {
		if rs.Snapshot != nil {
			if err := g.storage.ApplySnapshot(rs.Snapshot); err != nil {
				return nil, fmt.Errorf("multiraft: group %d: %w", id, err)
			}
			if err := sm.Restore(rs.Snapshot.GetData()); err != nil {
				return nil, fmt.Errorf("multiraft: group %d: restore: %w", id, err)
			}
			applied = rs.Snapshot.GetMetadata().GetIndex()
			g.confState = rs.Snapshot.GetMetadata().GetConfState()
		}
		if rs.HardState != nil {
			if err := g.storage.SetHardState(rs.HardState); err != nil {
				return nil, fmt.Errorf("multiraft: group %d: %w", id, err)
			}
			g.hsTerm, g.hsVote = rs.HardState.GetTerm(), rs.HardState.GetVote()
		}
		if err := g.storage.Append(rs.Entries); err != nil {
			return nil, fmt.Errorf("multiraft: group %d: %w", id, err)
		}
	}
	g.applied.Store(applied)
	g.snapIndex = applied
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        h.cfg.NodeID,
		ElectionTick:              h.cfg.ElectionTicks,
		HeartbeatTick:             h.cfg.HeartbeatTicks,
		Storage:                   g.storage,
		Applied:                   applied,
		MaxSizePerMsg:             h.cfg.MaxSizePerMsg,
		MaxInflightMsgs:           h.cfg.MaxInflightMsgs,
		MaxUncommittedEntriesSize: 64 << 20,
		CheckQuorum:               true,
		PreVote:                   true,
		DisableProposalForwarding: true,
		StepDownOnRemoval:         true,
		Logger:                    h.raftLog,
	})
	if err != nil {
		return nil, fmt.Errorf("multiraft: group %d: %w", id, err)
	}
	if h.recovered[id] == nil && len(peers) > 0 {
		rp := make([]raft.Peer, len(peers))
		for i, p := range peers {
			rp[i] = raft.Peer{ID: p}
		}
		if err := rn.Bootstrap(rp); err != nil {
			return nil, fmt.Errorf("multiraft: group %d: bootstrap: %w", id, err)
		}
	}
	delete(h.recovered, id)
	g.rn = rn
	h.groups[id] = g
	h.list = append(h.list, g)
	h.activate(g)
	if h.quiescence() {
		for _, p := range peers {
			h.peer(p)
		}
	}
	h.markReady(g)
	return g, nil
}

// RemoveGroup stops a group on this node and records its removal in the
// WAL, so it is not recovered again; its snapshot file is deleted. Use it
// after the group removed this node, or when the group is deleted.
func (h *Host) RemoveGroup(id uint64) error {
	h.mu.Lock()
	g := h.groups[id]
	delete(h.groups, id)
	delete(h.recovered, id)
	for i, x := range h.list {
		if x == g {
			h.list = append(h.list[:i], h.list[i+1:]...)
			break
		}
	}
	h.removals = append(h.removals, id)
	h.mu.Unlock()
	if g != nil {
		g.stopWith(fmt.Errorf("%w: %d", ErrGroupStopped, id))
		g.mu.Lock()
		if g.spool != nil {
			os.Remove(g.spool.path)
			g.spool = nil
		}
		g.mu.Unlock()
	}
	h.kickLoop()
	return nil
}

// Stats returns the host's counters.
func (h *Host) Stats() Stats {
	h.mu.RLock()
	groups := len(h.list)
	h.mu.RUnlock()
	down := 0
	h.peersMu.RLock()
	for _, p := range h.peers {
		if p.down.Load() {
			down++
		}
	}
	h.peersMu.RUnlock()
	return Stats{
		Groups:        groups,
		Quiesced:      int(h.nQuiesced.Load()),
		Ticks:         h.groupTicks.Load(),
		Quiesces:      h.quiesces.Load(),
		Wakes:         h.wakes.Load(),
		Beats:         h.beats.Load(),
		Heartbeats:    h.heartbeats.Load(),
		PeersDown:     down,
		WAL:           h.wal.Stats(),
		Cycles:        h.cycles.Load(),
		Applied:       h.applied.Load(),
		Messages:      h.messages.Load(),
		EarlyMessages: h.early.Load(),
		Frames:        h.frames.Load(),
		SendFailures:  h.sendFailures.Load(),
		SkippedTicks:  h.skippedTicks.Load(),
		Snapshots:     h.snapshots.Load(),
		Restores:      h.restores.Load(),

		StreamedSnapshots: h.streamed.Load(),
		SpooledSnapshots:  h.spooledIn.Load(),
	}
}

// Close stops the host's goroutines, fails every waiting proposal with
// ErrClosed and closes the WAL. Close the transport first, so no Raft batch
// arrives during Close.
func (h *Host) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(h.stop)
	h.sendCancel()
	h.wg.Wait()
	h.sendWG.Wait()
	h.recvWG.Wait()
	h.mu.Lock()
	groups := h.list
	h.list, h.groups = nil, map[uint64]*Group{}
	h.mu.Unlock()
	for _, g := range groups {
		g.stopWith(ErrClosed)
	}
	return h.wal.Close()
}

func (h *Host) usable() error {
	if h.closed.Load() {
		return ErrClosed
	}
	if p := h.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// fail stops the host after a storage failure: nothing can be made durable
// any more, so no group may go on acknowledging. Called by the ready loop.
func (h *Host) fail(err error) {
	h.log.Error("raft host failed; restart the node", zap.Error(err))
	err = fmt.Errorf("multiraft: host failed: %w", err)
	h.failed.CompareAndSwap(nil, &err)
	h.mu.RLock()
	groups := append([]*Group(nil), h.list...)
	h.mu.RUnlock()
	for _, g := range groups {
		g.stopWith(err)
	}
}

// markReady queues groups for the ready loop and kicks it.
func (h *Host) markReady(gs ...*Group) {
	if len(gs) == 0 {
		return
	}
	h.readyMu.Lock()
	for _, g := range gs {
		if !g.queued {
			g.queued = true
			h.ready = append(h.ready, g)
		}
	}
	h.readyMu.Unlock()
	h.kickLoop()
}

func (h *Host) kickLoop() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// tickLoop ticks every active group once per TickInterval; an idle leader's
// group quiesces instead (see quiesce.go). With quiescence on, it first
// beats the peers and judges their liveness.
func (h *Host) tickLoop() {
	t := time.NewTicker(h.cfg.TickInterval)
	defer t.Stop()
	var list, marks []*Group
	var peers []*peerState
	var lastDone uint64
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		done := h.cyclesDone.Load()
		if h.inCycle.Load() && done == lastDone {
			h.skippedTicks.Add(1)
			continue
		}
		lastDone = done
		if h.failed.Load() != nil {
			// Its groups are stopped: no beats, so that the peers judge
			// this node down and elect leaders for the groups it led.
			continue
		}
		tick := h.tickNo.Add(1)
		quiesce := h.quiescence()
		if quiesce {
			peers = h.checkPeers(tick, peers)
		}
		h.activeMu.Lock()
		list = append(list[:0], h.active...)
		h.activeMu.Unlock()
		marks = marks[:0]
		var ticks uint64
		for _, g := range list {
			g.mu.Lock()
			if g.stopErr == nil && !g.quiesced {
				action := tickGroup
				if quiesce {
					action = g.maybeQuiesceLocked()
				}
				switch action {
				case tickGroup:
					g.rn.Tick()
					ticks++
					if g.rn.HasReady() {
						marks = append(marks, g)
					}
				case groupQuiesced:
					marks = append(marks, g) // its notices go out with the next cycle
				}
			}
			g.mu.Unlock()
		}
		h.groupTicks.Add(ticks)
		h.markReady(marks...)
		clear(list)
	}
}

// onRaft steps a batch of Raft messages from a peer into their groups. It
// runs on the transport's reader goroutine for that peer.
func (h *Host) onRaft(from uint64, payload []byte, reply func([]byte, error)) {
	if reply != nil {
		reply(nil, errors.New("raft batches are one-way"))
	}
	if h.closed.Load() {
		return
	}
	if h.quiescence() {
		if p := h.peer(from); p != nil {
			p.heard.Store(h.tickNo.Load())
		}
		if len(payload) > 0 && payload[0] == 0 { // no message: a liveness beat
			h.onBeat(from, payload)
			return
		}
	}
	msgs, err := decodeBatch(payload)
	if err != nil {
		h.log.Warn("bad raft batch", zap.Uint64("peer", from), zap.Error(err))
		return
	}
	h.step(from, msgs)
}

// step steps messages from a peer into their groups and marks them.
func (h *Host) step(from uint64, msgs []groupMsg) {
	marks := make([]*Group, 0, len(msgs))
	h.mu.RLock()
	for i := range msgs {
		msgs[i].g = h.groups[msgs[i].group]
	}
	h.mu.RUnlock()
	for _, m := range msgs {
		g := m.g
		if g == nil {
			if h.cfg.OnUnknownGroup != nil {
				h.cfg.OnUnknownGroup(m.group, from)
			}
			continue
		}
		g.mu.Lock()
		if g.stopErr == nil {
			h.stepLocked(g, m.msg)
		}
		g.mu.Unlock()
		if len(marks) == 0 || marks[len(marks)-1] != g {
			marks = append(marks, g)
		}
	}
	h.markReady(marks...)
}

// readyLoop handles the groups marked ready, batch after batch.
func (h *Host) readyLoop() {
	for {
		select {
		case <-h.stop:
			return
		case <-h.kick:
		}
		if h.failed.Load() != nil {
			continue
		}
		h.inCycle.Store(true)
		err := h.cycle()
		h.inCycle.Store(false)
		h.cyclesDone.Add(1)
		if err != nil {
			h.fail(err)
		}
	}
}

// cycle: collect a Ready from every marked group with work, persist all of
// them with one WAL write and one fsync, send all messages (one frame per
// peer), apply committed entries, Advance, then take due snapshots.
func (h *Host) cycle() error {
	h.readyMu.Lock()
	list := h.ready
	h.ready = nil
	for _, g := range list {
		g.queued = false
	}
	h.readyMu.Unlock()

	h.mu.Lock()
	removals := h.removals
	h.removals = nil
	h.mu.Unlock()

	h.work = h.work[:0]
	for _, g := range list {
		w := work{g: g}
		g.mu.Lock()
		if g.stopErr == nil {
			g.stepProposalsLocked()
			if g.rn.HasReady() {
				w.rd, w.has = g.rn.Ready(), true
				g.busy = true
				if g.quiesced {
					w.rd.Messages = dropHeartbeatResps(w.rd.Messages)
				}
			}
			w.spool = g.takeSpooledLocked(&w.rd, w.has)
			w.snapReqs, g.snapReqs = g.snapReqs, nil
			w.extra, g.outbox = g.outbox, nil
		}
		g.mu.Unlock()
		if w.has || len(w.extra) > 0 || len(w.snapReqs) > 0 || g.snapWant.Load() {
			h.work = append(h.work, w)
		}
	}
	if len(h.work) == 0 && len(removals) == 0 && len(h.markers) == 0 {
		return nil
	}
	h.cycles.Add(1)

	// A leader's appends and heartbeats go out now, while its own write
	// and fsync run (Raft thesis §10.2.1): the followers persist in
	// parallel with it. Everything else waits for the fsync below.
	early := false
	for i := range h.work {
		w := &h.work[i]
		w.early = w.sendsEarly()
		early = early || w.early
	}
	if early {
		h.send(true)
	}

	// Persist.
	h.batch.Reset()
	mustSync := false
	for _, m := range h.markers {
		h.batch.Snapshot(m.group, m.index, m.term, false)
	}
	h.markers = h.markers[:0]
	for _, id := range removals {
		h.batch.Remove(id)
	}
	for i := range h.work {
		w := &h.work[i]
		if !w.has {
			continue
		}
		rd := &w.rd
		if !raft.IsEmptySnap(rd.Snapshot) {
			if cp, ok := w.g.sm.(Checkpointer); ok {
				// Restored now and checkpointed: what is saved and kept is
				// the checkpoint, not the whole state.
				var cut *pb.Snapshot
				var err error
				if w.spool != nil {
					cut, err = h.restoreSpooled(w.g, cp, w.spool, rd.Snapshot)
				} else {
					cut, err = h.restoreCheckpointed(w.g, cp, rd.Snapshot)
				}
				if err != nil {
					return err
				}
				rd.Snapshot, w.restored = cut, true
			}
			if err := h.wal.SaveSnapshot(w.g.id, rd.Snapshot, true); err != nil {
				return err
			}
			md := rd.Snapshot.GetMetadata()
			h.batch.Snapshot(w.g.id, md.GetIndex(), md.GetTerm(), true)
			mustSync = true
		}
		if len(rd.Entries) > 0 {
			h.batch.Entries(w.g.id, rd.Entries)
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			h.batch.HardState(w.g.id, rd.HardState)
		}
		mustSync = mustSync || rd.MustSync
	}
	mustSync = mustSync || len(removals) > 0
	if mustSync && h.cfg.beforeSync != nil {
		if err := h.cfg.beforeSync(); err != nil {
			return err
		}
	}
	if err := h.wal.Append(&h.batch, mustSync); err != nil {
		return err
	}

	// Make the persisted state visible to raft's storage.
	for i := range h.work {
		w := &h.work[i]
		if !w.has {
			continue
		}
		if err := h.store(w.g, &w.rd, w.restored); err != nil {
			return err
		}
	}

	h.send(false)

	for i := range h.work {
		w := &h.work[i]
		if w.has {
			h.apply(w.g, w.rd.CommittedEntries)
		}
	}

	var again []*Group
	for i := range h.work {
		w := &h.work[i]
		if !w.has {
			continue
		}
		g := w.g
		g.mu.Lock()
		g.busy = false
		if g.stopErr == nil {
			g.rn.Advance(w.rd)
			g.afterAdvanceLocked(w.rd.SoftState)
			if g.rn.HasReady() {
				again = append(again, g)
			}
		}
		g.mu.Unlock()
	}
	h.markReady(again...)

	took := false
	for i := range h.work {
		w := &h.work[i]
		g := w.g
		if due := h.snapshotDue(g); due || len(w.snapReqs) > 0 || g.snapWant.Swap(false) {
			err := h.snapshot(g)
			for _, ch := range w.snapReqs {
				ch <- err
			}
			if err != nil {
				h.log.Error("snapshot failed", zap.Uint64("group", g.id), zap.Error(err))
				continue
			}
			took = true
		}
		h.work[i] = work{}
	}
	return h.release(took)
}

// restoreCheckpointed restores a Checkpointer from a snapshot received
// from the leader and returns the same snapshot with the state machine's
// checkpoint as its data.
func (h *Host) restoreCheckpointed(g *Group, cp Checkpointer, snap *pb.Snapshot) (*pb.Snapshot, error) {
	if err := cp.Restore(snap.GetData()); err != nil {
		return nil, fmt.Errorf("group %d: restore snapshot: %w", g.id, err)
	}
	data, err := cp.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("group %d: checkpoint after a snapshot: %w", g.id, err)
	}
	return &pb.Snapshot{Data: data, Metadata: snap.GetMetadata()}, nil
}

// fullSnapshot replaces the checkpoint in a MsgSnap to a follower by the
// whole state of the group's Checkpointer, as of its last applied entry
// (at or above the checkpoint raft picked). It reports false when there is
// none to send.
func (h *Host) fullSnapshot(g *Group, m *pb.Message) bool {
	cp, ok := g.sm.(Checkpointer)
	if !ok {
		return true
	}
	applied := g.applied.Load()
	term, err := g.storage.Term(applied)
	if err == nil {
		var data []byte
		if data, err = cp.SnapshotData(); err == nil && len(data) > h.cfg.MaxSnapshotFrame {
			err = fmt.Errorf("whole state of %d bytes, above the %d a frame carries; the follower's node takes no chunked snapshot", len(data), h.cfg.MaxSnapshotFrame)
		}
		if err == nil {
			cs := g.confState
			if cs == nil {
				_, cs, _ = g.storage.InitialState()
			}
			m.Snapshot = &pb.Snapshot{Data: data, Metadata: &pb.SnapshotMetadata{Index: new(applied), Term: new(term), ConfState: cs}}
			return true
		}
	}
	h.log.Warn("snapshot for a follower failed", zap.Uint64("group", g.id), zap.Uint64("to", m.GetTo()), zap.Error(err))
	return false
}

// store applies a persisted Ready to the group's MemoryStorage, and a
// received snapshot to its state machine (unless restored already).
func (h *Host) store(g *Group, rd *raft.Ready, restored bool) error {
	snap := !raft.IsEmptySnap(rd.Snapshot)
	g.mu.Lock()
	var err error
	if snap {
		err = g.storage.ApplySnapshot(rd.Snapshot)
	}
	if err == nil {
		err = g.storage.Append(rd.Entries)
	}
	if err == nil && !raft.IsEmptyHardState(rd.HardState) {
		err = g.storage.SetHardState(rd.HardState)
		g.hsTerm, g.hsVote = rd.HardState.GetTerm(), rd.HardState.GetVote()
	}
	g.mu.Unlock()
	if err != nil {
		return fmt.Errorf("group %d: storage: %w", g.id, err)
	}
	if snap {
		if !restored {
			if err := g.sm.Restore(rd.Snapshot.GetData()); err != nil {
				return fmt.Errorf("group %d: restore snapshot: %w", g.id, err)
			}
		}
		md := rd.Snapshot.GetMetadata()
		g.applied.Store(md.GetIndex())
		g.snapIndex = md.GetIndex()
		g.confState = md.GetConfState()
		h.restores.Add(1)
	}
	return nil
}

// sendsEarly reports whether w's messages may be sent before the cycle's
// WAL write is synced. They may when they are all appends and heartbeats
// (which only a leader sends) from a Ready that changes no Term or Vote and
// holds no snapshot: the leader then writes its own entries in parallel
// with its followers (Raft thesis §10.2.1, as etcd's server does). That is
// safe because raft counts the leader's own entries toward commitment only
// once they are persisted: its self-acknowledgement is stepped at Advance,
// after the write. Until then an entry commits only if a majority of
// voters without the leader has persisted it, so no entry is acknowledged
// that a crash of the leader could lose; and entries apply only after the
// cycle's write. raft's rule that nothing is sent before the HardState and
// the entries of earlier Readies are persisted holds: the HardState term
// and vote are unchanged, and the previous cycle's write is synced.
// Answers (MsgAppResp, votes), which speak for what this node has
// persisted, always wait for the write.
func (w *work) sendsEarly() bool {
	rd := &w.rd
	if !w.has || len(rd.Messages) == 0 || !raft.IsEmptySnap(rd.Snapshot) || w.spool != nil {
		return false
	}
	if hs := rd.HardState; !raft.IsEmptyHardState(hs) && (hs.GetTerm() != w.g.hsTerm || hs.GetVote() != w.g.hsVote) {
		return false
	}
	for _, m := range rd.Messages {
		if t := m.GetType(); t != pb.MsgApp && t != pb.MsgHeartbeat {
			return false
		}
	}
	return true
}

// send writes this cycle's messages, one frame per peer, and reports
// failures to raft. With early, it sends only the Readies' messages that
// may go out before the WAL write is synced (work.early); otherwise the
// others, and the quiesce notices and wake requests.
func (h *Host) send(early bool) {
	for i := range h.work {
		w := &h.work[i]
		if w.early == early {
			h.queueMessages(w)
			if early {
				h.early.Add(uint64(len(w.rd.Messages)))
			}
		}
		if !early {
			for _, m := range w.extra {
				to := m.GetTo()
				h.out[to] = append(h.out[to], groupMsg{group: w.g.id, g: w.g, msg: m})
			}
		}
	}
	for to, msgs := range h.out {
		if len(msgs) == 0 {
			delete(h.out, to)
			continue
		}
		all := msgs
		p := h.peer(to)
		if p != nil {
			h.announceChunks(to, p) // first: the peer may answer with a MsgSnap
		}
		msgs = h.sendHeartbeats(to, msgs)
		var err error
		if len(msgs) > 0 {
			h.sendBuf, err = appendBatch(h.sendBuf[:0], msgs)
			if err == nil {
				err = h.tr.Send(to, KindRaft, h.sendBuf)
			}
		}
		msgs = all
		if p != nil {
			if h.quiescence() {
				p.sent.Store(err == nil)
			}
			if err != nil {
				p.snapAnnounced.Store(false) // the next connection may be to a new run
			}
		}
		if err == nil {
			h.frames.Add(1)
			h.messages.Add(uint64(len(msgs)))
		} else {
			h.sendFailures.Add(uint64(len(msgs)))
			if ce := h.log.Check(zap.DebugLevel, "raft send failed"); ce != nil {
				ce.Write(zap.Uint64("peer", to), zap.Int("messages", len(msgs)), zap.Error(err))
			}
		}
		for _, m := range msgs {
			snap := m.msg.GetType() == pb.MsgSnap
			if err == nil && !snap {
				continue
			}
			m.g.mu.Lock()
			if m.g.stopErr == nil {
				if err != nil {
					m.g.rn.ReportUnreachable(to)
				}
				if snap {
					// The snapshot travels inline in the frame: queued on a
					// live connection counts as delivered.
					status := raft.SnapshotFinish
					if err != nil {
						status = raft.SnapshotFailure
					}
					m.g.rn.ReportSnapshot(to, status)
				}
			}
			m.g.mu.Unlock()
		}
		clear(msgs)
		h.out[to] = msgs[:0]
	}
	if cap(h.sendBuf) > 4<<20 {
		h.sendBuf = nil
	}
}

// queueMessages queues w's Ready messages in h.out by peer; a MsgSnap to a
// peer that takes chunks starts a streamed transfer instead.
func (h *Host) queueMessages(w *work) {
	for _, m := range w.rd.Messages {
		to := m.GetTo()
		if m.GetType() == pb.MsgSnap {
			if st, ok := w.g.sm.(SnapshotStreamer); ok && h.takesChunks(to) {
				if !h.streamSnapshot(w.g, st, m) {
					w.g.mu.Lock()
					if w.g.stopErr == nil {
						w.g.rn.ReportSnapshot(to, raft.SnapshotFailure)
					}
					w.g.mu.Unlock()
				}
				continue
			}
		}
		if m.GetType() == pb.MsgSnap && !h.fullSnapshot(w.g, m) {
			w.g.mu.Lock()
			if w.g.stopErr == nil {
				w.g.rn.ReportSnapshot(to, raft.SnapshotFailure)
			}
			w.g.mu.Unlock()
			continue
		}
		h.out[to] = append(h.out[to], groupMsg{group: w.g.id, g: w.g, msg: m})
	}
}

// snapshot takes a snapshot of g at its applied index, saves it, and
// compacts the in-memory log below it (keeping CompactKeep entries).
func (h *Host) snapshot(g *Group) error {
	applied := g.applied.Load()
	if applied <= g.snapIndex {
		return nil
	}
	data, err := g.sm.Snapshot()
	if err != nil {
		return fmt.Errorf("multiraft: group %d: state machine snapshot: %w", g.id, err)
	}
	g.mu.Lock()
	cs := g.confState
	if cs == nil {
		_, cs, _ = g.storage.InitialState() // MemoryStorage never fails here
	}
	snap, err := g.storage.CreateSnapshot(applied, cs, data)
	g.mu.Unlock()
	if errors.Is(err, raft.ErrSnapOutOfDate) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("multiraft: group %d: %w", g.id, err)
	}
	if err := h.wal.SaveSnapshot(g.id, snap, false); err != nil {
		return err
	}
	h.markers = append(h.markers, marker{g.id, applied, snap.GetMetadata().GetTerm()})
	g.snapIndex = applied
	h.snapshots.Add(1)
	if keep := uint64(h.cfg.CompactKeep); applied > keep {
		g.mu.Lock()
		to := applied - keep
		if floor, ok := h.followerFloor(g); ok && floor < to {
			to = max(floor, applied-min(applied, keep+uint64(h.cfg.CompactHold)))
		}
		for _, pin := range g.pins {
			// A follower being sent the state as of pin goes on from
			// there with entries.
			to = min(to, pin)
		}
		err := g.storage.Compact(to)
		g.mu.Unlock()
		if err != nil && !errors.Is(err, raft.ErrCompacted) {
			return fmt.Errorf("multiraft: group %d: compact: %w", g.id, err)
		}
	}
	return nil
}

// followerFloor is, on a leader, the lowest index a live follower that is
// replicating (not waiting for a snapshot) has: the log below it may be
// compacted without sending that follower a snapshot. g.mu must be held.
func (h *Host) followerFloor(g *Group) (uint64, bool) {
	if g.rn.BasicStatus().RaftState != raft.StateLeader {
		return 0, false
	}
	floor, ok := uint64(math.MaxUint64), false
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == h.cfg.NodeID || !pr.RecentActive || pr.State == tracker.StateSnapshot {
			return
		}
		if pr.Match < floor {
			floor, ok = pr.Match, true
		}
	})
	return floor, ok
}

// release deletes WAL segments no group needs. When the WAL has rolled, the
// groups whose old entries pin its oldest segment are asked for a snapshot,
// so one idle group cannot keep old segments forever.
func (h *Host) release(took bool) error {
	segs := h.wal.Stats().Segments
	if !took && segs == h.lastSegs {
		return nil
	}
	if _, err := h.wal.ReleaseSegments(); err != nil {
		return err
	}
	segs = h.wal.Stats().Segments
	if segs > 1 && segs != h.lastSegs {
		var marks []*Group
		for id, idx := range h.wal.Pinning() {
			if g := h.Group(id); g != nil && g.applied.Load() >= idx {
				g.snapWant.Store(true)
				marks = append(marks, g)
			}
		}
		h.markReady(marks...)
	}
	h.lastSegs = segs
	return nil
}

// snapshotDue reports whether g should take a snapshot now: its state
// machine's SnapshotPolicy decides, else every SnapshotEntries entries.
func (h *Host) snapshotDue(g *Group) bool {
	since := g.applied.Load() - g.snapIndex
	if p, ok := g.sm.(SnapshotPolicy); ok {
		return since > 0 && p.SnapshotDue(since)
	}
	return since >= h.cfg.SnapshotEntries
}
