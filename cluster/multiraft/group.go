package multiraft

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Group is one Raft group running on a Host.
type Group struct {
	id      uint64
	h       *Host
	sm      StateMachine
	storage *raft.MemoryStorage

	// mu guards the RawNode, which is not safe for concurrent use, and the
	// fields below. Lock order: Host.mu, then Group.mu; Host.readyMu is a
	// leaf. Never held across I/O or a state machine call.
	mu       sync.Mutex
	rn       *raft.RawNode           // Lock must be held.
	waiters  map[uint64]func(Result) // proposals by sequence number. Lock must be held.
	snapReqs []chan error            // Snapshot calls waiting. Lock must be held.
	lead     uint64                  // leader as of the last Ready. Lock must be held.
	leadCh   chan struct{}           // closed when lead changes. Lock must be held.
	stopErr  error                   // non-nil once stopped. Lock must be held.
	// Quiescence (quiesce.go). Lock must be held for all four.
	quiesced  bool          // not ticked; not in Host.active
	idleTicks int           // ticks in a row this leader found the group idle
	busy      bool          // a Ready is out with the ready loop, not yet advanced
	outbox    []*pb.Message // quiesce notices and wake requests for the next cycle
	props     []*pb.Entry   // ProposeAsync's entries, for the next cycle to step
	// confMu is held by changeConf while its change is under way.
	confMu sync.Mutex
	// Chunked snapshots (snapstream.go). Lock must be held for both.
	pins  map[uint64]uint64 // follower → index of the state being sent to it
	spool *spooled          // a received snapshot stepped into raft, on disk

	queued    bool // in Host.ready. Host.readyMu must be held.
	activeIdx int  // index in Host.active, -1 if not there. Host.activeMu must be held.

	// Owned by the ready loop (and StartGroup before the group is shared).
	applied   atomic.Uint64 // read by others: Applied
	snapIndex uint64
	confState *pb.ConfState
	snapWant  atomic.Bool
	// The Term and Vote of the HardState last written to the WAL: a Ready
	// that changes either sends nothing before its write is synced.
	hsTerm, hsVote uint64
}

// ID returns the group ID.
func (g *Group) ID() uint64 { return g.id }

// Leader returns the current leader's node ID (0 if none is known) and
// whether it is this node.
func (g *Group) Leader() (id uint64, local bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.rn.BasicStatus()
	return st.Lead, st.RaftState == raft.StateLeader
}

// LeaderChanged returns a channel closed at the next leader change this node
// sees; call it again for the one after.
func (g *Group) LeaderChanged() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.leadCh
}

// Status returns raft's full status (allocates; for tools and tests).
func (g *Group) Status() raft.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rn.Status()
}

// Applied returns the index of the last entry applied to the state machine.
func (g *Group) Applied() uint64 { return g.applied.Load() }

// Propose proposes data and returns once the entry is committed and applied
// on this node, with the state machine's Result for it. Only the leader
// proposes: elsewhere it fails at once with a *NotLeaderError naming the
// leader (errors.Is(err, ErrNotLeader)), so the caller can forward. If this
// node loses leadership first, the error wraps ErrLeadershipLost: the entry
// may still commit. On ctx's end the entry may also still commit.
func (g *Group) Propose(ctx context.Context, data []byte) (any, error) {
	seq := g.h.seq.Add(1)
	buf := appendProposal(make([]byte, 0, proposalHeaderSize+len(data)), g.h.cfg.NodeID, seq, data)
	return g.wait(ctx, seq, func() error { return g.rn.Propose(buf) })
}

// ProposeAsync proposes data as Propose does but does not wait: the entry
// is queued for the group's next Ready, after those of earlier calls (so
// one caller's proposals keep their order), and done is called once with
// what Propose would have returned. done runs on the ready loop (or, when
// leadership is lost or the group stops, on a goroutine of its own), never
// under the group's lock; it must not block. An error returned here (not
// the leader: a *NotLeaderError; stopped) means done is never called.
//
// The ready loop steps every entry queued since its last cycle into raft
// as one proposal, so that the leader sends each follower one append for
// all of them rather than one per entry (raft sends an append per
// proposal, and caps those in flight at MaxInflightMsgs). If raft drops
// them, done gets ErrLeadershipLost (leadership lost meanwhile) or
// ErrProposalDropped (a transfer under way, the uncommitted size limit:
// not in the log).
func (g *Group) ProposeAsync(data []byte, done func(any, error)) error {
	seq := g.h.seq.Add(1)
	buf := appendProposal(make([]byte, 0, proposalHeaderSize+len(data)), g.h.cfg.NodeID, seq, data)
	g.mu.Lock()
	if err := g.registerLocked(seq, func(r Result) { done(r.Value, r.Err) }); err != nil {
		g.mu.Unlock()
		return err
	}
	g.props = append(g.props, &pb.Entry{Data: buf})
	g.mu.Unlock()
	g.h.markReady(g)
	return nil
}

