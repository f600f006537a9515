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
