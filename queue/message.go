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

	// StoreID and StoreRefs belong to the Journal: the message's id on disk
	// (0 until first journaled) and how many queue entries on disk refer to
	// it. The journal guards them with its own lock.
	StoreID   uint64
	StoreRefs int32
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
	// durable queue) and must be removed from the journal when it leaves.
	Journaled bool
}
