// Package store persists Warren's durable definitions and persistent
// messages on Badger. It is the only package that imports Badger.
//
// # Key layout
//
// Keys are binary and order-preserving; queue ids are numbers assigned at
// declaration, so no two queue names can collide and a queue's entries form
// one contiguous key range.
//
//	'q' qid(8, BE) seq(8, BE)  → kind(1) expiresAt(8) payload   one entry of a queue
//	'm' msgID(8, BE)           → message record                 shared by several queues, stored once
//	'w' qid(8, BE)             → seq(8, BE)                     delivered watermark: entries ≤ seq were handed out
//	'r' qid(8, BE) seq(8, BE)  → count(4, BE)                   how often the entry was returned (delivery-limit)
//	'd' kind(1) name           → definition (JSON)              exchanges, queues, bindings, vhosts, users, policies, global and runtime parameters (kinds in defs.go)
//	'd' 'x' vhost 0 exchange 0 id → [expiresAt ms, seq] (JSON)  a deduplication id a durable exchange remembers
//	'Q' group(8, BE) id(8, BE) → at(8) ttl(8) message record      a replicated queue's message on a member (replicated.go)
//	'R' group(8, BE) id(8, BE) → count(4, BE)                    how often that message was returned (delivery-limit)
//
// An entry's kind says what its payload is: 1, the message record itself
// (a persistent message that went to one durable queue, the common case, so
// a restart reads each queue with one sequential scan); 2, the 8-byte id of
// a shared record (a message fanned out to several durable queues, stored
// once; the store counts references in memory and deletes the record with
// the last one); 3, the record of a transient message that a queue paged out
// of memory (discarded at startup). expiresAt is the entry's TTL deadline in
// Unix nanoseconds, 0 for none, so deadlines survive restarts and paging.
//
// A message record is exchange (1-byte length + bytes), routing key (1-byte
// length + bytes), the content header payload as published (4-byte length +
// bytes) and the body (the rest).
//
// # Paging
//
// A queue keeps at most a window of ready messages in memory
// (queue.DefaultPageWindow), and all queues together at most the node's
// memory budget (queue.Budget); beyond that new entries go to the store only
// and are read back in seq order as the in-memory part drains, so memory
// stays bounded however deep and however many the queues get. The budget's
// pager also moves the newest in-memory entries of deep queues to the store
// (durable entries are already there and are only dropped from memory). A durable queue pages into Badger
// (Append for persistent messages, Spill for transient ones, read back with
// Load). A non-durable queue pages into its spool (spool.go, queue.Spooler):
// append-only segment files in <dir>-spool/<qid>/, read from the front, a
// segment deleted once read, the whole spool deleted at startup — no index
// insert, tombstone, compaction or sync per message. All spools' write and
// read-ahead buffers share 16 MB, so thousands of paging queues do not
// hold more in buffers than the budget holds in messages.
//
// # Replicated queues
//
// A quorum queue's group (a Raft group, amqp/server/replica.go) keeps its
// unsettled messages on every member under 'Q' group id, written as the
// log's entries apply and deleted as they are settled; only ids and sizes
// stay in memory. These writes never ask for a sync: the group's log is
// the durable record and applying it again is idempotent. The state
// machine flushes the store only when it checkpoints (which lets the log
// behind the checkpoint go). The leader's queue pages in from the same keys.
//
// # Group commit
//
// Queues append entry writes and removals to a pending batch under the
// store's mutex (a leaf lock). One committer goroutine swaps the batch out,
// cancels a write and a removal of the same key that met in one batch (a
// message consumed and acked before it reached the disk never touches it),
// writes the rest with one Badger WriteBatch, calls db.Sync once, and only
// then runs the batch's callbacks — publisher confirms among them. A batch
// of only removals and spilled transient entries skips the sync (the data is
// in the page cache, so a process crash cannot lose it; a power loss could
// at worst bring back acknowledged messages); the next batch that needs a
// sync makes it cover them too. Batches
// form naturally while the previous sync runs; Append blocks when the pending
// batch exceeds maxPendingBytes (8 MB) or maxPendingOps (100,000), which
// pushes back on publishers. The committer never waits on purpose: a batch
// closes when the previous sync returns, so a write waits at most about one
// sync (a few milliseconds) before its own.
//
// # Recovery
//
// Open reads the definitions; LoadQueueHead reads one queue's entries in key
// (= seq) order, its head into memory (its share of the memory budget;
// entries at or below the delivered watermark marked redelivered) and a
// count of the rest, whose values it neither copies nor decodes. The
// server loads the queues on every core at once. Sweep then deletes
// entries of queues that no longer exist, spilled transient entries and
// records that no entry refers to.
//
// # Disk space
//
// Small messages live in the LSM tree (value threshold 4 KB), where
// compaction drops deleted keys; larger bodies go to the value log, which a
// GC pass reclaims every minute. A drained backlog leaves tombstones that a
// quiet LSM tree would keep for ever, so once 50,000 deletions have piled up
// and the store has been idle for 5 s, the GC pass also flattens the tree,
// which drops them and returns the space.
package store
