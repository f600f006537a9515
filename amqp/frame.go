package amqp

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// Frame types (spec 4.2.3).
const (
	FrameTypeMethod    = FrameMethod
	FrameTypeHeader    = FrameHeader
	FrameTypeBody      = FrameBody
	FrameTypeHeartbeat = FrameHeartbeat
)

// FrameOverhead is the bytes a frame adds around its payload: type, channel,
// size and the frame-end octet.
const FrameOverhead = 8

// ProtocolHeader is what a 0-9-1 client sends first and what the server answers
// to any other header before closing (spec 4.2.2).
var ProtocolHeader = []byte{'A', 'M', 'Q', 'P', 0, 0, 9, 1}

// Frame is one decoded frame. Payload aliases the reader's buffer and is valid
// only until the next ReadFrame.
type Frame struct {
	Type    uint8
	Channel uint16
	Payload []byte
}

// FrameReader reads frames from a buffered stream, reusing one payload buffer.
type FrameReader struct {
	r   *bufio.Reader
	buf []byte
	// Max is the negotiated frame_max. As RabbitMQ does, it bounds the
	// payload, not the whole frame: a payload of up to Max octets is accepted
	// and a larger declared size is a FrameError before anything is
	// allocated (see ReadFrame).
	Max uint32
}

// NewFrameReader returns a reader for a connection whose frame_max is max.
func NewFrameReader(r *bufio.Reader, max uint32) *FrameReader {
	return &FrameReader{r: r, Max: max}
}

// ReadFrame reads the next frame. Errors: io errors as returned by the
// stream, or an *Error with code FrameError for a bad size or frame-end.
//
// It allocates nothing per frame: the header is peeked in place, and a
// payload that fits the bufio.Reader's buffer is returned from it without a
// copy (Peek's slice stays valid until the next read, the same lifetime the
// Frame promises); only larger payloads are copied into a reused buffer.
func (fr *FrameReader) ReadFrame() (Frame, error) {
	hdr, err := fr.r.Peek(7)
	if err != nil {
		if len(hdr) > 0 && err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f := Frame{Type: hdr[0], Channel: binary.BigEndian.Uint16(hdr[1:3])}
	size := binary.BigEndian.Uint32(hdr[3:7])
	fr.r.Discard(7)
	// Spec 4.2.3 makes frame_max the limit of the whole frame, but RabbitMQ
	// lets a payload exceed frame_max-8 by the 8 octets of frame overhead,
	// "since quite a few [clients] get it wrong" (rabbit_reader.erl,
	// ?FRAME_SIZE_FUDGE): a payload of exactly frame_max is accepted, one
	// octet more is refused with this text (observed on RabbitMQ 3.10 with
	// frame_max 4096: "... {frame_too_large,4097,4088}"). Output stays
	// strict: AppendContent splits bodies at frame_max-8.
	if size > fr.Max {
		return f, &Error{Code: FrameError, Text: fmt.Sprintf("FRAME_ERROR - type %d, all octets = <<>>: {frame_too_large,%d,%d}", f.Type, size, int64(fr.Max)-FrameOverhead)}
	}
	n := int(size) + 1
	var b []byte
	if n <= fr.r.Size() {
		if b, err = fr.r.Peek(n); err == nil {
			fr.r.Discard(n)
		}
	} else {
		if cap(fr.buf) < n {
			fr.buf = make([]byte, n)
		}
		b = fr.buf[:n]
		_, err = io.ReadFull(fr.r, b)
	}
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return f, err
	}
	if b[size] != FrameEnd {
		return f, &Error{Code: FrameError, Text: fmt.Sprintf("FRAME_ERROR - bad frame end octet %d", b[size])}
	}
	f.Payload = b[:size]
	return f, nil
}

// AppendFrameHeader appends a frame's 7-byte header.
func AppendFrameHeader(b []byte, typ uint8, channel uint16, size int) []byte {
	b = append(b, typ)
	b = binary.BigEndian.AppendUint16(b, channel)
	return binary.BigEndian.AppendUint32(b, uint32(size))
}

// AppendMethodFrame appends a whole method frame for m on channel.
func AppendMethodFrame(b []byte, channel uint16, m Method) []byte {
	start := len(b)
	b = AppendFrameHeader(b, FrameMethod, channel, 0)
	w := writer{b: b}
	c, id := m.IDs()
	w.short(c)
	w.short(id)
	m.encode(&w)
	b = w.b
	binary.BigEndian.PutUint32(b[start+3:], uint32(len(b)-start-7))
	return append(b, FrameEnd)
}

// AppendHeartbeat appends a heartbeat frame.
func AppendHeartbeat(b []byte) []byte {
	return append(b, FrameHeartbeat, 0, 0, 0, 0, 0, 0, FrameEnd)
}

// AppendContent appends a content header frame whose payload is header (as
// received from the publisher, byte for byte) and the body split into body
// frames no larger than frameMax.
func AppendContent(b []byte, channel uint16, header, body []byte, frameMax uint32) []byte {
	b = AppendFrameHeader(b, FrameHeader, channel, len(header))
	b = append(b, header...)
	b = append(b, FrameEnd)
	chunk := int(frameMax) - FrameOverhead
	for len(body) > 0 {
		n := min(len(body), chunk)
		b = AppendFrameHeader(b, FrameBody, channel, n)
		b = append(b, body[:n]...)
		b = append(b, FrameEnd)
		body = body[n:]
	}
	return b
}
