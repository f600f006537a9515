package wal

import (
	"os"
	"path/filepath"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
)

func ents(term uint64, from, to uint64) []*pb.Entry {
	var out []*pb.Entry
	for i := from; i <= to; i++ {
		out = append(out, &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: []byte{byte(i), 'x'}})
	}
	return out
}

func hs(term, vote, commit uint64) *pb.HardState {
	return &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func mustOpen(t *testing.T, dir string, seg int64) (*WAL, map[uint64]*GroupState) {
	t.Helper()
	w, st, err := Open(dir, Options{SegmentSize: seg, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return w, st
}

func indexes(es []*pb.Entry) []uint64 {
	var out []uint64
	for _, e := range es {
		out = append(out, e.GetIndex()*100+e.GetTerm())
	}
	return out
}

func equalU(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReplayGroupsAndOverwrite(t *testing.T) {
	dir := t.TempDir()
	w, st := mustOpen(t, dir, 0)
	if len(st) != 0 {
		t.Fatalf("fresh WAL recovered %d groups", len(st))
	}
	var b Batch
	b.Entries(1, ents(1, 1, 10))
	b.HardState(1, hs(1, 1, 3))
	b.Entries(2, ents(1, 1, 2))
	b.HardState(2, hs(1, 2, 2))
	if err := w.Append(&b, true); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	// Group 1's log is rewritten from 5 by a new leader of term 2.
	b.Entries(1, ents(2, 5, 6))
	b.HardState(1, hs(2, 3, 5))
	b.Remove(2)
	if err := w.Append(&b, true); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, st = mustOpen(t, dir, 0)
	if _, ok := st[2]; ok {
		t.Fatal("removed group 2 came back")
	}
	g := st[1]
	want := []uint64{101, 201, 301, 401, 502, 602}
	if got := indexes(g.Entries); !equalU(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if g.HardState.GetTerm() != 2 || g.HardState.GetCommit() != 5 {
		t.Fatalf("hard state %v", g.HardState)
	}
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, 0)
	var b Batch
	b.Entries(7, ents(1, 1, 3))
	b.HardState(7, hs(1, 7, 3))
	if err := w.Append(&b, true); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	b.Entries(7, ents(1, 4, 5))
	if err := w.Append(&b, true); err != nil {
		t.Fatal(err)
	}
	w.Close()
	path := filepath.Join(dir, "0000000000000001.wal")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	full := fi.Size()
	for _, cut := range []int64{1, 5, 9, 20} {
		if err := os.Truncate(path, full-cut); err != nil {
			t.Fatal(err)
		}
		w, st := mustOpen(t, dir, 0)
		if got := indexes(st[7].Entries); !equalU(got, []uint64{101, 201, 301}) {
			t.Fatalf("cut %d: entries %v", cut, got)
		}
		// The WAL keeps working after the truncation.
		b.Reset()
		b.Entries(7, ents(1, 4, 5))
		if err := w.Append(&b, true); err != nil {
			t.Fatal(err)
		}
		w.Close()
		fi, _ := os.Stat(path)
		full = fi.Size()
	}
	// Garbage appended (a preallocated or half-written tail) is dropped too.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3})
	f.Close()
	_, st := mustOpen(t, dir, 0)
	if got := indexes(st[7].Entries); !equalU(got, []uint64{101, 201, 301, 401, 501}) {
		t.Fatalf("after garbage: entries %v", got)
	}
	// A bad record in an older segment is corruption, reported, not truncated.
	if err := os.WriteFile(filepath.Join(dir, "0000000000000002.wal"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	raw[10] ^= 0xff
	os.WriteFile(path, raw, 0o644)
	if _, _, err := Open(dir, Options{}); err == nil {
		t.Fatal("corrupt older segment opened without error")
	}
}

func TestSnapshotsRollAndRelease(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, 512)
	var b Batch
	// Group 1 writes a lot; group 2 writes once, then idles.
	b.Entries(2, ents(1, 1, 1))
	b.HardState(2, hs(1, 2, 1))
	w.Append(&b, true)
	for i := uint64(1); i <= 100; i++ {
		b.Reset()
		b.Entries(1, ents(1, i, i))
		b.HardState(1, hs(1, 1, i))
		if err := w.Append(&b, true); err != nil {
			t.Fatal(err)
		}
	}
	if s := w.Stats(); s.Segments < 5 || s.Syncs != 101 || s.Entries != 101 {
		t.Fatalf("stats %+v", s)
	}
	// Nothing can go before group 1 and 2 have snapshots.
	if n, _ := w.ReleaseSegments(); n != 0 {
		t.Fatalf("released %d segments before any snapshot", n)
	}
	if p := w.Pinning(); p[2] != 1 {
		t.Fatalf("pinning %v, want group 2 at 1", p)
	}
	cs := &pb.ConfState{Voters: []uint64{1, 2, 3}}
	snap := func(i, term uint64, data string) *pb.Snapshot {
		return &pb.Snapshot{Data: []byte(data), Metadata: &pb.SnapshotMetadata{Index: new(i), Term: new(term), ConfState: cs}}
	}
	if err := w.SaveSnapshot(2, snap(1, 1, "two"), false); err != nil {
		t.Fatal(err)
	}
	if err := w.SaveSnapshot(1, snap(90, 1, "one"), false); err != nil {
		t.Fatal(err)
	}
	n, err := w.ReleaseSegments()
	if err != nil || n == 0 {
		t.Fatalf("released %d, %v", n, err)
	}
	w.Close()
	_, st := mustOpen(t, dir, 512)
	g1, g2 := st[1], st[2]
	if string(g1.Snapshot.GetData()) != "one" || g1.Snapshot.GetMetadata().GetIndex() != 90 ||
		len(g1.Snapshot.GetMetadata().GetConfState().GetVoters()) != 3 {
		t.Fatalf("group 1 snapshot %v", g1.Snapshot)
	}
	if len(g1.Entries) != 10 || g1.Entries[0].GetIndex() != 91 || g1.HardState.GetCommit() != 100 {
		t.Fatalf("group 1: %d entries from %d, hs %v", len(g1.Entries), g1.Entries[0].GetIndex(), g1.HardState)
	}
	if g2.HardState.GetVote() != 2 || len(g2.Entries) != 0 || string(g2.Snapshot.GetData()) != "two" {
		t.Fatalf("group 2: %+v", g2)
	}
}

func TestReceivedSnapshotVoidsOlderLog(t *testing.T) {
	dir := t.TempDir()
	w, _ := mustOpen(t, dir, 0)
	var b Batch
	b.Entries(1, ents(1, 1, 20)) // stale, never committed
	b.HardState(1, hs(1, 0, 2))
	w.Append(&b, true)
	snap := &pb.Snapshot{Data: []byte("s"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(15)), Term: new(uint64(3)), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
	if err := w.SaveSnapshot(1, snap, true); err != nil {
		t.Fatal(err)
	}
	// Crash before the marker: the stale entries 16..20 must not survive.
	w.Close()
	w, st := mustOpen(t, dir, 0)
	if len(st[1].Entries) != 0 || st[1].HardState.GetCommit() != 15 || st[1].HardState.GetTerm() != 3 {
		t.Fatalf("without marker: %d entries, hs %v", len(st[1].Entries), st[1].HardState)
	}
	b.Reset()
	b.Snapshot(1, 15, 3, true)
	b.Entries(1, ents(3, 16, 17))
	w.Append(&b, true)
	w.Close()
	_, st = mustOpen(t, dir, 0)
	if got := indexes(st[1].Entries); !equalU(got, []uint64{1603, 1703}) {
		t.Fatalf("with marker: %v", got)
	}
}
