package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

func openT(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	require.NoError(t, err)
	return s
}

func msg(body string) *queue.Message {
	h := amqp.AppendContentHeader(nil, uint64(len(body)), &amqp.Properties{Flags: amqp.FlagDeliveryMode, DeliveryMode: 2})
	return &queue.Message{Exchange: "x", RoutingKey: "k", Header: h, Body: []byte(body)}
}

func keys(t *testing.T, s *Store, prefix byte) int {
	n := 0
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	}))
	return n
}

func TestAppendLoadAndSharedMessage(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	m := msg("hello")
	s.Append(1, 10, m, 0)
	s.Append(2, 5, m, 0) // fanned out: stored once
	single := msg("second")
	single.StoreInline = true
	s.Append(1, 11, single, 12345) // one queue: inline in the entry
	s.Delivered(1, 10)
	s.Flush()
	require.Equal(t, 1, keys(t, s, prefixMessage))
	require.Equal(t, 3, keys(t, s, prefixEntry))
	require.NoError(t, s.Close())

	s = openT(t, dir)
	defer s.Close()
	cache := map[uint64]*queue.Message{}
	q1, disk, wm, err := s.LoadQueue(1, 100, cache)
	require.NoError(t, err)
	require.Zero(t, disk.N)
	require.Equal(t, uint64(10), wm)
	q2, _, _, err := s.LoadQueue(2, 100, cache)
	require.NoError(t, err)
	require.Len(t, q1, 2)
	require.Len(t, q2, 1)
	require.Equal(t, uint64(10), q1[0].Seq)
	require.True(t, q1[0].Redelivered, "at the delivered watermark")
	require.False(t, q1[1].Redelivered)
	require.Equal(t, int64(12345), q1[1].ExpiresAt, "expiry deadline kept")
	require.True(t, q1[1].Msg.StoreInline)
	require.False(t, q2[0].Redelivered)
	require.Same(t, q1[0].Msg, q2[0].Msg, "one message object for both queues")
	require.Equal(t, "hello", string(q1[0].Msg.Body))
	require.Equal(t, "x", q1[0].Msg.Exchange)
	require.Equal(t, "k", q1[0].Msg.RoutingKey)
	require.Equal(t, m.Header, q1[0].Msg.Header, "header byte for byte")

	// Removing one reference keeps the shared record; removing both drops it.
	s.Remove(1, 10, q1[0].Msg)
	s.Flush()
	require.Equal(t, 1, keys(t, s, prefixMessage))
	s.Remove(2, 5, q2[0].Msg)
	s.Flush()
	require.Equal(t, 0, keys(t, s, prefixMessage))
}

func TestWindowLoadAndDropFrom(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	for i := uint64(1); i <= 50; i++ {
		m := msg("m")
		m.StoreInline = true
		if i%2 == 0 {
			s.Spill(3, i, m, 0)
		} else {
			s.Append(3, i, m, 0)
		}
	}
	es, err := s.Load(3, 20, 10)
	require.NoError(t, err, "pending entries are readable")
	require.Len(t, es, 10)
	require.Equal(t, uint64(20), es[0].Seq)
	require.True(t, es[0].Spilled)
	require.False(t, es[1].Spilled)
	s.DropFrom(3, 25)
	s.Flush()
	require.Equal(t, 24, keys(t, s, prefixEntry))
	win, disk, _, err := s.LoadQueue(3, 5, nil)
	require.NoError(t, err)
	require.Len(t, win, 5, "spilled entries are discarded at startup")
	require.Equal(t, 7, disk.N, "the rest stays on disk")
	require.Equal(t, uint64(23), disk.Last)
}

func TestAddAndRemoveInOneBatchNeverTouchDisk(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	// Under the lock the committer cannot take the batch: a write and a
	// removal of the same key meet in it and cancel out.
	k := entryKey(7, 1)
	s.mu.Lock()
	n0 := len(s.ops)
	s.putLocked(k, []byte{1})
	s.deleteLocked(k)
	added := s.ops[n0:]
	s.mu.Unlock()
	require.Len(t, added, 1, "no delete op is queued")
	require.True(t, added[0].cancelled, "the write is cancelled")

	// Through the Journal API the outcome on disk is the same.
	m := msg("short-lived")
	s.Append(7, 2, m, 0)
	s.Remove(7, 2, m)
	s.Flush()
	require.Equal(t, 0, keys(t, s, prefixEntry))
	require.Equal(t, 0, keys(t, s, prefixMessage))
}

