package multiraft

import (
	"slices"
	"sync/atomic"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"go.uber.org/zap"
)

// Quiescence: a group with nothing to do is not ticked, so it sends no
// heartbeats and runs no election timer. See doc.go for the rules and the
// guarantees; this file holds the group side (quiesce, wake) and the host's
// per-peer liveness, which wakes the groups a dead node leaves behind.

// peerState is what the host knows of one peer node's liveness.
type peerState struct {
	id        uint64
	heard     atomic.Uint64 // host tick at which a frame from the peer last arrived
	epoch     atomic.Uint64 // the peer's run, from its beats; 0 until one arrives
	restarted atomic.Bool   // its epoch changed; for the ticker
	sent      atomic.Bool   // a Raft frame went to the peer since its last beat
	greeted   atomic.Bool   // a beat (and so this run's epoch) went to the peer
	down      atomic.Bool   // judged down; written by the ticker only
	coalesce  atomic.Bool   // the peer reads coalesced heartbeats (heartbeats.go)
	announced atomic.Bool   // this node announced that it reads them to the peer's run
	// chunkedRun: the epoch of the peer's run that announced it takes
	// chunked snapshots (0: none did); snapAnnounced: this node told the
	// peer's run that it does (snapstream.go).
	chunkedRun    atomic.Uint64
	snapAnnounced atomic.Bool
}

// onBeat records a peer's beat. A new epoch means the peer restarted: for
// its groups that is the death of the old run, whether or not the liveness
// timeout saw it.
func (h *Host) onBeat(from uint64, payload []byte) {
	epoch, err := beatEpoch(payload[1:])
	if err != nil {
		h.log.Warn("bad liveness beat", zap.Uint64("peer", from), zap.Error(err))
		return
	}
	p := h.peer(from)
	if p == nil || epoch == 0 {
		return
	}
	if old := p.epoch.Swap(epoch); old != 0 && old != epoch {
		p.restarted.Store(true)
		// A new run, perhaps of another version: learn again what it reads.
		p.coalesce.Store(false)
		p.announced.Store(false)
		p.snapAnnounced.Store(false)
	}
}

func (h *Host) quiescence() bool { return !h.cfg.DisableQuiescence }

// peer returns the liveness record of node id, creating it (as just heard
// from) if needed; nil for this node.
func (h *Host) peer(id uint64) *peerState {
	if id == h.cfg.NodeID || id == 0 {
		return nil
	}
	h.peersMu.RLock()
	p := h.peers[id]
	h.peersMu.RUnlock()
	if p != nil {
		return p
	}
	h.peersMu.Lock()
	defer h.peersMu.Unlock()
	if p = h.peers[id]; p == nil {
		p = &peerState{id: id}
		p.heard.Store(h.tickNo.Load())
		h.peers[id] = p
	}
	return p
}

// peerDown reports whether node id is judged down. Unknown nodes count as
// up, so that a member never heard of yet keeps its groups from quiescing
// until it is caught up.
func (h *Host) peerDown(id uint64) bool {
	if id == h.cfg.NodeID {
		return false
	}
	h.peersMu.RLock()
	p := h.peers[id]
	h.peersMu.RUnlock()
	return p != nil && p.down.Load()
}

// checkPeers runs on the ticker, once per tick: it sends a liveness beat to
// every peer that got no Raft frame since its last beat (one per
// HeartbeatTicks; always the first one, which tells the peer this run's
// epoch), and judges down a peer from which nothing arrived for
// ElectionTicks ticks. When a peer goes down, restarts or comes back, the
// quiesced groups it concerns are woken.
func (h *Host) checkPeers(tick uint64, peers []*peerState) []*peerState {
	h.peersMu.RLock()
	peers = peers[:0]
	for _, p := range h.peers {
		peers = append(peers, p)
	}
	h.peersMu.RUnlock()
	beat := tick%uint64(h.cfg.HeartbeatTicks) == 0
	for _, p := range peers {
		if greeted := p.greeted.Load(); beat || !greeted {
			if sent := p.sent.Swap(false); !sent || !greeted {
				if h.tr.Send(p.id, KindRaft, h.beat) == nil {
					h.beats.Add(1)
					p.greeted.Store(true)
				}
			}
		}
		down := tick-p.heard.Load() > uint64(h.cfg.ElectionTicks)
		if down != p.down.Load() {
			p.down.Store(down)
			h.peerChanged(p.id, down)
		} else if p.restarted.Swap(false) && !down {
			h.peerChanged(p.id, true)
		}
	}
	clear(peers)
	return peers
}

