package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// body is message seq's body: big enough that 10,000 of them fill dozens
// of write batches.
func body(seq int) string { return fmt.Sprintf("body %d %s", seq, strings.Repeat("x", seq%1000)) }

func segments(t *testing.T, dir string) int {
	t.Helper()
	fs, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	require.NoError(t, err)
	return len(fs)
}

// checkRead reads n entries and checks they are seq from..from+n-1.
func checkRead(t *testing.T, sp *spool, from, n int) {
	t.Helper()
	es, err := sp.read(n)
	require.NoError(t, err)
	require.Len(t, es, n)
	for i, e := range es {
		seq := from + i
		require.Equal(t, uint64(seq), e.Seq)
		require.Equal(t, int64(seq*10), e.ExpiresAt)
		require.Equal(t, body(seq), string(e.Msg.Body))
		require.Equal(t, "k", e.Msg.RoutingKey)
		require.Equal(t, "x", e.Msg.Exchange)
		require.False(t, e.Journaled)
	}
}

// TestSpoolSegments: records come back in order across segment files,
// interleaved with writes, and each segment is deleted once read.
func TestSpoolSegments(t *testing.T) {
	ss, err := openSpools(filepath.Join(t.TempDir(), "spool"), zap.NewNop())
	require.NoError(t, err)
	sp := ss.get(7, true)
	sp.segMax = 64 << 10
	seq := 1
	write := func(n int) {
		for range n {
			sp.write(uint64(seq), msg(body(seq)), int64(seq*10))
			seq++
		}
	}
	write(10000)
	require.Greater(t, segments(t, sp.dir), 5, "spread over several segments")
	checkRead(t, sp, 1, 3000)
	write(5000) // writes go on while the front is read
	checkRead(t, sp, 3001, 7000)
	before := segments(t, sp.dir)
	checkRead(t, sp, 10001, 4999)
	require.Less(t, segments(t, sp.dir), before, "read segments are deleted")
	checkRead(t, sp, 15000, 1)
	es, err := sp.read(10)
	require.NoError(t, err)
	require.Empty(t, es)

	ss.drop(7)
	_, err = os.Stat(sp.dir)
	require.True(t, os.IsNotExist(err))
}

// TestSpoolWriteFailure: once a write fails the spool keeps the rest in
// memory; everything comes back, in order.
func TestSpoolWriteFailure(t *testing.T) {
	ss, err := openSpools(filepath.Join(t.TempDir(), "spool"), zap.NewNop())
	require.NoError(t, err)
	sp := ss.get(1, true)
	for seq := 1; seq <= 5000; seq++ {
		if seq == 3000 {
			sp.flush()
			sp.wf.Close() // the next write fails
		}
		sp.write(uint64(seq), msg(body(seq)), int64(seq*10))
	}
	checkRead(t, sp, 1, 2000)
	checkRead(t, sp, 2001, 3000)
	require.True(t, sp.failed)
	es, err := sp.read(10)
	require.NoError(t, err)
	require.Empty(t, es)
}

// TestSpoolClearedAtOpen: a spool left by a previous run is removed.
func TestSpoolClearedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, filepath.Join(dir, "store"))
	s.SpoolWrite(3, 1, msg("left over"), 0)
	s.spools.get(3, false).flush()
	require.Equal(t, 1, segments(t, filepath.Join(dir, "store-spool", "3")))
	s.db.Close() // as if killed: Close would clear it itself
	s = openT(t, filepath.Join(dir, "store"))
	defer s.Close()
	es, err := s.SpoolRead(3, 10)
	require.NoError(t, err)
	require.Empty(t, es)
	_, err = os.Stat(filepath.Join(dir, "store-spool", "3"))
	require.True(t, os.IsNotExist(err))
}