func TestSweepRemovesOrphans(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	s.Append(1, 1, msg("kept"), 0)
	s.Append(9, 1, msg("queue 9 is gone"), 0)
	s.Flush()
	require.NoError(t, s.Close())

	s = openT(t, dir)
	defer s.Close()
	_, _, _, err := s.LoadQueue(1, 100, map[uint64]*queue.Message{})
	require.NoError(t, err)
	require.NoError(t, s.Sweep(map[uint64]bool{1: true}))
	require.Equal(t, 1, keys(t, s, prefixEntry))
	require.Equal(t, 1, keys(t, s, prefixMessage))
}

func TestDefinitions(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	require.NoError(t, s.PutDef(KindQueue, "/\x00a", map[string]int{"id": 1}))
	require.NoError(t, s.PutDef(KindQueue, "/\x00b", map[string]int{"id": 2}))
	s.DeleteDef(KindQueue, "/\x00a")
	s.Flush()
	require.NoError(t, s.Close())
	s = openT(t, dir)
	defer s.Close()
	var names []string
	require.NoError(t, s.Defs(KindQueue, func(name string, raw []byte) error {
		names = append(names, name)
		require.JSONEq(t, `{"id":2}`, string(raw))
		return nil
	}))
	require.Equal(t, []string{"/\x00b"}, names)
}

func TestDecodeMessageRejectsCorruptRecords(t *testing.T) {
	for _, b := range [][]byte{nil, {5, 'a'}, {0, 3, 'k'}, {0, 0, 0, 0, 0, 9}} {
		_, err := decodeMessage(b, &queue.Names{})
		require.ErrorIs(t, err, errCorrupt)
	}
	m, err := decodeMessage(encodeMessage(msg("round trip")), &queue.Names{})
	require.NoError(t, err)
	require.Equal(t, "round trip", string(m.Body))
}

// TestSyncOnlyWhenNeeded: durable writes and AfterSync waiters get an msync;
// a batch of only removals and spilled transient messages is written
// without one, and the next waiter syncs it.
func TestSyncOnlyWhenNeeded(t *testing.T) {
	s := openT(t, t.TempDir())
	defer s.Close()
	m := msg("durable")
	m.StoreInline = true
	s.Append(1, 1, m, 0)
	s.Flush()
	syncs := s.syncs.Load()
	require.Positive(t, syncs)

	batches := s.batches.Load()
	s.Remove(1, 1, m)
	s.Spill(2, 1, msg("transient"), 0)
	require.Eventually(t, func() bool { return s.batches.Load() > batches }, 5*time.Second, time.Millisecond)
	require.Equal(t, syncs, s.syncs.Load(), "removals and spills alone are not synced")

	s.Flush()
	require.Equal(t, syncs+1, s.syncs.Load(), "a waiter syncs what was written unsynced")
	s.Flush()
	require.Equal(t, syncs+1, s.syncs.Load(), "nothing unsynced, nothing to sync")

	s.Append(1, 2, m, 0)
	require.Eventually(t, func() bool { return s.syncs.Load() == syncs+2 }, 5*time.Second, time.Millisecond,
		"a durable message is synced without a waiter")
}

// TestReturnCounts: a return count is read back with its entry at startup
// and when paged in, and is gone with the entry, with a purge and with a
// queue that no longer exists.
func TestReturnCounts(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir)
	for seq := uint64(1); seq <= 4; seq++ {
		m := msg(fmt.Sprint(seq))
		m.StoreInline = true
		s.Append(1, seq, m, 0)
	}
	s.Returned(1, 1, 3)
	s.Returned(1, 2, 1)
	s.Returned(1, 4, 2)
	s.Returned(9, 1, 5) // a queue that will not be loaded
	s.Flush()
	require.NoError(t, s.Close())

	s = openT(t, dir)
	defer s.Close()
	es, disk, _, err := s.LoadQueue(1, 2, map[uint64]*queue.Message{})
	require.NoError(t, err)
	require.Len(t, es, 2)
	require.Equal(t, []uint32{3, 1}, []uint32{es[0].Returns, es[1].Returns})
	require.Equal(t, 2, disk.N)
	paged, err := s.Load(1, disk.From, 10)
	require.NoError(t, err)
	require.Equal(t, []uint32{0, 2}, []uint32{paged[0].Returns, paged[1].Returns})
	require.NoError(t, s.Sweep(map[uint64]bool{1: true}))
	s.Flush()
	require.Equal(t, 3, keys(t, s, prefixReturns), "the dead queue's count is swept")

	s.Remove(1, 1, es[0].Msg)
	s.Returned(1, 1, 0)
	s.DropFrom(1, 3) // a purge of the paged-out part
	s.Flush()
	require.Equal(t, 1, keys(t, s, prefixReturns), "only entry 2's count is left")
}