// stepProposalsLocked steps the entries ProposeAsync queued into raft, in
// proposals of up to MaxSizePerMsg bytes (raft sends a follower one append
// per proposal, the rest of a larger one only after it answers, and admits
// or drops a proposal whole against MaxUncommittedEntriesSize). If raft
// drops one, its waiters and those of every later one fail, so that no
// entry gets into the log ahead of one queued before it. g.mu must be held.
func (g *Group) stepProposalsLocked() {
	if len(g.props) == 0 {
		return
	}
	ents := g.props
	g.props = nil
	var err error
	for len(ents) > 0 && err == nil {
		n := proposalChunk(ents, g.h.cfg.MaxSizePerMsg)
		if err = g.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), From: new(g.h.cfg.NodeID), Entries: ents[:n]}); err == nil {
			ents = ents[n:]
		}
	}
	if err == nil {
		return
	}
	if st := g.rn.BasicStatus(); st.RaftState != raft.StateLeader {
		err = fmt.Errorf("%w: %w", ErrLeadershipLost, &NotLeaderError{Group: g.id, Leader: st.Lead})
	} else {
		// A leadership transfer under way, or too much uncommitted: not
		// in the log, to be proposed again.
		err = fmt.Errorf("multiraft: group %d: %w: %w", g.id, ErrProposalDropped, err)
	}
	var fns []func(Result)
	for _, e := range ents {
		if _, seq, _, ok := parseProposal(e.GetData()); ok {
			if fn := g.waiters[seq]; fn != nil {
				fns = append(fns, fn)
				delete(g.waiters, seq)
			}
		}
	}
	go func() {
		for _, fn := range fns {
			fn(Result{Err: err})
		}
	}()
}

// proposalChunk is how many of ents (at least one) make a proposal of at
// most max bytes of data.
func proposalChunk(ents []*pb.Entry, max uint64) int {
	size := uint64(len(ents[0].GetData()))
	n := 1
	for n < len(ents) {
		size += uint64(len(ents[n].GetData()))
		if size > max {
			break
		}
		n++
	}
	return n
}

// registerLocked adds a waiter for seq if this node leads the group.
// g.mu must be held.
func (g *Group) registerLocked(seq uint64, fn func(Result)) error {
	if g.stopErr != nil {
		return g.stopErr
	}
	if st := g.rn.BasicStatus(); st.RaftState != raft.StateLeader {
		return &NotLeaderError{Group: g.id, Leader: st.Lead}
	}
	g.wakeLocked()
	g.waiters[seq] = fn
	return nil
}

// AddNode adds a voter through a ConfChangeV2 and returns once the change is
// applied here. The new node starts the group empty (StartGroup with no
// peers); its transport must know the node's address. One change at a time.
func (g *Group) AddNode(ctx context.Context, node uint64) error {
	return g.changeConf(ctx, pb.ConfChangeAddNode, node)
}

// RemoveNode removes a member through a ConfChangeV2. A removed leader
// steps down.
func (g *Group) RemoveNode(ctx context.Context, node uint64) error {
	return g.changeConf(ctx, pb.ConfChangeRemoveNode, node)
}

// changeConf proposes one configuration change and waits until it is
// applied. Changes on one node go one at a time: raft drops a change
// proposed while another is still unapplied (it turns it into an empty
// entry, which would leave its caller waiting for ever), so the next one
// is proposed only once raft has applied the previous one.
func (g *Group) changeConf(ctx context.Context, typ pb.ConfChangeType, node uint64) error {
	g.confMu.Lock()
	defer g.confMu.Unlock()
	seq := g.h.seq.Add(1)
	cc := &pb.ConfChangeV2{
		Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(node)}},
		Context: appendProposal(nil, g.h.cfg.NodeID, seq, nil),
	}
	if _, err := g.wait(ctx, seq, func() error { return g.rn.ProposeConfChange(cc) }); err != nil {
		return err
	}
	// The state machine has applied it; raft counts it applied at the
	// cycle's Advance, which comes next.
	target := g.applied.Load()
	for {
		g.mu.Lock()
		done := g.stopErr != nil || g.rn.BasicStatus().Applied >= target
		g.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // applied all the same
		case <-time.After(time.Millisecond):
		}
	}
}

// wait registers a waiter for seq, runs propose under the lock if this node
// leads, and waits for the result.
func (g *Group) wait(ctx context.Context, seq uint64, propose func() error) (any, error) {
	ch := make(chan Result, 1)
	g.mu.Lock()
	if err := g.registerLocked(seq, func(r Result) { ch <- r }); err != nil {
		g.mu.Unlock()
		return nil, err
	}
	if err := propose(); err != nil {
		delete(g.waiters, seq)
		g.mu.Unlock()
		return nil, fmt.Errorf("multiraft: group %d: %w", g.id, err)
	}
	g.mu.Unlock()
	g.h.markReady(g)
	select {
	case r := <-ch:
		return r.Value, r.Err
	case <-ctx.Done():
		g.mu.Lock()
		delete(g.waiters, seq)
		g.mu.Unlock()
		return nil, ctx.Err()
	}
}

// TransferLeadership asks the leader (this node) to hand leadership to node
// to; watch LeaderChanged for the outcome.
func (g *Group) TransferLeadership(to uint64) {
	g.mu.Lock()
	g.wakeLocked()
	g.rn.TransferLeader(to)
	g.mu.Unlock()
	g.h.markReady(g)
}