// peerChanged wakes the quiesced groups a peer's going down (or restarting)
// or coming back concerns:
//   - down: groups led by that peer (they forget the leader and run their
//     election timer, so a new leader is elected as after any leader
//     failure), and groups this node leads that have the peer as a member
//     (so that CheckQuorum runs again, or the restarted follower is
//     heartbeaten at once);
//   - up: groups this node leads that have the peer as a member, so that a
//     follower that missed entries while down is caught up.
func (h *Host) peerChanged(id uint64, down bool) {
	h.log.Debug("peer liveness", zap.Uint64("peer", id), zap.Bool("down", down))
	h.mu.RLock()
	list := slices.Clone(h.list)
	h.mu.RUnlock()
	var marks []*Group
	var ticks uint64
	for _, g := range list {
		g.mu.Lock()
		if g.stopErr == nil && g.quiesced {
			st := g.rn.BasicStatus()
			switch {
			case st.RaftState == raft.StateLeader:
				if g.hasMemberLocked(id) {
					g.wakeLocked()
				}
			case down && st.Lead == id:
				g.wakeLocked()
				// The follower's election timer stood still while it was
				// quiesced: forget the dead leader (so that this node grants
				// pre-votes at once) and run the timer up to one tick short
				// of the election timeout, so that the group elects within
				// a randomized [1, ElectionTicks] ticks, as if it had been
				// ticking all along.
				_ = g.rn.ForgetLeader()
				for range h.cfg.ElectionTicks - 1 {
					g.rn.Tick()
					ticks++
				}
				if g.rn.HasReady() {
					marks = append(marks, g)
				}
			}
		}
		g.mu.Unlock()
	}
	h.groupTicks.Add(ticks)
	h.markReady(marks...)
}

// hasMemberLocked reports whether node id is a voter or learner of g as g
// knows it. g.mu must be held.
func (g *Group) hasMemberLocked(id uint64) bool {
	found := false
	g.rn.WithProgress(func(pid uint64, _ raft.ProgressType, _ tracker.Progress) {
		found = found || pid == id
	})
	return found
}

// tickAction is what the ticker does with an active group.
type tickAction int

const (
	tickGroup     tickAction = iota // Tick it
	skipTick                        // idle, waiting for its last Ready: neither tick nor quiesce yet
	groupQuiesced                   // just quiesced
)

// maybeQuiesceLocked is called by the ticker for an active group, instead of
// Tick. If this node leads g and g has been idle QuiesceTicks ticks in a row,
// it quiesces g, queues a quiesce notice for every caught-up follower and
// returns groupQuiesced. Idle means: no proposal waiting, no leadership
// transfer, the last index committed and applied here, and every member not
// judged down (this node included) holding the last index with replication
// in steady state; the members not judged down must also be a majority of
// the voters. The last index is exact only once no Ready is pending or out
// with the ready loop: an idle group with one (its last heartbeats, on a
// lagging node) is not ticked again, so that its own heartbeats do not keep
// it awake, and quiesces at the first tick that finds it settled.
// g.mu must be held.
func (g *Group) maybeQuiesceLocked() tickAction {
	h := g.h
	if len(g.waiters) > 0 {
		g.idleTicks = 0
		return tickGroup
	}
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
		g.idleTicks = 0
		return tickGroup
	}
	last, err := g.storage.LastIndex()
	if err != nil || st.GetCommit() != last || st.Applied != last || g.applied.Load() != last {
		g.idleTicks = 0
		return tickGroup
	}
	var voters, live int
	caughtUp := true
	g.rn.WithProgress(func(id uint64, typ raft.ProgressType, pr tracker.Progress) {
		voter := typ == raft.ProgressTypePeer
		if voter {
			voters++
		}
		if h.peerDown(id) {
			return // it is woken up when it comes back
		}
		if voter {
			live++
		}
		if pr.Match != last || pr.State != tracker.StateReplicate {
			caughtUp = false
		}
	})
	if !caughtUp || 2*live <= voters {
		g.idleTicks = 0
		return tickGroup
	}
	if g.idleTicks < h.cfg.QuiesceTicks {
		g.idleTicks++
	}
	if g.idleTicks < h.cfg.QuiesceTicks {
		return tickGroup
	}
	if g.busy || g.rn.HasReady() {
		return skipTick
	}
	self, term := h.cfg.NodeID, st.GetTerm()
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		// A follower judged down that lacks entries gets no notice: its
		// commit index must not pass what it holds.
		if id != self && pr.Match == last {
			g.outbox = append(g.outbox, quiesceNotice(self, id, term, last))
		}
	})
	g.quiesceLocked()
	return groupQuiesced
}

