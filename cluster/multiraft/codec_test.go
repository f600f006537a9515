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

func TestQuiesceMessagesRoundTrip(t *testing.T) {
	notice := quiesceNotice(1, 2, 7, 42)
	wake := wakeRequest(2, 1, 7, 42)
	commit, term := uint64(42), uint64(7)
	plainHB := &pb.Message{Type: pb.MsgHeartbeat.Enum(), Term: &term, Commit: &commit}
	plainResp := &pb.Message{Type: pb.MsgHeartbeatResp.Enum(), Term: &term}
	b, err := appendBatch(nil, []groupMsg{{group: 5, msg: notice}, {group: 6, msg: wake}, {group: 7, msg: plainHB}, {group: 8, msg: plainResp}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeBatch(b)
	if err != nil || len(got) != 4 {
		t.Fatalf("decode: %d messages, %v", len(got), err)
	}
	if !isQuiesceNotice(got[0].msg) || isWakeRequest(got[0].msg) || got[0].msg.GetCommit() != 42 || got[0].msg.GetTerm() != 7 {
		t.Errorf("notice decoded as %v", got[0].msg)
	}
	if !isWakeRequest(got[1].msg) || isQuiesceNotice(got[1].msg) {
		t.Errorf("wake request decoded as %v", got[1].msg)
	}
	if isQuiesceNotice(got[2].msg) || isWakeRequest(got[3].msg) {
		t.Error("raft's own heartbeat or response taken for a quiescence message")
	}
	// A liveness beat is an empty batch and an epoch.
	beat := appendBeat(nil, 1<<40+3)
	if got, err := decodeBatch(beat); err != nil || len(got) != 0 {
		t.Fatalf("beat: %v, %v", got, err)
	}
	if e, err := beatEpoch(beat[1:]); err != nil || e != 1<<40+3 {
		t.Fatalf("beat epoch: %d, %v", e, err)
	}
	if _, err := decodeBatch(append(beat, 0)); err == nil {
		t.Fatal("a beat with trailing bytes decoded")
	}
}
