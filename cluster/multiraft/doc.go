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
// AddNode/RemoveNode go through ConfChangeV2, one at a time per node
// (raft drops a change proposed while another is unapplied); TransferLeadership, Campaign,
// Snapshot, Leader, LeaderChanged and Status do what they say. Every group
// runs with CheckQuorum (a leader cut off from a quorum steps down) and
// PreVote (a node rejoining after a partition cannot force an election), and
// with proposal forwarding off so that callers learn who leads.
//
// # Goroutines
//
//   - ticker (1): every TickInterval, beat the peers and judge their
//     liveness (see Quiescence), then Tick every group that is not
//     quiesced, or quiesce it; a group that then has a Ready is marked. A
//     tick that finds a ready cycle still running since the previous tick is
//     skipped, so an overloaded node does not fire elections and CheckQuorum
//     on answers it has not read yet (nor beat: to its peers it looks as
//     silent as it is).
//   - ready loop (1): takes the marked groups (a slice under readyMu plus a
//     1-slot kick channel; idle groups are never visited), and runs one
//     cycle for all of them (see The cycle). Failed sends are reported with
//     ReportUnreachable, and MsgSnap outcomes with ReportSnapshot.
//   - the transport's reader goroutines step inbound messages into their
//     groups inline (under the group's lock), waking or quiescing them, and
//     mark them.
//
// Propose and configuration changes are stepped by the caller's goroutine
// under the group's lock; ProposeAsync queues its entry for the ready loop
// (cycle step 1), so call order holds among ProposeAsync calls, not between
// them and Propose.
// Nothing is per group but memory: a Group is a RawNode, a MemoryStorage and
// a few fields.
//
// # The cycle
//
//  1. Ready from every marked group with work, once the entries
//     ProposeAsync queued for it since the last cycle are stepped into raft
//     as one proposal (or several of up to MaxSizePerMsg each). raft sends each follower an append per proposal and
//     caps those in flight at MaxInflightMsgs: stepped one by one, a
//     stream's publishes made one append and one answer per entry and
//     follower, and held at most 256 entries in flight per follower.
//  2. Early sends: the messages of each Ready that holds only appends and
//     heartbeats (a leader's, or one that stepped down within the same
//     term: harmless), changes no Term or Vote and
//     holds no snapshot, one frame per peer for all such groups.
//  3. One WAL Append with one fsync for all groups (snapshots received are
//     saved and restored first).
//  4. Entries and HardState into each group's MemoryStorage.
//  5. The other messages (answers to appends, votes, snapshots, anything
//     after a term change), quiesce notices and wake requests, one frame
//     per peer.
//  6. Committed entries applied to each state machine, in runs between
//     configuration changes; proposers called back.
//  7. Advance; due snapshots taken.
//
// Step 2 is the Raft thesis' §10.2.1 (etcd's server does the same): a
// leader writes its log in parallel with its followers instead of before
// them, so a commit waits for one fsync on the critical path instead of
// two. It is safe because raft counts the leader's own entries toward
// commitment only once they are persisted (its self-acknowledgement is
// stepped at Advance): until then an entry commits only when a majority of
// voters other than the leader has persisted it, and a crash of the leader
// loses nothing committed. An entry is applied, and its proposer told,
// only after the leader's own write (step 6 follows step 3). raft's rule
// that no message goes out before the HardState and the entries of earlier
// Readies are persisted holds: step 2 sends only when Term and Vote are
// unchanged, and the previous cycle's write is synced. Everything that
// speaks for this node's persisted state (MsgAppResp, votes and their
// answers) waits for step 3, so a follower acknowledges only what it has
// on disk. Stats.EarlyMessages counts step 2's messages; the tests in
// early_test.go hold a node's fsync and watch what is sent meanwhile.
//
// # Locks
//
// Host.mu (group registry) before Group.mu (the RawNode, waiters, leader);
// Host.readyMu, Host.activeMu (the ticker's list) and Host.peersMu (peer
// liveness) are leaves. Group.mu is never held across I/O or a state
// machine call. The state machine is called only from the ready loop.
//
// # Proposals
//
// Each entry starts with a 16-byte header (proposing node, sequence number,
// seeded from the clock so it never repeats across restarts); when the entry
// is applied, the proposing node hands Apply's Result to the waiting caller.
// A leader that steps down fails its waiters with ErrLeadershipLost (outcome
// unknown: the entry may still commit) wrapped around a NotLeaderError.
// ProposeAsync queues the proposal for the next cycle, in call order (so
// one caller's proposals keep their order), and calls back with the result
// on the ready loop, off every group lock: a broker confirms publishes that
// way without a goroutine per message. ForceCampaign starts an election the
// way a leadership transfer does (MsgTimeoutNow: voters grant it within the
// old leader's lease), for a leader whose node is known to be gone.
//
// # Snapshots and compaction
//
// After SnapshotEntries applied entries (or when a state machine that
// implements SnapshotPolicy says so, or on Group.Snapshot) the ready loop
// asks the state machine for a snapshot, stores it in raft's storage and as
// the group's snapshot file, compacts the in-memory log keeping CompactKeep
// entries, and releases WAL segments no group needs. When the WAL rolls, the
// groups pinning its oldest segment are snapshotted too. A follower too far
// behind gets the snapshot inline in a MsgSnap frame; it saves it, restores
// its state machine and writes a replace marker to its WAL.
//
// A state machine that keeps its state in storage of its own (a
// Checkpointer: quorum queues keep their messages in the broker's store)
// makes snapshots that are only checkpoints: its storage made durable up
// to the applied index, and a few bytes. The log is trimmed behind them as
// usual, and at a restart the entries after the checkpoint apply again
// (idempotently) over that storage. A follower that needs a snapshot gets
// the whole state, made by SnapshotData as of the last applied index when
// the MsgSnap is sent (at or above the index raft picked); it restores it
// into its own storage before the cycle's WAL write, and saves and keeps a
// checkpoint of its own instead. So no member holds a whole queue in memory
// for its snapshot.
//
// # Chunked snapshots
//
// A Checkpointer that is also a SnapshotStreamer (quorum queues) sends
// its whole state as a stream instead (snapstream.go has the protocol):
//
//   - The ready loop, where raft emits the MsgSnap, only pins the state:
//     OpenSnapshot takes it as of the last applied entry (a quorum queue:
//     its queued store writes written out, a Badger read transaction and
//     its counters). A goroutine of the transfer's own (at most
//     SnapshotSends at once) writes it out in SnapshotChunkSize chunks
//     (1 MiB), each a transport request answered before the next, so
//     neither side holds more than a few chunks whatever the state's size,
//     and the ready loop never waits for it. While it runs the group's
//     in-memory log is kept from the snapshot's index on, so the follower
//     goes on with entries.
//   - The follower spools the chunks to a file in Dir/spool, checks the
//     stream's size and CRC-32C, and only then steps the MsgSnap into raft
//     (its data a token for the file). When raft hands it back in a Ready,
//     the ready loop restores the state machine by reading the file
//     (RestoreFrom), deletes it and checkpoints, as above.
//   - The outcome is reported to raft (ReportSnapshot); a failure (the
//     connection lost, either node stopped, a chunk unanswered for
//     SnapshotIdleTimeout) makes raft send the MsgSnap again, and a new
//     transfer starts from a new pin. The follower drops a transfer whose
//     sender went silent, and empties the spool when it starts: nothing of
//     a transfer reaches the state machine before it is whole.
//   - Each node announces per connection and per run that it takes chunks
//     (as coalesced heartbeats are announced); a node that did not (an
//     earlier version) gets the whole state in one frame as before, when
//     it fits within MaxSnapshotFrame.
//
// # Heartbeats
//
// All the messages a cycle produces for one peer travel in one frame and one
// write. A busy group ticks and heartbeats as plain Raft does, one
// MsgHeartbeat per follower per HeartbeatTicks and one response each; those
// of every group for one peer go coalesced in one KindHeartbeats frame of
// compact records (group, term, commit: 15 bytes each against 23 as
// protobuf messages in the Raft frame, a third of the CPU to encode and
// decode, one allocation instead of six; see heartbeats.go), to every peer
// that announced it reads them. An idle group quiesces and sends nothing;
// what a node pair exchanges about idle groups is one liveness beat per
// HeartbeatTicks each way, however many groups it shares
// (Config.DisableQuiescence turns all this off).
//
// # Quiescence
//
// A quiesced group is off the ticker's list: it costs nothing per tick, sends
// no heartbeat and runs no timer.
//
//   - A leader quiesces its group when it finds it idle QuiesceTicks ticks
//     in a row: no proposal waiting, no Ready pending or being handled, no
//     leadership transfer, the last index committed and applied here, and
//     every member not judged down (see Liveness), this node included,
//     holding the last index in steady replication, those members being a
//     majority of the voters. It sends each follower that holds the last
//     index a quiesce notice: a MsgHeartbeat with Index set, carrying its
//     term and commit index (the heartbeat's Context cannot carry the flag:
//     raft echoes it and reads it as a ReadIndex position).
//   - A follower steps a notice as the heartbeat it is (it learns the
//     commit index; its election timer restarts) and quiesces if it then
//     follows the sender at the notice's term with the notice's commit
//     index. Otherwise it stays awake and sends its leader a wake request (a
//     MsgHeartbeatResp with Index set) so that the leader's heartbeats sort
//     the difference out. Its heartbeat answers to notices are not sent.
//   - Anything else wakes a group: a proposal or configuration change,
//     Campaign, TransferLeadership, and any Raft message but a notice or a
//     plain heartbeat response (one arriving at a quiesced leader answers a
//     heartbeat sent before it quiesced). A follower woken by a message from
//     a node other than its leader sends its leader a wake request, so that
//     the leader heartbeats before the follower's election timer runs out.
//     A follower that gets a vote request from the node it takes for its
//     leader forgets that leader first: that node no longer leads.
//
// A node that predates quiescence takes notices and wake requests for plain
// heartbeats and answers, and beats for bad batches (it logs them): its
// groups stay correct but never quiesce, and wake their quiesced leaders
// once per election timeout.
//
// # Liveness
//
// With its followers' timers stopped, a quiesced group would not notice its
// leader's death. So each host judges its peer nodes, once for all groups:
// every HeartbeatTicks it sends each peer a beat (a Raft frame with no
// message: a zero and this run's epoch) unless a Raft frame went there since
// the last one, and it judges down a peer from which no frame came for
// ElectionTicks ticks. On a change the ticker wakes the quiesced groups
// concerned:
//
//   - peer down, or restarted (its beats carry a new epoch, however quick
//     the restart): the groups it leads wake, forget it (ForgetLeader, so
//     that they grant pre-votes at once) and run their election timer to
//     one tick short of the timeout, so that they elect within 1 to
//     ElectionTicks ticks as if they had been ticking all along; the groups
//     this node leads with that peer as a member wake, so that CheckQuorum
//     runs again.
//   - peer back up: the groups this node leads with that peer as a member
//     wake, so that a follower that missed entries while down catches up.
//
// A host that failed on storage stops beating, so that its peers elect
// leaders for the groups it led. A peer too overloaded to send anything for
// ElectionTicks ticks is judged down: the quiesced groups it leads elect
// again, as ticking ones would once its heartbeats stopped.
//
// # Guarantees
//
//   - Safety never depends on ticks: quiescence only changes when elections
//     and step-downs happen, never what commits. A cut-off quiesced leader
//     commits nothing, like a ticking one.
//   - When a quiesced group's leader node dies, its followers elect a new
//     leader about ElectionTicks to 2 × ElectionTicks ticks after it went
//     silent (ElectionTicks to judge it down, then 1 to ElectionTicks for
//     the election): 1 to 2 s at the defaults, the bound of a ticking
//     group's randomized election timeout.
//   - CheckQuorum does not run in a quiesced leader. A leader quiesces only
//     while a majority of voters is live and caught up; when it loses them
//     its peers are judged down within ElectionTicks ticks and it wakes, and
//     from then on CheckQuorum steps it down within two election timeouts
//     (the first check may still count answers from before it quiesced).
//     A proposal wakes it at once. So a cut-off quiesced leader may name
//     itself in Leader for up to three election timeouts (one to two without
//     quiescence); Leader is no lease.
//   - A quiesced follower is in lease (its timer stands still), so it does
//     not grant a pre-vote to a node that merely lost its leader; such a
//     request wakes it and, through a wake request, its leader.
//   - Liveness judges nodes, not groups: a group that a live node still
//     leads but no longer runs (RemoveGroup on its leader, not restarting it
//     after a restart is caught by the epoch) leaves its quiesced followers
//     asleep until a message wakes them. RemoveGroup is for a group this
//     node no longer belongs to, or that is deleted everywhere.
//
// Stats counts groups, quiesced groups, group ticks, quiesces, wakes, beats
// and peers judged down. BenchmarkIdle measures idle cost.
//
// # Next steps
//
//   - Busy groups still send one heartbeat per follower: coalescing them, as
//     CockroachDB does, into one (group, term, commit) list per node pair
//     and tick would shrink a busy node's heartbeat traffic further.
//   - Judge a peer down as soon as the transport loses its connection and
//     fails to redial, rather than after ElectionTicks ticks of silence.
//   - Pipelining the ready loop: collect and write batch n+1 while batch n
//     is being applied; apply on worker goroutines sharded by group so one
//     slow state machine does not hold the rest (a stream's checkpoint
//     waits on the ready loop for its log's fsync).
//   - Snapshots of plain state machines (and of Checkpointers that do not
//     stream) still travel in one frame, bounded by MaxFrameSize.
//   - A follower restores a streamed snapshot on the ready loop (a million
//     small messages take a few seconds there, while its other groups
//     wait): restoring into a staging area off the loop, then swapping it
//     in, would spare them; a node that dies midway through a restore
//     leaves the group's storage half-written until the leader's next
//     snapshot replaces it (its log is behind, so it cannot lead
//     meanwhile).
//   - A transfer slower than the group's log growth holds the leader's
//     in-memory log from the snapshot's index until it ends.
//   - ReadIndex reads for linearizable reads without a log entry.
//   - Learners for adding members without touching the quorum.
//   - Log entries held only in the WAL rather than in memory as well, for
//     queues with deep logs between snapshots.
package multiraft
