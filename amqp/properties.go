package amqp

import (
	"encoding/binary"
	"errors"
)

// ContentHeader is a content header frame's payload decoded: the body size and
// the properties. The raw payload is kept by the caller and relayed byte for
// byte; this decoding is only for what routing and queues need.
type ContentHeader struct {
	ClassID  uint16
	BodySize uint64
	Properties
}

// DecodeContentHeader decodes a content header payload (spec 4.2.6.1).
// Continuation flag words (bit 0 set) are read and ignored.
func DecodeContentHeader(p []byte) (ContentHeader, error) {
	var h ContentHeader
	r := reader{b: p}
	h.ClassID = r.short()
	r.short() // weight, unused
	h.BodySize = r.longlong()
	h.Flags = r.short()
	for flags := h.Flags; flags&1 != 0 && r.err == nil; {
		flags = r.short()
	}
	h.Properties.decode(&r)
	if r.err != nil {
		return h, errors.Join(ErrMalformed, errors.New("content header"))
	}
	return h, nil
}

// AppendContentHeader appends a content header payload for class basic with
// the given properties; Flags is computed from which fields are set.
func AppendContentHeader(b []byte, bodySize uint64, p *Properties) []byte {
	w := writer{b: b}
	w.short(ClassBasic)
	w.short(0)
	w.longlong(bodySize)
	w.short(p.Flags)
	p.encode(&w)
	return w.b
}

// BodySizeOffset is where the body size sits in a content header payload.
const BodySizeOffset = 4

// HeaderBodySize reads the body size from a raw content header payload.
func HeaderBodySize(p []byte) uint64 { return binary.BigEndian.Uint64(p[BodySizeOffset:]) }
