package multiraft

import (
	"encoding/binary"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/cluster/transport"
)

// Coalesced heartbeats. Busy groups (not quiesced) heartbeat as plain Raft
// does, every HeartbeatTicks, and followers answer each. Between two nodes
// that share many busy groups that is two protobuf messages per group per
// beat, of about 20–30 bytes each inside the peer's frame. As CockroachDB
// does, a node sends the plain heartbeats and responses of all groups for a
// peer as one KindHeartbeats frame of compact records instead:
//
//	count uvarint
//	count × { group uvarint, type uint8 (0 heartbeat, 1 response),
//	          term uvarint, commit uvarint (heartbeats only) }
//
// From and To are the frame's sender and receiver. Only plain ones travel
// so: no quiesce notice or wake request (their Index is set), no ReadIndex
// context; every other message keeps its protobuf form in the KindRaft
// frame. A frame with count 0 announces that its sender reads them: a node
// coalesces only for a peer that announced it (a node of an older version
// drops a kind it does not know, and gets plain messages), and announces
// itself to each peer once per connection and again when the peer
// restarts.

// KindHeartbeats is the transport kind of coalesced heartbeat frames (the
// two kinds after KindRaft are the cluster package's).
const KindHeartbeats = transport.FirstUserKind + 3

// coalescible reports whether m is a plain heartbeat or response, which a
// compact record carries whole.
func coalescible(m *pb.Message) bool {
	t := m.GetType()
	if t != pb.MsgHeartbeat && t != pb.MsgHeartbeatResp {
		return false
	}
	if m.Index != nil || len(m.Context) > 0 || m.GetLogTerm() != 0 || len(m.Entries) > 0 ||
		m.Snapshot != nil || m.GetReject() || m.GetRejectHint() != 0 || len(m.Responses) > 0 {
		return false
	}
	return t == pb.MsgHeartbeat || m.GetCommit() == 0
}

func appendHeartbeats(dst []byte, msgs []groupMsg) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	for _, m := range msgs {
		dst = binary.AppendUvarint(dst, m.group)
		if m.msg.GetType() == pb.MsgHeartbeat {
			dst = append(dst, 0)
			dst = binary.AppendUvarint(dst, m.msg.GetTerm())
			dst = binary.AppendUvarint(dst, m.msg.GetCommit())
		} else {
			dst = append(dst, 1)
			dst = binary.AppendUvarint(dst, m.msg.GetTerm())
		}
	}
	return dst
}

// decodeHeartbeats decodes a KindHeartbeats payload from node from to node
// to, bounding the count by the bytes that remain.
func decodeHeartbeats(b []byte, from, to uint64) ([]groupMsg, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errBatch
	}
	b = b[n:]
	// Each record takes at least 3 bytes (group, type, term).
	if count > uint64(len(b))/3 {
		return nil, fmt.Errorf("%w: %d heartbeats in %d bytes", errBatch, count, len(b))
	}
	out := make([]groupMsg, 0, count)
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	for range count {
		group, ok := uv()
		if !ok || len(b) == 0 {
			return nil, errBatch
		}
		typ := b[0]
		b = b[1:]
		term, ok := uv()
		if !ok {
			return nil, errBatch
		}
		// One allocation per heartbeat: the message and the fields it points to.
		hb := &decodedHeartbeat{term: term}
		m := &hb.m
		m.From, m.To, m.Term = &from, &to, &hb.term
		switch typ {
		case 0:
			if hb.commit, ok = uv(); !ok {
				return nil, errBatch
			}
			hb.typ = pb.MsgHeartbeat
			m.Commit = &hb.commit
		case 1:
			hb.typ = pb.MsgHeartbeatResp
		default:
			return nil, fmt.Errorf("%w: heartbeat type %d", errBatch, typ)
		}
		m.Type = &hb.typ
		out = append(out, groupMsg{group: group, msg: m})
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBatch, len(b))
	}
	return out, nil
}

type decodedHeartbeat struct {
	m            pb.Message
	term, commit uint64
	typ          pb.MessageType
}

// onHeartbeats steps a coalesced heartbeat frame from a peer (the
// transport's reader goroutine for that peer).
func (h *Host) onHeartbeats(from uint64, payload []byte, reply func([]byte, error)) {
	if reply != nil {
		reply(nil, fmt.Errorf("heartbeat frames are one-way"))
	}
	if h.closed.Load() {
		return
	}
	p := h.peer(from)
	if p == nil {
		return
	}
	p.coalesce.Store(true)
	p.heard.Store(h.tickNo.Load())
	msgs, err := decodeHeartbeats(payload, from, h.cfg.NodeID)
	if err != nil {
		h.log.Warn("bad heartbeat frame", zap.Uint64("peer", from), zap.Error(err))
		return
	}
	h.step(from, msgs)
}

// sendHeartbeats sends to peer to the coalescible messages of msgs as one
// KindHeartbeats frame, when the peer reads them, and returns the others.
// It announces this node first if it has not yet.
func (h *Host) sendHeartbeats(to uint64, msgs []groupMsg) []groupMsg {
	if h.cfg.DisableCoalescing {
		return msgs
	}
	p := h.peer(to)
	if p == nil {
		return msgs
	}
	if !p.announced.Load() {
		if h.tr.Send(to, KindHeartbeats, announceHeartbeats) == nil {
			p.announced.Store(true)
		}
	}
	if !p.coalesce.Load() {
		return msgs
	}
	rest := msgs[:0:0]
	var hbs []groupMsg
	for _, m := range msgs {
		if coalescible(m.msg) {
			hbs = append(hbs, m)
		} else {
			rest = append(rest, m)
		}
	}
	if len(hbs) == 0 {
		return msgs
	}
	h.hbBuf = appendHeartbeats(h.hbBuf[:0], hbs)
	if err := h.tr.Send(to, KindHeartbeats, h.hbBuf); err != nil {
		p.announced.Store(false) // the connection may be a new one, to a new run
		return msgs              // the plain frame reports them unreachable
	}
	h.heartbeats.Add(uint64(len(hbs)))
	return rest
}

// announceHeartbeats is the empty KindHeartbeats frame.
var announceHeartbeats = []byte{0}
