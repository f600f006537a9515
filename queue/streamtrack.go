package queue

import (
	"sort"
	"strings"

	"github.com/warren-mq/warren/amqp"
)

// Named stream consumers (Warren's, as LavinMQ's automatic offset
// tracking): a consumer that names itself resumes where the last consumer
// of that name stopped, tracked by the broker.
//
// A consumer is named by x-stream-consumer-name, or by its consumer tag
// when it sets x-stream-automatic-offset-tracking true and the tag is its
// own (not a server-generated amq.ctag-…). The name is scoped to the
// stream (so to its vhost), and goes when the stream is deleted.
//
// What is stored is the offset after the longest run of that consumer's
// deliveries that are all acked (records its filter skipped count as
// done): the oldest delivery not yet acked, or, with none outstanding,
// the offset after the last record it read. Acks may come in any order;
// an unacked delivery holds the stored offset back, so a crash or a
// reconnect gives again exactly what was not acked, and never skips.
// Deliveries given back unacked (the channel closed, basic.recover) stay
// unacked for this purpose. It is updated on every ack, on subscribe (an
// explicit x-stream-offset resets it) and when the consumer goes; the
// sidecar file follows in batches (stream.Offsets).
//
// At subscribe, an explicit x-stream-offset wins, as in RabbitMQ's stream
// clients; without one a named consumer starts at its stored offset, or
// at next if the name is new. Consumers sharing a name share its offset:
// the last update wins.

// Stream consumer arguments for offset tracking.
const (
	StreamConsumerNameArg = "x-stream-consumer-name"
	StreamAutoTrackingArg = "x-stream-automatic-offset-tracking"
)

// StreamConsumerName is the tracking name of a stream consumer with this
// tag and these arguments, "" for one that is not tracked.
func StreamConsumerName(tag string, args amqp.Table) string {
	if s, _ := args[StreamConsumerNameArg].(string); s != "" {
		return s
	}
	if auto, _ := args[StreamAutoTrackingArg].(bool); auto && tag != "" && !strings.HasPrefix(tag, "amq.ctag-") {
		return tag
	}
	return ""
}

// tracker follows one named consumer's deliveries and acks.
// Guarded by streamQueue.tmu.
type tracker struct {
	id   int64 // the consumer's
	name string
	pend []pending // deliveries not acked, in offset order, from head
	head int
	// pos is the offset after the last record the consumer's reader gave
	// it (delivered or skipped by its filter).
	pos     uint64
	out     int  // pending entries neither acked nor given back
	removed bool // the consumer is gone; acks may still come
}

type pending struct {
	off      uint64
	returned bool // given back unacked
}

// resume is the offset the consumer's name resumes from.
func (t *tracker) resume() uint64 {
	if t.head < len(t.pend) {
		return t.pend[t.head].off
	}
	return t.pos
}

// find returns the index of off among the pending deliveries, or -1.
func (t *tracker) find(off uint64) int {
	p := t.pend[t.head:]
	i := sort.Search(len(p), func(i int) bool { return p[i].off >= off })
	if i < len(p) && p[i].off == off {
		return t.head + i
	}
	return -1
}

// acked removes off from the pending deliveries.
func (t *tracker) acked(off uint64) {
	i := t.find(off)
	if i < 0 {
		return
	}
	if !t.pend[i].returned {
		t.out--
	}
	copy(t.pend[i:], t.pend[i+1:])
	t.pend = t.pend[:len(t.pend)-1]
	if t.head == len(t.pend) {
		t.pend, t.head = t.pend[:0], 0
	} else if t.head > 64 && t.head*2 > len(t.pend) {
		n := copy(t.pend, t.pend[t.head:])
		t.pend, t.head = t.pend[:n], 0
	}
}

// trackDelivered records that off goes to the consumer: called before
// the delivery, so its ack cannot come first.
func (sq *streamQueue) trackDelivered(t *tracker, off uint64) {
	sq.tmu.Lock()
	if t.head > 0 && t.head == len(t.pend) {
		t.pend, t.head = t.pend[:0], 0
	}
	t.pend = append(t.pend, pending{off: off})
	t.out++
	t.pos = off + 1
	sq.tmu.Unlock()
}

// trackSkipped records that the consumer's filter skipped the records
// below to. Called once per feed, not per record: a position that lags
// only makes the name resume earlier.
func (sq *streamQueue) trackSkipped(t *tracker, to uint64) {
	sq.tmu.Lock()
	t.pos = max(t.pos, to)
	sq.tmu.Unlock()
}

