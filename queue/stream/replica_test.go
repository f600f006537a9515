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
	var got []uint64
	for {
		rec, ok, err := rd.Next()
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, rec.Offset)
	}
	require.Equal(t, []uint64{12, 13, 14, 15, 16}, got)
}