// Campaign makes this node campaign now instead of waiting for an election
// timeout (with pre-vote, it only wins if its log is up to date).
func (g *Group) Campaign() error {
	g.mu.Lock()
	g.wakeLocked()
	err := g.rn.Campaign()
	g.mu.Unlock()
	g.h.markReady(g)
	return err
}

// Snapshot makes the host take a snapshot of the group now, compact its log
// and release WAL segments, and waits for it.
func (g *Group) Snapshot(ctx context.Context) error {
	ch := make(chan error, 1)
	g.mu.Lock()
	if g.stopErr != nil {
		g.mu.Unlock()
		return g.stopErr
	}
	g.snapReqs = append(g.snapReqs, ch)
	g.mu.Unlock()
	g.h.markReady(g)
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// afterAdvanceLocked tracks the leader and fails the proposals of a leader
// that stepped down. g.mu must be held.
func (g *Group) afterAdvanceLocked(ss *raft.SoftState) {
	if ss == nil {
		return
	}
	if ss.Lead != g.lead {
		g.lead = ss.Lead
		close(g.leadCh)
		g.leadCh = make(chan struct{})
	}
	if ss.RaftState != raft.StateLeader && len(g.waiters) > 0 {
		err := fmt.Errorf("%w: %w", ErrLeadershipLost, &NotLeaderError{Group: g.id, Leader: ss.Lead})
		g.failWaitersLocked(err)
	}
}

// failWaitersLocked fails every waiting proposal with err, off the lock
// (on a goroutine: callers hold g.mu). g.mu must be held.
func (g *Group) failWaitersLocked(err error) {
	g.props = nil // never stepped: they will not commit
	fns := make([]func(Result), 0, len(g.waiters))
	for seq, fn := range g.waiters {
		fns = append(fns, fn)
		delete(g.waiters, seq)
	}
	go func() {
		for _, fn := range fns {
			fn(Result{Err: err})
		}
	}()
}

// stopWith stops the group and fails its waiters with err.
func (g *Group) stopWith(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.stopErr != nil {
		return
	}
	g.stopErr = err
	if g.quiesced {
		g.quiesced = false
		g.h.nQuiesced.Add(-1)
	}
	g.outbox = nil
	g.h.deactivate(g)
	g.failWaitersLocked(err)
	for _, ch := range g.snapReqs {
		ch <- err
	}
	g.snapReqs = nil
}

// apply hands committed entries to the state machine in order, applies
// configuration changes to raft, and answers the local proposers.
// Called by the ready loop only.
func (h *Host) apply(g *Group, ents []*pb.Entry) {
	if len(ents) == 0 {
		return
	}
	var run []Entry
	var seqs []uint64 // sequence numbers of this node's proposals in run; 0 for others'
	flush := func() {
		if len(run) == 0 {
			return
		}
		results := g.sm.Apply(run)
		type answer struct {
			fn func(Result)
			r  Result
		}
		var answers []answer
		g.mu.Lock()
		for i, seq := range seqs {
			if seq == 0 {
				continue
			}
			if fn := g.waiters[seq]; fn != nil {
				var r Result
				if i < len(results) {
					r = results[i]
				}
				answers = append(answers, answer{fn, r})
				delete(g.waiters, seq)
			}
		}
		g.mu.Unlock()
		for _, a := range answers {
			a.fn(a.r)
		}
		h.applied.Add(uint64(len(run)))
		run, seqs = run[:0], seqs[:0]
	}
	for _, e := range ents {
		switch e.GetType() {
		case pb.EntryNormal:
			node, seq, data, ok := parseProposal(e.GetData())
			if !ok {
				continue // a new leader's empty entry
			}
			if node != h.cfg.NodeID {
				seq = 0
			}
			run = append(run, Entry{Index: e.GetIndex(), Term: e.GetTerm(), Data: data})
			seqs = append(seqs, seq)
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			flush()
			h.applyConfChange(g, e)
		}
	}
	flush()
	g.applied.Store(ents[len(ents)-1].GetIndex())
}

func (h *Host) applyConfChange(g *Group, e *pb.Entry) {
	var cc pb.ConfChangeI
	var ctx []byte
	if e.GetType() == pb.EntryConfChange {
		var c pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			h.log.Error("bad conf change entry", zap.Uint64("group", g.id), zap.Error(err))
			return
		}
		cc, ctx = &c, c.GetContext()
	} else {
		var c pb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c); err != nil {
			h.log.Error("bad conf change entry", zap.Uint64("group", g.id), zap.Error(err))
			return
		}
		cc, ctx = &c, c.GetContext()
	}
	g.mu.Lock()
	g.confState = g.rn.ApplyConfChange(cc)
	var fn func(Result)
	if node, seq, _, ok := parseProposal(ctx); ok && node == h.cfg.NodeID {
		fn = g.waiters[seq]
		delete(g.waiters, seq)
	}
	g.mu.Unlock()
	if fn != nil {
		fn(Result{})
	}
}
