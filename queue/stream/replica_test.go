package stream

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// appendAtSync appends records from..from+n-1 stamped 1000+i ms, syncing
// after every batch of them.
func appendAtSync(t *testing.T, l *Log, from, n, batch int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		off, err := l.AppendAt(int64(1000+i), "", "ex", "key", []byte("hdr"), []byte(fmt.Sprint("body-", i)))
		require.NoError(t, err)
		require.Equal(t, uint64(i), off)
		if (i-from+1)%batch == 0 || i == from+n-1 {
			done := make(chan struct{})
			l.AfterSync(func() { close(done) })
			<-done
		}
	}
}

// Two logs given the same records in different batches (as the members of
// a replicated stream write them) keep the same segments under MaxBytes,
// and the same timestamps.
func TestRetentionSameRecordsSameSegments(t *testing.T) {
	o := Options{MaxSegmentBytes: 500, MaxBytes: 1700}
	a, b := open(t, t.TempDir(), o), open(t, t.TempDir(), o)
	appendAtSync(t, a, 0, 300, 1)
	appendAtSync(t, b, 0, 300, 300)
	ia, ib := a.Info(), b.Info()
	require.Greater(t, ia.First, uint64(0))
	require.Equal(t, ia, ib)
	require.Equal(t, readAll(t, a, 0), readAll(t, b, 0))
}

// ResetTo drops every record and goes on at the given offset; a reader
// positioned before it goes on there.
func TestResetTo(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{MaxSegmentBytes: 300})
	appendAtSync(t, l, 0, 20, 5)
	rd, err := l.NewReader(3)
	require.NoError(t, err)
	defer rd.Close()
	require.NoError(t, l.ResetTo(50))
	require.Equal(t, uint64(50), l.Next())
	appendAtSync(t, l, 50, 5, 5)
	require.Equal(t, []string{"body-50", "body-51", "body-52", "body-53", "body-54"}, readAll(t, l, 0))
	rec, ok, err := rd.Next()
	for err == nil && ok && rec.Offset < 50 {
		rec, ok, err = rd.Next() // what its open file still held
	}
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, uint64(50), rec.Offset)
	l.Close()
	l2 := open(t, dir, Options{MaxSegmentBytes: 300})
	require.Equal(t, uint64(50), l2.Info().First)
	require.Equal(t, uint64(55), l2.Next())
}

// A reader made by NewReaderAhead at an offset past the log's end returns
// nothing until the log gets there and then starts at that very offset,
// across segment rolls; NewReader clamps the same offset to the end.
func TestNewReaderAhead(t *testing.T) {
	l := open(t, t.TempDir(), Options{MaxSegmentBytes: 200})
	appendAtSync(t, l, 0, 5, 5)
	rd, err := l.NewReaderAhead(12)
	require.NoError(t, err)
	defer rd.Close()
	require.Equal(t, uint64(12), rd.Offset())
	_, ok, err := rd.Next()
	require.NoError(t, err)
	require.False(t, ok)
	clamped, err := l.NewReader(12)
	require.NoError(t, err)
	defer clamped.Close()
	require.Equal(t, uint64(5), clamped.Offset())

	appendAtSync(t, l, 5, 4, 2) // 5..8: still short of 12
	_, ok, err = rd.Next()
	require.NoError(t, err)
	require.False(t, ok)
	appendAtSync(t, l, 9, 8, 3) // 9..16, several segments on
	require.Greater(t, l.Info().Segments, 2)
	require.Equal(t, []uint64{12, 13, 14, 15, 16}, readOffsets(t, rd))
}

// A reader made by NewReaderAhead past the log's end keeps its offset when
// the log is reset under it (a member restoring a snapshot whose first
// record is past its end): it starts at its offset when the reset log
// reaches it, or at the reset log's first record if that is later, and
// never returns a record below its offset.
func TestNewReaderAheadAcrossReset(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ask, base uint64
		want      []uint64
	}{
		{"reset below the offset", 12, 10, []uint64{12, 13, 14, 15, 16}},
		{"reset past the offset", 12, 14, []uint64{14, 15, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := open(t, t.TempDir(), Options{MaxSegmentBytes: 200})
			appendAtSync(t, l, 0, 8, 4)
			rd, err := l.NewReaderAhead(tc.ask)
			require.NoError(t, err)
			defer rd.Close()
			require.NoError(t, l.ResetTo(tc.base))
			_, ok, err := rd.Next()
			require.NoError(t, err)
			require.False(t, ok)
			appendAtSync(t, l, int(tc.base), int(17-tc.base), 2)
			require.Equal(t, tc.want, readOffsets(t, rd))
		})
	}
}

// readOffsets reads rd up to the log's end and returns the offsets read.
func readOffsets(t *testing.T, rd *Reader) []uint64 {
	t.Helper()
	var got []uint64
	for {
		rec, ok, err := rd.Next()
		require.NoError(t, err)
		if !ok {
			return got
		}
		got = append(got, rec.Offset)
	}
}
