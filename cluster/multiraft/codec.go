package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A Raft batch frame's payload holds every message one ready cycle produced
// for one peer, across all groups:
//
//	count uvarint
//	count × { group uvarint, length uvarint, raftpb.Message (protobuf) }
//
// A batch with no message is a liveness beat (see quiesce.go): it says that
// its sender is up, and which run of it, so that a restart is noticed even
// when it is quicker than the liveness timeout:
//
//	0      uvarint  (no message)
//	epoch  uvarint  the sender's run, fixed from start to close; 0 unknown
//
// Two messages that raft itself never produces carry quiescence (raft never
// sets Index on a heartbeat or on a heartbeat response; raft ignores the
// field in both, so a node that does not know them takes them as plain ones):
//
//   - quiesce notice: MsgHeartbeat with Index set (to the leader's last
//     index, which equals Commit): the leader stops ticking the group and
//     asks the follower to do the same.
//   - wake request: MsgHeartbeatResp with Index set (to the follower's
//     commit index): a follower asks its quiesced leader to tick again.
//
// The heartbeat Context field is not usable for this: raft echoes it back
// and reads it as a ReadIndex position.

var errBatch = errors.New("multiraft: malformed raft batch")

type groupMsg struct {
	group uint64
	g     *Group // the sending group; nil for decoded messages
	msg   *pb.Message
}

func appendBatch(dst []byte, msgs []groupMsg) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(msgs)))
	opts := proto.MarshalOptions{}
	for _, m := range msgs {
		dst = binary.AppendUvarint(dst, m.group)
		size := opts.Size(m.msg)
		dst = binary.AppendUvarint(dst, uint64(size))
		var err error
		dst, err = opts.MarshalAppend(dst, m.msg)
		if err != nil {
			return nil, fmt.Errorf("multiraft: marshal message: %w", err)
		}
	}
	return dst, nil
}

// decodeBatch decodes a Raft batch payload, bounding every count and length
// by the bytes that remain.
func decodeBatch(b []byte) ([]groupMsg, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errBatch
	}
	b = b[n:]
	if count == 0 {
		if _, err := beatEpoch(b); err != nil {
			return nil, err
		}
		return nil, nil
	}
	// Each message takes at least 2 bytes (group, length).
	if count > uint64(len(b))/2 {
		return nil, fmt.Errorf("%w: %d messages in %d bytes", errBatch, count, len(b))
	}
	out := make([]groupMsg, 0, count)
	for range count {
		group, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, errBatch
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errBatch
		}
		b = b[n:]
		m := &pb.Message{}
		if err := proto.Unmarshal(b[:size], m); err != nil {
			return nil, fmt.Errorf("%w: %w", errBatch, err)
		}
		b = b[size:]
		out = append(out, groupMsg{group: group, msg: m})
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errBatch, len(b))
	}
	return out, nil
}

// Every entry this package proposes starts with a header naming its
// proposer, so the proposer can match the applied entry to the waiting
// Propose call:
//
//	node uint64 BE   proposing node
//	seq  uint64 BE   proposal number, unique on that node across restarts
const proposalHeaderSize = 16

func appendProposal(dst []byte, node, seq uint64, data []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, node)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return append(dst, data...)
}

func parseProposal(b []byte) (node, seq uint64, data []byte, ok bool) {
	if len(b) < proposalHeaderSize {
		return 0, 0, nil, false
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), b[proposalHeaderSize:], true
}

func appendBeat(dst []byte, epoch uint64) []byte {
	dst = binary.AppendUvarint(dst, 0)
	return binary.AppendUvarint(dst, epoch)
}

// beatEpoch decodes what follows a beat's zero count: the epoch, or nothing
// (epoch 0).
func beatEpoch(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, nil
	}
	epoch, n := binary.Uvarint(b)
	if n <= 0 || n != len(b) {
		return 0, fmt.Errorf("%w: bad beat", errBatch)
	}
	return epoch, nil
}

// quiesceNotice is the message a quiescing leader sends each caught-up
// follower: a heartbeat at term carrying commit (its last index).
func quiesceNotice(from, to, term, commit uint64) *pb.Message {
	return &pb.Message{
		Type:   pb.MsgHeartbeat.Enum(),
		From:   &from,
		To:     &to,
		Term:   &term,
		Commit: &commit,
		Index:  &commit,
	}
}

func isQuiesceNotice(m *pb.Message) bool {
	return m.GetType() == pb.MsgHeartbeat && m.Index != nil
}

// wakeRequest is what a follower that woke up sends its leader so that the
// leader ticks again (and heartbeats) too.
func wakeRequest(from, to, term, commit uint64) *pb.Message {
	return &pb.Message{
		Type:  pb.MsgHeartbeatResp.Enum(),
		From:  &from,
		To:    &to,
		Term:  &term,
		Index: &commit,
	}
}

func isWakeRequest(m *pb.Message) bool {
	return m.GetType() == pb.MsgHeartbeatResp && m.Index != nil
}
