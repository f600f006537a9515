package stream

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, dir string, o Options) *Log {
	t.Helper()
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendSync appends n records body-0… and waits for them to be synced.
func appendSync(t *testing.T, l *Log, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if _, err := l.Append(fmt.Sprint("f", i%3), "ex", "key", []byte("hdr"), []byte(fmt.Sprint("body-", i))); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan struct{})
	l.AfterSync(func() { close(done) })
	<-done
}

// readAll reads from offset to the end and returns the bodies.
func readAll(t *testing.T, l *Log, offset uint64) []string {
	t.Helper()
	r, err := l.NewReader(offset)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []string
	want := r.Offset()
	for {
		rec, ok, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return out
		}
		if rec.Offset != want {
			t.Fatalf("offset %d, want %d", rec.Offset, want)
		}
		want++
		if string(rec.Exchange) != "ex" || string(rec.RoutingKey) != "key" || string(rec.Header) != "hdr" {
			t.Fatalf("record %d: %q %q %q", rec.Offset, rec.Exchange, rec.RoutingKey, rec.Header)
		}
		out = append(out, string(rec.Body))
	}
}

func TestAppendReadRollReopen(t *testing.T) {
	dir := t.TempDir()
	o := Options{MaxSegmentBytes: 1000, IndexInterval: 200}
	l := open(t, dir, o)
	appendSync(t, l, 0, 100)
	got := readAll(t, l, 0)
	if len(got) != 100 || got[0] != "body-0" || got[99] != "body-99" {
		t.Fatalf("read %d: %v", len(got), got)
	}
	if got := readAll(t, l, 57); len(got) != 43 || got[0] != "body-57" {
		t.Fatalf("from 57: %v", got)
	}
	info := l.Info()
	if info.Segments < 5 || info.First != 0 || info.Committed != 100 {
		t.Fatalf("info %+v", info)
	}
	l.Close()

	l2 := open(t, dir, o)
	if n := l2.Next(); n != 100 {
		t.Fatalf("next after reopen %d", n)
	}
	appendSync(t, l2, 100, 10)
	if got := readAll(t, l2, 95); len(got) != 15 || got[5] != "body-100" {
		t.Fatalf("after reopen: %v", got)
	}
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	appendSync(t, l, 0, 10)
	l.Close()
	seg := segPath(dir, 0, ".seg")
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 90, 1, 2, 3}) // half a record
	f.Close()
	os.Remove(segPath(dir, 0, ".idx"))
	l2 := open(t, dir, Options{})
	if n := l2.Next(); n != 10 {
		t.Fatalf("next %d", n)
	}
	appendSync(t, l2, 10, 1)
	if got := readAll(t, l2, 0); len(got) != 11 || got[10] != "body-10" {
		t.Fatalf("%v", got)
	}
}

func TestRetentionKeepsLastSegment(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := open(t, dir, Options{MaxSegmentBytes: 500, MaxBytes: 1200, Now: clock})
	appendSync(t, l, 0, 100)
	info := l.Info()
	if info.Bytes > 1200+500 || info.First == 0 {
		t.Fatalf("max-bytes kept %+v", info)
	}
	got := readAll(t, l, 0)
	if got[len(got)-1] != "body-99" || len(got) != int(info.Committed-info.First) {
		t.Fatalf("after retention read %d from %+v", len(got), info)
	}
	mu.Lock()
	now = now.Add(time.Hour)
	mu.Unlock()
	l.SetRetention(0, time.Minute)
	info = l.Info()
	if info.Segments != 1 {
		t.Fatalf("max-age kept %+v", info)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(files) != 1 {
		t.Fatalf("files %v", files)
	}
}

func TestOffsetAtAndClamp(t *testing.T) {
	dir := t.TempDir()
	var ms int64 = 1000
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); ms += 10; return time.UnixMilli(ms) }
	l := open(t, dir, Options{MaxSegmentBytes: 400, IndexInterval: 100, Now: clock})
	appendSync(t, l, 0, 50) // timestamps 1010, 1020, ...
	for _, c := range []struct {
		ts   int64
		want uint64
	}{{0, 0}, {1010, 0}, {1015, 1}, {1250, 24}, {1500, 49}, {9999, 50}} {
		got, err := l.OffsetAt(c.ts)
		if err != nil || got != c.want {
			t.Fatalf("OffsetAt(%d) = %d, %v; want %d", c.ts, got, err, c.want)
		}
	}
	if got := readAll(t, l, 1000); len(got) != 0 {
		t.Fatalf("past the end: %v", got)
	}
}

func TestReadersFollowWriter(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{MaxSegmentBytes: 4096})
	const n = 3000
	var wg sync.WaitGroup
	for k := 0; k < 4; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.NewReader(0)
			if err != nil {
				t.Error(err)
				return
			}
			defer r.Close()
			want := uint64(0)
			deadline := time.Now().Add(20 * time.Second)
			for want < n && time.Now().Before(deadline) {
				rec, ok, err := r.Next()
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				if rec.Offset != want || string(rec.Body) != fmt.Sprint("body-", want) {
					t.Errorf("got %d %q, want %d", rec.Offset, rec.Body, want)
					return
				}
				want++
			}
			if want != n {
				t.Errorf("read %d of %d", want, n)
			}
		}()
	}
	for i := 0; i < n; i += 100 {
		appendSync(t, l, i, 100)
	}
	wg.Wait()
}
