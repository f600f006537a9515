// Package transport connects the nodes of a Warren cluster: exactly one TCP
// connection per node pair (TLS when Config.TLS is set), carrying typed,
// length-prefixed binary frames, one-way or request/response.
//
// # One connection per pair
//
// Of two nodes, the one with the lower ID dials and the other only accepts,
// so they never race to open two connections. The dialer runs one goroutine
// per peer that dials with jittered exponential backoff
// (MinBackoff..MaxBackoff), exchanges hello frames (magic, version, node ID),
// and keeps the connection until it fails. A new inbound connection from a
// peer replaces the old one. Both sides send and receive on the connection.
//
// # Frames
//
//	length  uint32 BE  payload length, at most MaxFrameSize (checked before allocating)
//	kind    uint8      below FirstUserKind: hello, ping, response, error
//	flags   uint8      FlagRequest: the sender waits for an answer
//	id      uint64 BE  request ID; answers carry the request's ID
//	payload
//
// Kinds from FirstUserKind up are registered with Handle. multiraft takes
// FirstUserKind for Raft message batches, FirstUserKind+3 for coalesced
// heartbeats and FirstUserKind+4 for chunked snapshots, the cluster package
// the two between; the broker is meant to register
// its own (forwarded publishes, deliveries, RPC to a queue's leader) on the
// same connection. Request sends a FlagRequest frame and waits for the
// KindResponse or KindError frame with its ID, ctx, or the connection's loss
// (ErrConnLost). Never JSON: payloads are whatever binary the kind defines.
//
// # Goroutines and batching
//
// Per connection: a reader that dispatches every frame inline (handlers must
// not block; a request's reply func may be called later from any goroutine)
// and a writer, the only goroutine writing the socket. Send and Request only
// append the encoded frame to the connection's outbound buffer under its
// lock and kick the writer's 1-slot channel; the writer swaps the buffer and
// writes everything queued with one Write, so all the frames a ready cycle
// produced for a peer leave in one syscall. An idle connection sends a ping
// every IdleTimeout/3; one that receives nothing for IdleTimeout is closed.
// Send fails fast (ErrUnreachable, ErrBackpressure past MaxQueueBytes) rather
// than queue for a dead peer: Raft retries, and the host reports the peer
// unreachable to raft.
//
// Plus one accept loop per Serve call and one dial loop per higher-ID peer.
// Close stops them all, fails waiting requests and waits for every goroutine.
//
// # Locks
//
// Transport.mu (peers, handlers, listeners) before peer.mu (the peer's
// address and live connection) before conn.mu (outbound buffer, pending
// requests). No socket I/O under any of them.
package transport
