package queue

// Journal persists the entries of durable queues and holds the paged-out
// part of any queue. The store package implements it on Badger. Calls are
// made with the queue's lock held, so implementations only append to their
// own pending batch (their lock is a leaf) — except Load and DropFrom, which
// read the disk.
type Journal interface {
	// Append journals a persistent message entering durable queue qid at seq.
	Append(qid, seq uint64, m *Message, expiresAt int64)
	// Spill writes a transient entry that the queue pages out of memory;
	// spilled entries are discarded at startup.
	Spill(qid, seq uint64, m *Message, expiresAt int64)
	// Remove journals that an appended or spilled entry left the queue.
	Remove(qid, seq uint64, m *Message)
	// Delivered records that entries up to seq have been delivered, so that
	// after a restart they come back with redelivered set.
	Delivered(qid, seq uint64)
	// Load reads up to max entries of queue qid from seq from on, in seq
	// order, including ones not yet committed.
	Load(qid, from uint64, max int) ([]Entry, error)
	// DropFrom removes every entry of queue qid from seq from on.
	DropFrom(qid, from uint64)
	// Returned records how often the entry at seq has been returned to
	// queue qid (for delivery-limit), so that the count survives a
	// restart; 0 forgets it. Load and the store's startup read it back
	// into Entry.Returns (and set Entry.ReturnsJournaled).
	Returned(qid, seq uint64, n uint32)
}

// Spooler is implemented by journals that can hold a non-durable queue's
// paged-out tail outside the journal proper: nothing of it survives a
// restart and it only ever leaves from the front, so an append-only file
// serves it better than an index with a removal per message. Calls are made
// with the queue's lock held.
type Spooler interface {
	// SpoolWrite appends an entry to queue qid's spool.
	SpoolWrite(qid, seq uint64, m *Message, expiresAt int64)
	// SpoolRead takes up to max entries from the front of the spool, in
	// the order written. The entries are not journaled (nothing to remove).
	SpoolRead(qid uint64, max int) ([]Entry, error)
	// SpoolDrop discards queue qid's spool.
	SpoolDrop(qid uint64)
}
