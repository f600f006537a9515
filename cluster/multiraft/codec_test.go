package multiraft

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func FuzzDecodeBatch(f *testing.F) {
	seed, _ := appendBatch(nil, []groupMsg{
		{group: 1, msg: &pb.Message{Type: pb.MsgApp.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(3)),
			Entries: []*pb.Entry{{Index: new(uint64(4)), Term: new(uint64(3)), Data: []byte("x")}}}},
		{group: 1 << 40, msg: &pb.Message{Type: pb.MsgHeartbeat.Enum()}},
	})
	f.Add(seed)
	f.Add([]byte{0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeBatch(b)
		if err != nil {
			return
		}
		enc, err := appendBatch(nil, msgs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeBatch(enc)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-decode: %v", err)
		}
		for i := range msgs {
			if again[i].group != msgs[i].group || !proto.Equal(again[i].msg, msgs[i].msg) {
				t.Fatalf("message %d changed", i)
			}
		}
	})
}

func TestProposalHeader(t *testing.T) {
	b := appendProposal(nil, 7, 1<<60, []byte("data"))
	node, seq, data, ok := parseProposal(b)
	if !ok || node != 7 || seq != 1<<60 || string(data) != "data" {
		t.Fatalf("got %d %d %q %v", node, seq, data, ok)
	}
	if _, _, _, ok := parseProposal(b[:15]); ok {
		t.Fatal("short header parsed")
	}
}
