package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Kind says what a frame carries. Kinds below FirstUserKind belong to the
// transport itself; every kind from FirstUserKind up is free for a user to
// register with Handle (the multiraft package takes FirstUserKind for Raft
// message batches; the broker takes the kinds after it).
type Kind uint8

// Reserved kinds.
const (
	KindHello    Kind = 1 // handshake: 8-byte magic+version, 8-byte node ID
	KindPing     Kind = 2 // keeps an idle connection's read deadline fresh
	KindResponse Kind = 3 // answer to a request; ID is the request's
	KindError    Kind = 4 // failed request; payload is the error text

	// FirstUserKind is the lowest kind a user may register.
	FirstUserKind Kind = 16
)

// Frame flags.
const (
	// FlagRequest marks a frame whose sender waits for a KindResponse or
	// KindError frame with the same ID.
	FlagRequest uint8 = 1 << 0
)

// HeaderSize is the size of a frame header:
//
//	length  uint32  payload length, big endian, at most Config.MaxFrameSize
//	kind    uint8
//	flags   uint8
//	id      uint64  request ID, big endian; 0 for one-way frames
const HeaderSize = 4 + 1 + 1 + 8

// ErrFrameTooLarge is returned for a frame whose declared length is above the
// limit; the connection carrying it is closed.
var ErrFrameTooLarge = errors.New("transport: frame too large")

// Header is a decoded frame header.
type Header struct {
	Length uint32
	Kind   Kind
	Flags  uint8
	ID     uint64
}

// AppendFrame appends a frame (header and payload) to dst.
func AppendFrame(dst []byte, kind Kind, flags uint8, id uint64, payload []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(payload)))
	dst = append(dst, byte(kind), flags)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return append(dst, payload...)
}

// DecodeHeader decodes a frame header from b, which holds at least
// HeaderSize bytes, and checks its length against max before anything is
// allocated for the payload.
func DecodeHeader(b []byte, max uint32) (Header, error) {
	if len(b) < HeaderSize {
		return Header{}, fmt.Errorf("transport: short header (%d bytes)", len(b))
	}
	h := Header{
		Length: binary.BigEndian.Uint32(b[0:4]),
		Kind:   Kind(b[4]),
		Flags:  b[5],
		ID:     binary.BigEndian.Uint64(b[6:14]),
	}
	if h.Length > max {
		return h, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, h.Length, max)
	}
	return h, nil
}
