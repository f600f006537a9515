// Package wal is the durable state of every Raft group on a node: one
// write-ahead log shared by all groups, and one snapshot file per group.
//
// Sharing one log is what lets thousands of groups cost one fsync per batch
// instead of one per group (RabbitMQ's Ra does the same; see
// shared/design/CLUSTER.md). The host's ready loop is the only writer: it
// fills a Batch with the records of every group that has work and calls
// Append once, which writes it with one write and one fsync.
//
// # Files
//
//	<dir>/<seq as 16 hex digits>.wal    segments, oldest first
//	<dir>/snap/<group, 16 hex>.snap     latest snapshot of each group
//
// # Records
//
//	length  uint32 LE   body length, 1..MaxRecordSize
//	crc     uint32 LE   CRC-32C of the body
//	body    kind uint8, group uvarint, then by kind:
//	  entries     count, then per entry: index, term, type (uint8), data length, data
//	  hard state  term, vote, commit
//	  snapshot    index, term, flags (1 = replace: the leader's snapshot replaced the log)
//	  remove      nothing: the group left this node
//
// Every length is checked against the bytes that remain before anything is
// allocated; DecodeRecord is fuzzed (FuzzDecodeRecord).
//
// # Recovery
//
// Open loads the snapshot files, then replays the segments in order into one
// state per group: entries starting at index i replace everything from i on
// (a new leader rewrote the log), a replace marker voids the entries before
// it, a remove record forgets the group. A torn tail in the last segment (a
// crash mid-write: short record, bad CRC, impossible length, zero fill) is
// truncated at the first bad record and the WAL goes on from there; a bad
// record in an older segment is an error wrapping ErrCorrupt, since fsynced
// data was lost. The result, GroupState per group, feeds raft.MemoryStorage.
//
// # Segments and compaction
//
// A segment is closed at Options.SegmentSize; the next one opens with a
// checkpoint of every live group's HardState and snapshot index, so older
// segments matter only for their entries. ReleaseSegments deletes the oldest
// segments while every group with entries in them has a snapshot at or above
// those entries (a prefix only, so replay sees a suffix of history). Pinning
// names the groups holding the oldest segment, so the host can snapshot an
// idle group instead of letting it keep old segments forever, the complaint
// RabbitMQ users have about Ra (rabbitmq-server #2505).
//
// Snapshot files are written to a .tmp file, fsynced, renamed and the
// directory fsynced.
//
// # Locks
//
// WAL.mu guards the open segment, the segment list and the per-group
// bookkeeping; it is a leaf lock. Append holds it across the write and fsync:
// there is one writer, and the lock only keeps Stats and SaveSnapshot from
// racing it.
package wal