// requeue is Requeue for a stream: nothing goes back (every consumer has
// its own position), but a named consumer's tracker learns that these
// deliveries will not be acked.
func (sq *streamQueue) requeue(es []Entry) {
	sq.trackReturns(es)
	sq.q.Kick() // the credit is back
}

// explicitOffset reports whether consume arguments name a start (a void
// x-stream-offset, as LavinMQ takes it, names none).
func explicitOffset(args amqp.Table) bool {
	v, ok := args["x-stream-offset"]
	return ok && v != nil
}

// trackStart registers c's tracker (c is named) from offset on, and
// stores that as the name's offset.
func (sq *streamQueue) trackStart(sc *streamConsumer, name string, offset uint64) {
	t := &tracker{id: sc.id, name: name, pos: offset}
	sq.tmu.Lock()
	if sq.trackers == nil {
		sq.trackers = map[int64]*tracker{}
	}
	sq.trackers[sc.id] = t
	sq.nTracked.Store(int32(len(sq.trackers)))
	sc.track = t
	sq.offsets.Set(name, offset)
	sq.tmu.Unlock()
}

// trackedStart is where a consumer named name starts without an explicit
// offset: its stored offset, else next.
func (sq *streamQueue) trackedStart(name string) (StreamStart, bool) {
	if off, ok := sq.offsets.Get(name); ok {
		return StreamStart{Kind: StartOffset, Offset: off}, true
	}
	return StreamStart{Kind: StartNext}, false
}

// trackAcks settles acked deliveries of named consumers and stores their
// names' new offsets.
func (sq *streamQueue) trackAcks(es []Entry) {
	if sq.nTracked.Load() == 0 {
		return
	}
	sq.tmu.Lock()
	defer sq.tmu.Unlock()
	var last *tracker
	for i := range es {
		t := sq.trackers[es[i].ExpiresAt]
		if t == nil {
			continue
		}
		t.acked(es[i].Seq)
		if last != nil && last != t {
			sq.storeLocked(last)
		}
		last = t
	}
	if last != nil {
		sq.storeLocked(last)
	}
}

// trackReturns marks deliveries given back unacked.
func (sq *streamQueue) trackReturns(es []Entry) {
	if sq.nTracked.Load() == 0 {
		return
	}
	sq.tmu.Lock()
	defer sq.tmu.Unlock()
	for i := range es {
		t := sq.trackers[es[i].ExpiresAt]
		if t == nil {
			continue
		}
		if j := t.find(es[i].Seq); j >= 0 && !t.pend[j].returned {
			t.pend[j].returned = true
			t.out--
		}
		sq.storeLocked(t)
	}
}

// trackStop stores the offset of a consumer that goes. Its tracker stays
// while deliveries are outstanding (acks after basic.cancel still count).
func (sq *streamQueue) trackStop(sc *streamConsumer) {
	if sc.track == nil {
		return
	}
	sq.tmu.Lock()
	sc.track.removed = true
	sq.storeLocked(sc.track)
	sq.tmu.Unlock()
}

// storeLocked stores t's name's offset, and drops t once its consumer is
// gone and nothing it was given can still be acked. Lock (tmu) must be
// held.
func (sq *streamQueue) storeLocked(t *tracker) {
	sq.offsets.Set(t.name, t.resume())
	if t.removed && t.out == 0 {
		delete(sq.trackers, t.id)
		sq.nTracked.Store(int32(len(sq.trackers)))
	}
}

// ForgetStreamConsumer forgets the stored offset of the stream consumer
// name; false when q is not a stream or does not track name. A consumer of
// that name still connected stores it again at its next ack.
func (q *Queue) ForgetStreamConsumer(name string) bool {
	return q.sq != nil && q.sq.offsets.Delete(name)
}

// StreamTracking is a named consumer's stored offset.
type StreamTracking struct {
	Name string
	// Offset is where a consumer of this name resumes; Synced is the
	// offset on disk (what a crash now would resume from, never later
	// than Offset's progress).
	Offset, Synced uint64
}

func (sq *streamQueue) tracking() []StreamTracking {
	all := sq.offsets.All()
	if len(all) == 0 {
		return nil
	}
	out := make([]StreamTracking, len(all))
	for i, t := range all {
		out[i] = StreamTracking{Name: t.Name, Offset: t.Offset, Synced: t.Synced}
	}
	return out
}
