// Package multiraft runs many Raft groups (go.etcd.io/raft/v3 RawNodes) on
// one node with a fixed number of goroutines, one shared write-ahead log
// (package wal) and one connection per peer node (package transport). It is
// the plumbing under Warren's metadata group and its per-queue groups.
//
// # Use
//
//	tr := transport.New(transport.Config{NodeID: 1})
//	go tr.Serve(listener)
//	tr.AddPeer(2, "10.0.0.2:25672")
//	h, err := multiraft.NewHost(multiraft.Config{NodeID: 1, Dir: dir, Transport: tr})
//	g, err := h.StartGroup(groupID, []uint64{1, 2, 3}, stateMachine)
//	result, err := g.Propose(ctx, command) // *NotLeaderError names the leader to forward to
//
// StartGroup restarts a group the WAL holds (RecoveredGroups lists them),
// bootstraps a new one with its initial peers, or, with no peers, starts an
// empty replica that a leader's AddNode will fill. Propose returns once the
// entry is committed and applied here, with the state machine's Result.
// AddNode/RemoveNode go through ConfChangeV2; TransferLeadership, Campaign,
// Snapshot, Leader, LeaderChanged and Status do what they say. Every group
// runs with CheckQuorum (a leader cut off from a quorum steps down) and
// PreVote (a node rejoining after a partition cannot force an election), and
// with proposal forwarding off so that callers learn who leads.
//
// # Goroutines
//
//   - ticker (1): every TickInterval, Tick every group; a group that then
//     has a Ready is marked. A tick that finds a ready cycle still running
//     since the previous tick is skipped, so an overloaded node does not
//     fire elections and CheckQuorum on answers it has not read yet.
//   - ready loop (1): takes the marked groups (a slice under readyMu plus a
//     1-slot kick channel; idle groups are never visited), and for every one
//     with work: Ready; then one WAL Append with one fsync for all of them
//     (snapshots received are saved first); entries and HardState into each
//     group's MemoryStorage; every message sent, one transport frame per
//     peer holding all groups' messages; committed entries applied to each
//     state machine, in runs between configuration changes; Advance; due
//     snapshots taken. Failed sends are reported with ReportUnreachable, and
//     MsgSnap outcomes with ReportSnapshot.
//   - the transport's reader goroutines step inbound messages into their
//     groups inline (under the group's lock) and mark them.
//
// Proposals are stepped by the caller's goroutine under the group's lock.
// Nothing is per group but memory: a Group is a RawNode, a MemoryStorage and
// a few fields.
//
// # Locks
//
// Host.mu (group registry) before Group.mu (the RawNode, waiters, leader);
// Host.readyMu is a leaf. Group.mu is never held across I/O or a state
// machine call. The state machine is called only from the ready loop.
//
// # Proposals
//
// Each entry starts with a 16-byte header (proposing node, sequence number,
// seeded from the clock so it never repeats across restarts); when the entry
// is applied, the proposing node hands Apply's Result to the waiting caller.
// A leader that steps down fails its waiters with ErrLeadershipLost (outcome
// unknown: the entry may still commit) wrapped around a NotLeaderError.
//
// # Snapshots and compaction
//
// After SnapshotEntries applied entries (or on Group.Snapshot) the ready loop
// asks the state machine for a snapshot, stores it in raft's storage and as
// the group's snapshot file, compacts the in-memory log keeping CompactKeep
// entries, and releases WAL segments no group needs. When the WAL rolls, the
// groups pinning its oldest segment are snapshotted too. A follower too far
// behind gets the snapshot inline in a MsgSnap frame; it saves it, restores
// its state machine and writes a replace marker to its WAL.
//
// # Heartbeats
//
// All the messages a cycle produces for one peer, heartbeats of every group
// included, travel in one frame and one write. Raft still produces one
// heartbeat message per group per HeartbeatTicks (about 100 bytes each).
//
// # Next steps
//
//   - Coalesced heartbeats, as CockroachDB does: one heartbeat per node pair
//     per tick carrying the (group, term, commit) of every group the pair
//     shares, expanded into per-group MsgHeartbeat on the receiver; or
//     quiescence: a leader whose followers have everything stops ticking the
//     group until a proposal arrives (needs care with CheckQuorum).
//   - Pipelining the ready loop: collect and write batch n+1 while batch n
//     is being sent and applied; apply on worker goroutines sharded by group
//     so one slow state machine does not hold the rest.
//   - Snapshots stream in chunks over Request instead of one frame
//     (MaxFrameSize bounds them today), and are taken off the ready loop.
//   - Checkpoints as Ra 4.x has them, for fast recovery of large queues.
//   - ReadIndex reads for linearizable reads without a log entry.
//   - Learners for adding members without touching the quorum.
//   - Log entries held only in the WAL rather than in memory as well, for
//     queues with deep logs between snapshots.
package multiraft
