// Package queue owns a queue's messages and consumers: the ready list in
// publish order, consumer selection (priority, then strict round-robin among
// consumers with credit), and requeue to the original position.
//
// A queue has one delivery goroutine, started when it is created and woken by
// a one-slot kick channel, so a burst of publishes or acks costs one wake-up.
// Delivery happens under the queue's lock and calls into the consumer's Sink,
// which takes its own (channel) lock: the lock order is queue → channel.
// Unacked deliveries are tracked by the consuming channel, which settles them
// back here with Ack and Requeue after releasing its own lock.
//
// Memory: a queue with a journal keeps the head of its ready list in memory
// and pages the rest out (paging.go); how much head it keeps is bounded by
// its PageWindow and by the node-wide Budget it shares with every other
// queue (budget.go). Messages are kept lean for this (message.go): the raw
// content header plus a few cached fields, no decoded properties.
package queue
