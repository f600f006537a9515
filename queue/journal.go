package queue

// Journal persists the entries of durable queues. The store package
// implements it on Badger; a queue without a journal keeps everything in
// memory. Calls are made with the queue's lock held, so implementations
// only append to their own pending batch (their lock is a leaf).
type Journal interface {
	// Append journals a persistent message entering queue qid at seq.
	Append(qid, seq uint64, m *Message)
	// Remove journals that the entry left the queue (acked, dropped,
	// expired, dead-lettered, purged or deleted).
	Remove(qid, seq uint64, m *Message)
	// Delivered records that entries up to seq have been delivered, so that
	// after a restart they come back with redelivered set.
	Delivered(qid, seq uint64)
}