// onNoticeLocked handles a quiesce notice once raft has stepped it (as the
// heartbeat it also is). The follower quiesces if it follows the sender at
// the notice's term and its commit index is the notice's. Otherwise it
// stays awake and, if the sender is its leader, asks it to wake too, so
// that the leader's heartbeats sort out the difference rather than an
// election timeout. g.mu must be held.
func (g *Group) onNoticeLocked(m *pb.Message) {
	st := g.rn.BasicStatus()
	if st.RaftState != raft.StateFollower || st.Lead != m.GetFrom() || st.GetTerm() != m.GetTerm() {
		g.wakeLocked()
		return
	}
	if st.GetCommit() == m.GetCommit() {
		g.quiesceLocked()
		return
	}
	g.wakeLocked()
	g.outbox = append(g.outbox, wakeRequest(g.h.cfg.NodeID, st.Lead, st.GetTerm(), st.GetCommit()))
}

// stepLocked steps an inbound message into g and quiesces or wakes g as the
// message says:
//   - a quiesce notice is stepped as a heartbeat, then may quiesce g;
//   - a heartbeat response that is not a wake request leaves g as it is:
//     it answers a heartbeat sent before g quiesced;
//   - anything else wakes g. A follower woken by a node other than its
//     leader sends its leader a wake request, so the leader heartbeats
//     again before the follower's election timer runs out. A vote request
//     from the node this follower takes for its leader means that node no
//     longer leads (it restarted or stepped down): the follower forgets it
//     first, so that it may grant the vote without waiting out its lease.
//
// g.mu must be held.
func (h *Host) stepLocked(g *Group, m *pb.Message) {
	if !h.quiescence() {
		h.stepRaftLocked(g, m)
		return
	}
	switch {
	case isQuiesceNotice(m):
		h.stepRaftLocked(g, m)
		g.onNoticeLocked(m)
	case m.GetType() == pb.MsgHeartbeatResp && !isWakeRequest(m):
		h.stepRaftLocked(g, m)
	default:
		woke := g.wakeLocked()
		if t := m.GetType(); t == pb.MsgPreVote || t == pb.MsgVote {
			if st := g.rn.BasicStatus(); st.RaftState == raft.StateFollower && st.Lead == m.GetFrom() {
				_ = g.rn.ForgetLeader()
			}
		}
		h.stepRaftLocked(g, m)
		if woke {
			st := g.rn.BasicStatus()
			if st.RaftState == raft.StateFollower && st.Lead != 0 && st.Lead != m.GetFrom() {
				g.outbox = append(g.outbox, wakeRequest(h.cfg.NodeID, st.Lead, st.GetTerm(), st.GetCommit()))
			}
		}
	}
}

func (h *Host) stepRaftLocked(g *Group, m *pb.Message) {
	if err := g.rn.Step(m); err != nil {
		if ce := h.log.Check(zap.DebugLevel, "step"); ce != nil {
			ce.Write(zap.Uint64("group", g.id), zap.Error(err))
		}
	}
}

// quiesceLocked stops ticking g. g.mu must be held.
func (g *Group) quiesceLocked() {
	g.idleTicks = 0
	if g.quiesced {
		return
	}
	g.quiesced = true
	g.h.deactivate(g)
	g.h.nQuiesced.Add(1)
	g.h.quiesces.Add(1)
}

// wakeLocked makes a quiesced g tick again and drops the quiesce notices it
// has not sent yet; it reports whether g was quiesced. g.mu must be held.
func (g *Group) wakeLocked() bool {
	if !g.quiesced {
		return false
	}
	g.quiesced = false
	g.idleTicks = 0
	g.outbox = slices.DeleteFunc(g.outbox, isQuiesceNotice)
	g.h.activate(g)
	g.h.nQuiesced.Add(-1)
	g.h.wakes.Add(1)
	return true
}

// activate puts g in the ticker's list. g.mu must be held.
func (h *Host) activate(g *Group) {
	h.activeMu.Lock()
	if g.activeIdx < 0 {
		g.activeIdx = len(h.active)
		h.active = append(h.active, g)
	}
	h.activeMu.Unlock()
}

// deactivate takes g out of the ticker's list. g.mu must be held.
func (h *Host) deactivate(g *Group) {
	h.activeMu.Lock()
	if i := g.activeIdx; i >= 0 {
		last := len(h.active) - 1
		h.active[i] = h.active[last]
		h.active[i].activeIdx = i
		h.active[last] = nil
		h.active = h.active[:last]
		g.activeIdx = -1
	}
	h.activeMu.Unlock()
}

// dropHeartbeatResps returns msgs without heartbeat responses. A quiesced
// group's heartbeat responses answer quiesce notices; its leader, quiesced
// too, has no use for them.
func dropHeartbeatResps(msgs []*pb.Message) []*pb.Message {
	out := msgs[:0:0]
	for _, m := range msgs {
		if m.GetType() != pb.MsgHeartbeatResp {
			out = append(out, m)
		}
	}
	return out
}
