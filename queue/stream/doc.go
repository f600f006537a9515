// Package stream owns the on-disk log of a stream queue (x-queue-type
// stream): an append-only sequence of records numbered by offset, written
// once and read by any number of readers, each at its own position.
//
// # Files
//
// A stream lives in a directory of its own. Its log is cut into segment
// files named by the offset of their first record (%020d.seg), each with a
// sparse index beside it (%020d.idx). A segment is closed once it would
// grow past MaxSegmentBytes; only the last one is written to.
//
// A record is
//
//	length u32     of what follows the CRC
//	crc    u32     CRC-32C (Castagnoli) of what follows it
//	offset u64
//	ts     i64     append time, Unix milliseconds (never decreasing)
//	filter u16 length + bytes   x-stream-filter-value, empty for none
//	exch   u8 length + bytes
//	key    u8 length + bytes
//	header u32 length + bytes   the content header payload as published
//	body   the rest
//
// An index entry (24 bytes: offset u64, ts i64, file position u64) is
// written for the first record of a segment and then for the first record
// at least IndexInterval bytes after the previous entry, so seeking to an
// offset or a time reads one index file and at most IndexInterval bytes of
// records. Indexes are not synced: Open checks them against their segment
// and rebuilds what is missing.
//
// # Writing
//
// Append encodes a record into a write buffer under the log's mutex; one
// flusher goroutine swaps the buffer out, writes it (rolling segments on
// the way), fsyncs the segment once per batch and only then makes the
// records visible to readers and runs the AfterSync callbacks (publisher
// confirms). Batches form while the previous fsync runs. Append blocks
// while the buffer holds more than maxBuffered bytes, which pushes back on
// publishers.
//
// # Reading
//
// A Reader is a cursor: a segment, a file position and a small read-ahead
// buffer. Readers never copy the log; they read the synced part of the
// files with pread through their own file handles, so a segment that
// retention deletes stays readable to a reader already in it. Memory does
// not grow with the length of the log or with the number of readers beyond
// one read-ahead buffer each; the log keeps only a few fields per segment.
//
// # Retention
//
// MaxBytes and MaxAge drop whole segments from the front, never the last
// one, checked when a segment is closed and every RetentionEvery. MaxBytes
// counts the closed segments, so what it drops depends on the records
// only (the members of a replicated stream drop the same segments).
//
// # Tracked offsets
//
// Offsets (offsets.go) keeps named consumers' offsets in the sidecar file
// "offsets" of the stream's directory: magic "WSO1", a count, one update
// (name length u8, name, offset u64) per name, and a CRC-32C. It is
// rewritten whole, at most once per FlushEvery, through a synced
// temporary file renamed over it. An update is a small deterministic
// operation (the last update of a name wins), encoded by AppendUpdate, so
// a replicated stream can carry updates as log entries.
//
// # Recovery
//
// Open lists the segments, reads each index's last entry and scans forward
// from it; the last segment's torn tail (a record whose length or CRC does
// not check, left by a crash mid-write) is cut off. What was confirmed was
// synced, so it is never in the torn tail.
package stream
