// Package store persists Warren's durable definitions and persistent
// messages on Badger. It is the only package that imports Badger.
//
// # Key layout
//
// Keys are binary and order-preserving; queue ids are numbers assigned at
// declaration, so no two queue names can collide and a queue's entries form
// one contiguous key range.
//
//	'q' qid(8, BE) seq(8, BE)  → msgID(8, BE)         one entry of a durable queue
//	'm' msgID(8, BE)           → message record        stored once, however many queues hold it
//	'w' qid(8, BE)             → seq(8, BE)            delivered watermark: entries ≤ seq were handed out
//	'd' kind(1) name           → definition (JSON)     vhosts, users, exchanges, queues, bindings
//
// A message record is exchange (1-byte length + bytes), routing key (1-byte
// length + bytes), the content header payload as published (4-byte length +
// bytes) and the body (the rest).
//
// # Group commit
//
// Queues append entry writes and removals to a pending batch under the
// store's mutex (a leaf lock). One committer goroutine swaps the batch out,
// cancels a write and a removal of the same key that met in one batch (a
// message consumed and acked before it reached the disk never touches it),
// writes the rest with one Badger WriteBatch, calls db.Sync once, and only
// then runs the batch's callbacks — publisher confirms among them. Batches
// form naturally while the previous sync runs; Append blocks when the pending
// batch exceeds maxPendingBytes, which pushes back on publishers.
//
// # Recovery
//
// Open reads the definitions; LoadQueue reads one queue's entries in key
// (= seq) order and the messages they refer to, marking entries at or below
// the delivered watermark as redelivered. Message records that no entry
// refers to are deleted at startup.
package store
