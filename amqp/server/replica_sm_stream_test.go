package server

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/cluster/multiraft"
)

// A queue's streamed snapshot is its whole state as of the moment it is
// opened (on the ready loop, between applies), whatever applies after
// while it is written out; a follower restores it into its store,
// replacing what the store held, and finds it again at a restart.
func TestQuorumStateMachineStreamedSnapshot(t *testing.T) {
	st := openStore(t)
	r := testReplicaStore(t, st, 0, nil)
	r.sm.Apply(sampleEntries())
	want := smIDs(&r.sm)
	whole, err := r.sm.SnapshotData()
	require.NoError(t, err)

	src, err := r.sm.OpenSnapshot()
	require.NoError(t, err)
	// Applied after the snapshot was opened: not in it.
	r.sm.Apply([]multiraft.Entry{enqueueEntry(11), enqueueEntry(12), batchEntry(byte('S'), 1, byte('R'), 4, byte('S'), 7)})
	st.WriteOut()
	require.NotEqual(t, want, smIDs(&r.sm))
	var buf bytes.Buffer
	n, err := src.WriteTo(&buf)
	require.NoError(t, err)
	require.NoError(t, src.Close())
	require.EqualValues(t, buf.Len(), n)
	require.Equal(t, whole, buf.Bytes(), "the stream is the whole state as of its opening, in SnapshotData's form")

	st2 := openStore(t)
	r2 := testReplicaStore(t, st2, 0, nil)
	r2.sm.Apply([]multiraft.Entry{enqueueEntry(100), enqueueEntry(101)})
	require.NoError(t, r2.sm.RestoreFrom(bytes.NewReader(buf.Bytes())))
	require.Equal(t, want, smIDs(&r2.sm))
	cp, err := r2.sm.Snapshot()
	require.NoError(t, err)

	// Restarted on its store and checkpoint.
	r3 := testReplicaStore(t, st2, 0, nil)
	require.NoError(t, r3.sm.load())
	require.NoError(t, r3.sm.Restore(cp))
	require.Equal(t, want, smIDs(&r3.sm))

	require.Error(t, r3.sm.RestoreFrom(bytes.NewReader(buf.Bytes()[:buf.Len()-3])), "a cut stream is refused")
	require.Error(t, r3.sm.RestoreFrom(bytes.NewReader(nil)), "an empty stream is refused")
}
