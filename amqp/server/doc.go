// Package server is Warren's AMQP 0-9-1 broker: the listener, connection and
// channel state machines, the vhost registry with its exchanges, queues and
// bindings, and authentication.
//
// Each connection has two goroutines. The reader runs every channel of the
// connection inline (publish, route, ack), so a channel's frames are handled
// in order and TCP pushes back on fast publishers. The writer drains the
// connection's outbound buffer with one write per wake-up and sends
// heartbeats when idle. Queue delivery goroutines append deliveries to that
// buffer under the channel's lock. See LOCKING.md for the lock order.
package server
