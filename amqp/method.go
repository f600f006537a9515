package amqp

import (
	"encoding/binary"
	"fmt"
)

// Method is one generated AMQP method struct.
type Method interface {
	// IDs returns the method's class and method id.
	IDs() (classID, methodID uint16)
	// Name is "class.method" as in the spec, e.g. "basic.publish".
	Name() string
	Synchronous() bool
	HasContent() bool
	decode(r *reader)
	encode(w *writer)
}

// DecodeMethod decodes a method frame's payload. An unknown class or method is
// a 540 NOT_IMPLEMENTED-free 503 COMMAND_INVALID; bytes that do not parse are
// 502 SYNTAX_ERROR, the codes RabbitMQ uses.
func DecodeMethod(p []byte) (Method, error) {
	if len(p) < 4 {
		return nil, &Error{Code: SyntaxError, Text: "SYNTAX_ERROR - method frame too short"}
	}
	classID, methodID := binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
	m := newMethod(classID, methodID)
	if m == nil {
		return nil, &Error{Code: CommandInvalid, Text: fmt.Sprintf("COMMAND_INVALID - unknown method class %d method %d", classID, methodID), ClassID: classID, MethodID: methodID}
	}
	if err := DecodeMethodInto(m, p); err != nil {
		return nil, err
	}
	return m, nil
}

// DecodeMethodInto decodes p, which must carry m's class and method ids, into
// m. The hot path uses it to reuse one struct per connection.
func DecodeMethodInto(m Method, p []byte) error {
	// The per-message methods get static calls so that their reader stays
	// on the stack; through the interface call it escapes (one allocation
	// per frame), which the rest can afford.
	var err error
	switch m := m.(type) {
	case *BasicPublish:
		r := reader{b: p, off: 4}
		m.decode(&r)
		err = r.err
	case *BasicAck:
		r := reader{b: p, off: 4}
		m.decode(&r)
		err = r.err
	case *BasicNack:
		r := reader{b: p, off: 4}
		m.decode(&r)
		err = r.err
	case *BasicReject:
		r := reader{b: p, off: 4}
		m.decode(&r)
		err = r.err
	default:
		r := &reader{b: p, off: 4}
		m.decode(r)
		err = r.err
	}
	if err != nil {
		return (&Error{Code: SyntaxError, Text: fmt.Sprintf("SYNTAX_ERROR - malformed %s", m.Name())}).For(m)
	}
	return nil
}

// MethodIDs returns the class and method id at the start of a method payload.
func MethodIDs(p []byte) (classID, methodID uint16, ok bool) {
	if len(p) < 4 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]), true
}

// EncodeMethod returns the payload of a method frame: ids and fields.
func EncodeMethod(m Method) []byte {
	w := writer{}
	c, id := m.IDs()
	w.short(c)
	w.short(id)
	m.encode(&w)
	return w.b
}
