package multiraft

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func TestHeartbeatCodec(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	hb := &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: u(1), To: u(2), Term: u(7), Commit: u(1 << 40)}
	resp := &pb.Message{Type: pb.MsgHeartbeatResp.Enum(), From: u(1), To: u(2), Term: u(7)}
	for _, m := range []*pb.Message{hb, resp} {
		if !coalescible(m) {
			t.Fatalf("%v is coalescible", m)
		}
	}
	for _, m := range []*pb.Message{
		quiesceNotice(1, 2, 7, 9), wakeRequest(1, 2, 7, 9),
		{Type: pb.MsgHeartbeat.Enum(), Term: u(7), Context: []byte("read-index")},
		{Type: pb.MsgHeartbeatResp.Enum(), Term: u(7), Context: []byte("read-index")},
		{Type: pb.MsgApp.Enum(), Term: u(7)},
	} {
		if coalescible(m) {
			t.Fatalf("%v is not coalescible", m)
		}
	}
	b := appendHeartbeats(nil, []groupMsg{{group: 3, msg: hb}, {group: 1 << 50, msg: resp}})
	got, err := decodeHeartbeats(b, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].group != 3 || got[1].group != 1<<50 || !proto.Equal(got[0].msg, hb) || !proto.Equal(got[1].msg, resp) {
		t.Fatalf("decoded %+v", got)
	}
	plain, _ := appendBatch(nil, []groupMsg{{group: 3, msg: hb}, {group: 1 << 50, msg: resp}})
	if len(b) >= len(plain) {
		t.Errorf("coalesced %d bytes, plain %d", len(b), len(plain))
	}
	for _, bad := range [][]byte{nil, {5, 1, 0}, append(b, 0), b[:len(b)-1], {1, 3, 9, 7}} {
		if _, err := decodeHeartbeats(bad, 1, 2); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
}

func FuzzDecodeHeartbeats(f *testing.F) {
	u := func(v uint64) *uint64 { return &v }
	f.Add(appendHeartbeats(nil, []groupMsg{{group: 3, msg: &pb.Message{Type: pb.MsgHeartbeat.Enum(), Term: u(7), Commit: u(9)}}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, err := decodeHeartbeats(b, 1, 2)
		if err != nil {
			return
		}
		again, err := decodeHeartbeats(appendHeartbeats(nil, msgs), 1, 2)
		if err != nil || len(again) != len(msgs) {
			t.Fatalf("re-encoded: %v, %d of %d", err, len(again), len(msgs))
		}
		for i := range msgs {
			if !proto.Equal(msgs[i].msg, again[i].msg) || msgs[i].group != again[i].group {
				t.Fatalf("message %d: %v then %v", i, msgs[i].msg, again[i].msg)
			}
		}
	})
}

// Busy groups' heartbeats travel coalesced, one frame per peer, and a node
// that does not read them (an older version) gets plain ones: its groups
// keep their leaders either way.
func TestCoalescedHeartbeats(t *testing.T) {
	const groups = 20
	for _, mixed := range []bool{false, true} {
		t.Run(fmt.Sprintf("mixed=%v", mixed), func(t *testing.T) {
			c := newTestClusterPerNode(t, 3, func(cfg *Config) { cfg.DisableQuiescence = true }, func(id uint64, cfg *Config) {
				cfg.DisableCoalescing = mixed && id == 3
			})
			c.startGroups(groups)
			leaders := map[uint64]uint64{}
			terms := map[uint64]uint64{}
			for g := uint64(1); g <= groups; g++ {
				leaders[g] = c.leader(g)
				terms[g] = c.nodes[leaders[g]].h.Group(g).Term()
			}
			before := map[uint64]Stats{}
			for id := uint64(1); id <= 3; id++ {
				before[id] = c.nodes[id].h.Stats()
			}
			time.Sleep(500 * time.Millisecond) // 50 heartbeat intervals
			for id := uint64(1); id <= 3; id++ {
				s := c.nodes[id].h.Stats()
				hbs := s.Heartbeats - before[id].Heartbeats
				if mixed && id == 3 {
					if s.Heartbeats != 0 {
						t.Errorf("node 3 does not coalesce, but sent %d coalesced", s.Heartbeats)
					}
					continue
				}
				if hbs < groups*10 {
					t.Errorf("node %d sent %d coalesced heartbeats in 500 ms for %d groups", id, hbs, groups)
				}
			}
			for g := uint64(1); g <= groups; g++ {
				if l := c.leader(g); l != leaders[g] || c.nodes[l].h.Group(g).Term() != terms[g] {
					t.Errorf("group %d: leader %d term %d, was %d term %d", g, l, c.nodes[l].h.Group(g).Term(), leaders[g], terms[g])
				}
			}
			c.proposeAll(groups, "after")
		})
	}
}

// BenchmarkHeartbeatCodec: encoding and decoding 1,000 groups' heartbeats
// to one peer, coalesced and as plain Raft messages.
func BenchmarkHeartbeatCodec(b *testing.B) {
	msgs := make([]groupMsg, 1000)
	for i := range msgs {
		term, commit, from, to := uint64(3), uint64(100000+i), uint64(1), uint64(2)
		msgs[i] = groupMsg{group: uint64(i) | 1<<63, msg: &pb.Message{Type: pb.MsgHeartbeat.Enum(), From: &from, To: &to, Term: &term, Commit: &commit}}
	}
	b.Run("coalesced", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf = appendHeartbeats(buf[:0], msgs)
			if _, err := decodeHeartbeats(buf, 1, 2); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf))/1000, "B/heartbeat")
	})
	b.Run("plain", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf, _ = appendBatch(buf[:0], msgs)
			if _, err := decodeBatch(buf); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(buf))/1000, "B/heartbeat")
	})
}

// The cluster package takes the two kinds after KindRaft (cluster/node.go).
func TestHeartbeatKindFree(t *testing.T) {
	if KindHeartbeats <= KindRaft+2 {
		t.Fatalf("KindHeartbeats %d collides with the cluster's kinds", KindHeartbeats)
	}
}
