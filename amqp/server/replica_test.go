package server

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

func testReplica(t *testing.T) *replica {
	s := New(Config{})
	v := s.vhosts["/"]
	require.NotNil(t, v)
	r := newReplica(s, v, 7, []string{"a", "b", "c"})
	r.q = &Queue{Queue: queue.New(queue.Config{Name: "q", Args: amqp.Table{"x-queue-type": "quorum"}}), repl: r}
	t.Cleanup(r.q.Queue.Stop)
	return r
}

func enqueueEntry(i int) multiraft.Entry {
	hdr := amqp.AppendContentHeader(nil, uint64(len(fmt.Sprint(i))), &amqp.Properties{})
	msg := queue.NewMessage("", "q", hdr, []byte(fmt.Sprint(i)))
	return multiraft.Entry{Data: appendEnqueue(msg, -1)}
}

func batchEntry(ops ...any) multiraft.Entry {
	b := []byte{opBatch}
	for i := 0; i < len(ops); i += 2 {
		b = append(b, ops[i].(byte))
		b = binary.BigEndian.AppendUint64(b, uint64(ops[i+1].(int)))
		if ops[i].(byte) == 'R' {
			b = binary.BigEndian.AppendUint32(b, 3)
		}
	}
	return multiraft.Entry{Data: b}
}

// The state machine keeps the unsettled messages in log order with their
// return counts and the delivered watermark, and a snapshot restores them.
func TestQuorumStateMachine(t *testing.T) {
	r := testReplica(t)
	r.sm.Apply(sampleEntries())
	ids := func(sm *qsm) []string {
		var out []string
		for _, e := range sm.entries() {
			out = append(out, fmt.Sprintf("%d:%s:%d:%v", e.Seq, e.Msg.Body, e.Returns, e.Redelivered))
		}
		return out
	}
	want := []string{"1:1:0:true", "3:3:0:true", "4:4:0:true", "6:6:0:false", "7:7:3:true", "8:8:0:false"}
	require.Equal(t, want, ids(&r.sm))
	require.False(t, r.sm.SnapshotDue(100), "a short log is not compacted")
	require.True(t, r.sm.SnapshotDue(snapshotMin))

	snap, err := r.sm.Snapshot()
	require.NoError(t, err)
	r2 := testReplica(t)
	require.NoError(t, r2.sm.Restore(snap))
	require.Equal(t, want, ids(&r2.sm))
	// The next message after a restore gets the next id.
	r2.sm.Apply([]multiraft.Entry{enqueueEntry(11)})
	require.Equal(t, "11:11:0:false", ids(&r2.sm)[len(want)])
	require.Error(t, r2.sm.Restore(snap[:len(snap)-3]), "a cut snapshot is refused")
}

// testReplicaStore is a replica whose state machine keeps its messages in
// st, with a queue that pages (window messages in memory at most).
func testReplicaStore(t *testing.T, st *store.Store, window int, b *queue.Budget) *replica {
	s := New(Config{})
	v := s.vhosts["/"]
	r := newReplica(s, v, 7, []string{"a", "b", "c"})
	r.sm.st = st
	r.q = &Queue{Queue: queue.New(queue.Config{Name: "q", Durable: true, Journal: r, PageWindow: window, Budget: b,
		Args: amqp.Table{"x-queue-type": "quorum"}}), repl: r}
	t.Cleanup(r.q.Queue.Stop)
	return r
}

