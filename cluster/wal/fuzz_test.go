package wal

import (
	"bytes"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func FuzzDecodeRecord(f *testing.F) {
	f.Add(AppendEntries(nil, 1, ents(1, 1, 3)))
	f.Add(AppendHardState(nil, 9, hs(3, 2, 1)))
	f.Add(AppendSnapshot(nil, 1<<40, 10, 2, true))
	f.Add(AppendRemove(nil, 5))
	f.Add(append(AppendRemove(nil, 5), 1, 2, 3))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := DecodeRecord(b)
		if err != nil {
			return
		}
		if n > len(b) || n <= recordHeaderSize {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		enc := AppendRecord(nil, r)
		r2, n2, err := DecodeRecord(enc)
		if err != nil || n2 != len(enc) {
			t.Fatalf("re-decode: %v (%d of %d)", err, n2, len(enc))
		}
		if !sameRecord(r, r2) {
			t.Fatalf("round trip changed the record:\n%+v\n%+v", r, r2)
		}
		// Canonical encodings re-encode byte for byte.
		if !bytes.Equal(AppendRecord(nil, r2), enc) {
			t.Fatal("encoding not stable")
		}
	})
}

func sameRecord(a, b Record) bool {
	if a.Kind != b.Kind || a.Group != b.Group || a.Index != b.Index || a.Term != b.Term || a.Replace != b.Replace {
		return false
	}
	if !proto.Equal(a.HardState, b.HardState) || len(a.Entries) != len(b.Entries) {
		return false
	}
	for i := range a.Entries {
		if !proto.Equal(a.Entries[i], b.Entries[i]) {
			return false
		}
	}
	return true
}

func FuzzDecodeSnapshot(f *testing.F) {
	s := &pb.Snapshot{Data: []byte("abc"), Metadata: &pb.SnapshotMetadata{Index: new(uint64(4)), Term: new(uint64(2)), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}}}
	b, _ := encodeSnapshot(s, true)
	f.Add(b)
	f.Add([]byte(snapMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := decodeSnapshot(b)
		if err != nil {
			return
		}
		enc, err := encodeSnapshot(sf.snap, sf.received)
		if err != nil {
			t.Fatal(err)
		}
		sf2, err := decodeSnapshot(enc)
		if err != nil || !proto.Equal(sf.snap, sf2.snap) || sf.received != sf2.received {
			t.Fatalf("round trip: %v", err)
		}
	})
}
