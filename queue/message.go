package queue

import (
	"encoding/binary"

	"github.com/warren-mq/warren/amqp"
)

// Message is one published message, shared by every queue it was routed to.
// It is immutable once routed.
//
// A queue may hold millions of messages in memory, so a message is kept
// lean: the content header stays in the wire form it arrived in (relayed
// byte for byte, decoded only by the rare features that need more than the
// few fields cached here), the header and the body share one allocation
// (NewMessage's caller makes it), and Exchange and RoutingKey are interned
// by the publishing connection. The struct itself is 96 bytes.
type Message struct {
	Exchange   string
	RoutingKey string
	// Header is the content header frame's payload exactly as published; it
	// is relayed byte for byte.
	Header []byte
	Body   []byte

	// StoreID belongs to the Journal: the id of the message's shared record
	// on disk, 0 when it has none. The journal guards it with its own lock.
	StoreID uint64

	// Decoded from Header by NewMessage: what routing and queues read for
	// every message.
	flags        uint16
	deliveryMode uint8
	priority     uint8

	// StoreInline asks the journal to keep the message inside its one
	// queue entry rather than in a shared record: the router sets it when
	// exactly one durable queue takes the message (the common case), so a
	// restart reads each queue with one sequential scan.
	StoreInline bool
}

// NewMessage returns a message with the content header payload header
// (class, weight, body size, flags, properties: AMQP 0-9-1 section 4.2.6.1)
// and body. It reads the property flags, delivery mode and priority from
// header without decoding the rest.
func NewMessage(exchange, routingKey string, header, body []byte) *Message {
	m := &Message{Exchange: exchange, RoutingKey: routingKey, Header: header, Body: body}
	m.scanHeader()
	return m
}

// scanHeader caches the flags, delivery mode and priority of m.Header.
// Properties come in flag order: content-type and content-encoding
// (shortstr), headers (table: 4-byte length), delivery-mode, priority
// (octets).
func (m *Message) scanHeader() {
	h := m.Header
	if len(h) < 14 {
		return
	}
	m.flags = binary.BigEndian.Uint16(h[12:])
	p := h[14:]
	for _, f := range [...]uint16{amqp.FlagContentType, amqp.FlagContentEncoding} {
		if m.flags&f != 0 {
			if len(p) < 1 || len(p) < 1+int(p[0]) {
				return
			}
			p = p[1+int(p[0]):]
		}
	}
	if m.flags&amqp.FlagHeaders != 0 {
		if len(p) < 4 {
			return
		}
		n := binary.BigEndian.Uint32(p)
		if uint64(len(p)) < 4+uint64(n) {
			return
		}
		p = p[4+n:]
	}
	if m.flags&amqp.FlagDeliveryMode != 0 {
		if len(p) < 1 {
			return
		}
		m.deliveryMode, p = p[0], p[1:]
	}
	if m.flags&amqp.FlagPriority != 0 && len(p) >= 1 {
		m.priority = p[0]
	}
}

// Props decodes the message's properties from its header. It allocates;
// hot paths use Persistent, Priority and Flags instead.
func (m *Message) Props() amqp.Properties {
	if len(m.Header) == 0 {
		return amqp.Properties{}
	}
	h, err := amqp.DecodeContentHeader(m.Header)
	if err != nil {
		// Headers are validated when published and when read back from
		// disk; an undecodable one carries no properties.
		return amqp.Properties{}
	}
	return h.Properties
}

// SetProps replaces the message's properties, re-encoding its header. Only
// before the message is routed.
func (m *Message) SetProps(p *amqp.Properties) {
	m.Header = amqp.AppendContentHeader(nil, uint64(len(m.Body)), p)
	m.flags, m.deliveryMode, m.priority = p.Flags, p.DeliveryMode, p.Priority
}

// Flags returns the property flags (amqp.FlagHeaders, ...).
func (m *Message) Flags() uint16 { return m.flags }

// Persistent reports delivery mode 2.
func (m *Message) Persistent() bool { return m.deliveryMode == 2 }

// Priority returns the priority property and whether it is set.
func (m *Message) Priority() (uint8, bool) {
	return m.priority, m.flags&amqp.FlagPriority != 0
}

// Headers returns the headers table, decoding the header only when the
// message has one.
func (m *Message) Headers() amqp.Table {
	if m.flags&amqp.FlagHeaders == 0 {
		return nil
	}
	return m.Props().Headers
}

// Entry is a message's place in one queue. Fields are ordered so that it
// packs into 32 bytes: a deep queue holds one per message.
type Entry struct {
	Msg *Message
	// Seq orders the queue: a requeued entry goes back to its Seq position.
	Seq uint64
	// ExpiresAt is when the message expires (unix ns), 0 for never.
	ExpiresAt int64
	// Returns counts requeues (nack, reject, channel close), for the
	// delivery-limit policy; journaled where ReturnsJournaled says.
	Returns     uint32
	Redelivered bool
	// Journaled is set when the entry is on disk (a persistent message in a
	// durable queue, or a spilled one) and must be removed from the journal
	// when it leaves.
	Journaled bool
	// Spilled marks a transient entry paged out to disk (and read back).
	Spilled bool
	// ReturnsJournaled is set when the journal holds Returns for this entry
	// (a durable queue with a delivery limit), to be forgotten with it.
	ReturnsJournaled bool
}