func openStore(t *testing.T) *store.Store {
	st, err := store.Open(t.TempDir(), nil)
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func smIDs(sm *qsm) []string {
	var out []string
	for _, e := range sm.entries() {
		out = append(out, fmt.Sprintf("%d:%s:%d:%v", e.Seq, e.Msg.Body, e.Returns, e.Redelivered))
	}
	return out
}

// sampleEntries enqueue ten messages, then one batch of settles and
// returns among them.
func sampleEntries() []multiraft.Entry {
	var es []multiraft.Entry
	for i := 1; i <= 10; i++ {
		es = append(es, enqueueEntry(i))
	}
	return append(es, batchEntry(byte('S'), 2, byte('S'), 5, byte('D'), 4, byte('R'), 7, byte('F'), 9))
}

// With a store the state machine keeps the messages there, snapshots are
// checkpoints, the entries after a checkpoint apply again at a restart to
// the same state, and the whole state made for a follower replaces what
// the follower's store held.
func TestQuorumStateMachineStore(t *testing.T) {
	st := openStore(t)
	r := testReplicaStore(t, st, 0, nil)
	r.sm.Apply(sampleEntries())
	want := []string{"1:1:0:true", "3:3:0:true", "4:4:0:true", "6:6:0:false", "7:7:3:true", "8:8:0:false"}
	require.Equal(t, want, smIDs(&r.sm))
	require.False(t, r.sm.SnapshotDue(100))
	require.True(t, r.sm.SnapshotDue(checkpointEvery), "checkpoints by entry count, however deep the queue")
	require.Nil(t, r.sm.mem, "no message held in memory")

	cp, err := r.sm.Snapshot()
	require.NoError(t, err)
	require.Len(t, cp, 25, "a checkpoint holds the counters only")
	after := []multiraft.Entry{enqueueEntry(11), enqueueEntry(12), batchEntry(byte('S'), 3, byte('R'), 11, byte('S'), 12)}
	r.sm.Apply(after)
	want2 := []string{"1:1:0:true", "4:4:0:true", "6:6:0:false", "7:7:3:true", "8:8:0:false", "11:11:3:true"}
	require.Equal(t, want2, smIDs(&r.sm))
	st.WriteOut()

	// A restart: the store holds everything applied; the checkpoint and the
	// entries after it come back from the log.
	r2 := testReplicaStore(t, st, 0, nil)
	require.NoError(t, r2.sm.load())
	require.NoError(t, r2.sm.Restore(cp))
	r2.sm.Apply(after)
	require.Equal(t, want2, smIDs(&r2.sm))
	r2.sm.Apply([]multiraft.Entry{enqueueEntry(13)})
	require.Equal(t, "13:13:0:false", smIDs(&r2.sm)[len(want2)])

	// A follower gets the whole state; what its store held goes.
	full, err := r2.sm.SnapshotData()
	require.NoError(t, err)
	st3 := openStore(t)
	r3 := testReplicaStore(t, st3, 0, nil)
	r3.sm.Apply([]multiraft.Entry{enqueueEntry(100), enqueueEntry(101)})
	require.NoError(t, r3.sm.Restore(full))
	require.Equal(t, smIDs(&r2.sm), smIDs(&r3.sm))
	require.Error(t, r3.sm.Restore(full[:len(full)-3]), "a cut snapshot is refused")

	// A snapshot of an earlier version (messages inline) is read too.
	old := testReplica(t)
	old.sm.Apply(sampleEntries())
	legacy := binary.BigEndian.AppendUint64(nil, 10)
	legacy = binary.BigEndian.AppendUint64(legacy, 4)
	legacy = binary.BigEndian.AppendUint64(legacy, 1)
	legacy = binary.BigEndian.AppendUint64(legacy, 3) // id at ttl returns exchange key header body
	legacy = binary.BigEndian.AppendUint64(legacy, 0)
	legacy = binary.BigEndian.AppendUint64(legacy, ^uint64(0))
	legacy = binary.BigEndian.AppendUint32(legacy, 2)
	legacy = appendShortstr(appendShortstr(legacy, ""), "q")
	legacy = binary.BigEndian.AppendUint32(legacy, 0)
	legacy = binary.BigEndian.AppendUint32(legacy, 1)
	legacy = append(legacy, 'x')
	require.NoError(t, r3.sm.Restore(legacy))
	require.Equal(t, []string{"3:x:2:true"}, smIDs(&r3.sm))

	// Deleted: the store forgets the group.
	r3.sm.drop()
	n := 0
	_, err = st3.ScanGroup(7, func(uint64, int64) { n++ })
	require.NoError(t, err)
	require.Zero(t, n)
}

// The leader's queue keeps only its head in memory and pages the rest in
// from the state machine's store, in order; a new leader starts with the
// head only.
func TestQuorumQueuePagesFromStore(t *testing.T) {
	st := openStore(t)
	b := queue.NewBudget(1 << 20)
	t.Cleanup(b.Close)
	r := testReplicaStore(t, st, 100, b)
	var es []multiraft.Entry
	for i := 1; i <= 1000; i++ {
		es = append(es, enqueueEntry(i))
	}
	r.sm.Apply(es[:500]) // before this node leads
	r.leading.Store(true)
	r.becomeLeader()
	u := b.Usage()
	require.LessOrEqual(t, u.MemoryMessages, int64(100))
	require.Equal(t, int64(500), u.MemoryMessages+u.PagedMessages)
	r.sm.Apply(es[500:]) // while it leads
	u = b.Usage()
	require.LessOrEqual(t, u.MemoryMessages, int64(100))
	require.Equal(t, int64(1000), u.MemoryMessages+u.PagedMessages)
	for i := 1; i <= 1000; i++ {
		e, _, ok := r.q.Get(true)
		require.True(t, ok, "message %d", i)
		require.Equal(t, fmt.Sprint(i), string(e.Msg.Body))
		require.Equal(t, uint64(i), e.Seq)
		require.False(t, e.Redelivered)
	}
	_, _, ok := r.q.Get(true)
	require.False(t, ok)
	require.Equal(t, 1000*9, len(r.ops), "each one settled through the log")
}
