package multiraft

import (
	"errors"
	"fmt"
	"io"
)

// Entry is a committed, applied log entry as the state machine sees it.
type Entry struct {
	Index, Term uint64
	Data        []byte
}

// Result is what the state machine's Apply made of one entry. Propose
// returns it to the proposer on the node that proposed it.
type Result struct {
	Value any
	Err   error
}

// StateMachine is one group's replicated state. The host calls it from its
// ready loop only, never concurrently for the same group.
type StateMachine interface {
	// Apply applies committed entries in log order and returns one Result
	// per entry (missing ones count as zero Results). It must be
	// deterministic. The slice is reused after Apply returns; Data may be kept.
	Apply(entries []Entry) []Result
	// Snapshot returns the state as of the last applied entry.
	Snapshot() ([]byte, error)
	// Restore replaces the state with a snapshot's.
	Restore(data []byte) error
}

// SnapshotPolicy is implemented by state machines that decide when their
// group takes a snapshot (instead of every Config.SnapshotEntries): a
// queue's snapshot costs what it holds, not what went through it.
type SnapshotPolicy interface {
	// SnapshotDue is asked after each ready cycle that applied entries,
	// with how many were applied since the last snapshot.
	SnapshotDue(sinceLast uint64) bool
}

// Checkpointer is implemented by state machines that keep their state in
// storage of their own, written as they apply, so that their snapshots need
// not carry it. For them:
//   - Snapshot is a checkpoint: it makes that storage durable up to the
//     last applied entry and returns small data (the log before it is then
//     trimmed). At a restart Restore gets that data back and the entries
//     after the checkpoint are applied again, over a state that may already
//     include some of them: applying them again must come to the same state.
//   - A follower that needs a snapshot gets one made when it is sent: the
//     host asks SnapshotData for the whole state as of the last applied
//     entry, sends it and drops it. The follower's Restore takes it (and
//     writes it to its own storage), then the follower checkpoints at once,
//     so that no member keeps the whole state in memory. (A Checkpointer
//     that is also a SnapshotStreamer streams it instead, to every peer
//     that takes chunks.)
type Checkpointer interface {
	StateMachine
	// SnapshotData returns the whole state as of the last applied entry.
	SnapshotData() ([]byte, error)
}

// SnapshotStreamer is implemented by Checkpointers whose whole state may
// be too large to build in memory or to send in one frame. To a peer that
// takes chunked snapshots (see snapstream.go) the host then sends the
// state as a stream, in chunks of Config.SnapshotChunkSize, from a
// goroutine of its own; the peer spools it to a file and restores from
// that. A peer of an earlier version still gets SnapshotData in one frame.
type SnapshotStreamer interface {
	Checkpointer
	// OpenSnapshot pins the whole state as of the last applied entry (a
	// read transaction of the storage, and the few counters kept in
	// memory) and returns it to be written out later. It is called on the
	// ready loop, between applies, so it must be quick; the source is then
	// read on another goroutine while entries go on applying, and must
	// not see them.
	OpenSnapshot() (SnapshotSource, error)
	// RestoreFrom replaces the state with one a SnapshotSource wrote,
	// read from r to its end (a spooled, checksummed copy). The host then
	// checkpoints at once, as after Restore.
	RestoreFrom(r io.Reader) error
}

// SnapshotSource is a state pinned by OpenSnapshot.
type SnapshotSource interface {
	// WriteTo writes the state to w, once. An error from w is returned
	// as is.
	WriteTo(w io.Writer) (int64, error)
	// Close releases what the source pins; it is called once, whether or
	// not WriteTo ran or finished.
	Close() error
}

// Errors.
var (
	// ErrNotLeader is matched (errors.Is) by every *NotLeaderError.
	ErrNotLeader = errors.New("multiraft: not the leader")
	// ErrLeadershipLost: this node stopped leading while the proposal was in
	// flight; it may or may not commit. It comes wrapped with a
	// *NotLeaderError naming the new leader if known.
	ErrLeadershipLost = errors.New("multiraft: leadership lost, outcome unknown")
	// ErrProposalDropped: the leader's raft refused a queued proposal (a
	// leadership transfer under way, or MaxUncommittedEntriesSize reached);
	// it is not in the log and may be proposed again.
	ErrProposalDropped = errors.New("multiraft: proposal dropped")
	ErrGroupExists     = errors.New("multiraft: group already started")
	ErrGroupStopped    = errors.New("multiraft: group stopped")
	ErrClosed          = errors.New("multiraft: host closed")
)

// NotLeaderError says this node does not lead the group, and who does
// (Leader 0: nobody known yet, e.g. during an election), so the caller can
// forward the request there.
type NotLeaderError struct {
	Group, Leader uint64
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return fmt.Sprintf("multiraft: group %d: not the leader; no leader known", e.Group)
	}
	return fmt.Sprintf("multiraft: group %d: not the leader; leader is node %d", e.Group, e.Leader)
}

// Is makes errors.Is(err, ErrNotLeader) true.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
