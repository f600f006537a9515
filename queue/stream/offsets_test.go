package stream

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openOffsets(t *testing.T, dir string, every time.Duration) *Offsets {
	t.Helper()
	o, err := OpenOffsets(dir, every)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// Tracked offsets survive a close and reopen; the last update wins.
func TestOffsetsReopen(t *testing.T) {
	dir := t.TempDir()
	o := openOffsets(t, dir, 0)
	if _, ok := o.Get("a"); ok {
		t.Fatal("a is tracked in a new stream")
	}
	o.Set("a", 5)
	o.Set("b", 7)
	o.Set("a", 3) // an explicit offset moves a name back
	long := strings.Repeat("n", MaxNameLen)
	o.Set(long, 1<<40)
	o.Set("gone", 1)
	if !o.Delete("gone") || o.Delete("never") {
		t.Fatal("Delete reports what it forgot")
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = openOffsets(t, dir, 0)
	want := []Tracked{{"a", 3, 3}, {"b", 7, 7}, {long, 1 << 40, 1 << 40}}
	got := o.All()
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// Updates are written in batches, at most one write per FlushEvery, and
// Synced says what is on disk.
func TestOffsetsBatched(t *testing.T) {
	dir := t.TempDir()
	o := openOffsets(t, dir, time.Hour)
	o.Set("a", 1)
	deadline := time.Now().Add(5 * time.Second)
	for o.All()[0].Synced != 1 {
		if time.Now().After(deadline) {
			t.Fatal("first update never written")
		}
		time.Sleep(time.Millisecond)
	}
	// The writer now waits an hour before the next write: these stay in
	// memory, the file keeps 1.
	for i := uint64(2); i <= 1000; i++ {
		o.Set("a", i)
	}
	time.Sleep(50 * time.Millisecond)
	if got := o.All()[0]; got.Offset != 1000 || got.Synced != 1 {
		t.Fatalf("got %+v, want offset 1000 synced 1", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, OffsetsFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeOffsets(b)
	if err != nil || m["a"] != 1 {
		t.Fatalf("file holds %v, %v", m, err)
	}
	// Close writes the rest.
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = openOffsets(t, dir, 0)
	if v, _ := o.Get("a"); v != 1000 {
		t.Fatalf("after close: %d", v)
	}
}

// A damaged file is refused rather than read as other offsets; a
// leftover temporary file is ignored.
func TestOffsetsDamaged(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, OffsetsFile+".tmp"), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := openOffsets(t, dir, 0)
	o.Set("x", 9)
	o.Close()
	path := filepath.Join(dir, OffsetsFile)
	b, _ := os.ReadFile(path)
	b[len(b)-5] ^= 1
	os.WriteFile(path, b, 0o644)
	if _, err := OpenOffsets(dir, 0); err == nil {
		t.Fatal("a damaged file opened")
	}
}

// An update round-trips through its encoding (a replicated stream's log
// entry).
func TestOffsetsUpdateEncoding(t *testing.T) {
	b := AppendUpdate(nil, "reader-1", 42)
	b = AppendUpdate(b, "", 0)
	name, off, rest, err := ParseUpdate(b)
	if err != nil || name != "reader-1" || off != 42 {
		t.Fatalf("%q %d %v", name, off, err)
	}
	name, off, rest, err = ParseUpdate(rest)
	if err != nil || name != "" || off != 0 || len(rest) != 0 {
		t.Fatalf("%q %d %v %v", name, off, rest, err)
	}
	if _, _, _, err := ParseUpdate(b[:5]); err == nil {
		t.Fatal("a cut update parsed")
	}
}
