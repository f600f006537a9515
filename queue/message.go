package queue

import "github.com/warren-mq/warren/amqp"

// Message is one published message, shared by every queue it was routed to.
// It is immutable once routed.
type Message struct {
	Exchange   string
	RoutingKey string
	// Header is the content header frame's payload exactly as published; it
	// is relayed byte for byte.
	Header []byte
	Body   []byte
	// Props is the decoded form of Header, for routing and queue features.
	Props amqp.Properties

	// StoreID belongs to the Journal: the id of the message's shared record
	// on disk, 0 when it has none. The journal guards it with its own lock.
	StoreID uint64
	// StoreInline asks the journal to keep the message inside its one
	// queue entry rather than in a shared record: the router sets it when
	// exactly one durable queue takes the message (the common case), so a
	// restart reads each queue with one sequential scan.
	StoreInline bool
}

// Persistent reports delivery mode 2.
func (m *Message) Persistent() bool { return m.Props.DeliveryMode == 2 }

// Entry is a message's place in one queue.
type Entry struct {
	Msg *Message
	// Seq orders the queue: a requeued entry goes back to its Seq position.
	Seq         uint64
	Redelivered bool
	// ExpiresAt is when the message expires (unix ns), 0 for never.
	ExpiresAt int64
	// Journaled is set when the entry is on disk (a persistent message in a
	// durable queue, or a spilled one) and must be removed from the journal
	// when it leaves.
	Journaled bool
	// Spilled marks a transient entry paged out to disk (and read back).
	Spilled bool
	// ReturnsJournaled is set when the journal holds Returns for this entry
	// (a durable queue with a delivery limit), to be forgotten with it.
	ReturnsJournaled bool
	// Returns counts requeues (nack, reject, channel close), for the
	// delivery-limit policy; journaled where ReturnsJournaled says.
	Returns uint32
}
