package queue

import (
	"strconv"

	"github.com/warren-mq/warren/amqp"
)

// Message deduplication on a queue, as the community
// rabbitmq-message-deduplication plugin and LavinMQ do it: a queue declared
// with x-message-deduplication true does not enqueue a message whose id
// (the value of its x-deduplication-header header, or of the header the
// queue's x-deduplication-header argument names) equals that of a message
// still in the queue, ready or unacked. The id leaves with its message
// (ack, auto-ack delivery, expiry, drop-head, dead-lettering, purge). A
// message without the header is never a duplicate.

// DedupHeader is the header that carries a message's deduplication id.
const DedupHeader = "x-deduplication-header"

// Duplicate is the PublishResult of a message a deduplicating queue
// already holds: not enqueued, and not an error (the publish is confirmed).
const Duplicate PublishResult = 255

type dedupSet struct {
	header string
	ids    map[string]struct{}
}

// DedupEnabled reports whether arguments turn deduplication on.
func DedupEnabled(args amqp.Table) bool {
	on, _ := args["x-message-deduplication"].(bool)
	return on
}

// DedupHeaderOf is the header that carries ids under these arguments.
func DedupHeaderOf(args amqp.Table) string {
	if h, ok := args["x-deduplication-header"].(string); ok && h != "" {
		return h
	}
	return DedupHeader
}

func newDedupSet(args amqp.Table) *dedupSet {
	if !DedupEnabled(args) {
		return nil
	}
	return &dedupSet{header: DedupHeaderOf(args), ids: map[string]struct{}{}}
}

// DedupID returns the deduplication id in header h of a message's
// properties: strings and byte arrays as they are, integers in decimal,
// other values in a canonical text; ok is false without the header.
func DedupID(p *amqp.Properties, h string) (string, bool) {
	v, ok := p.Headers[h]
	if !ok {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	if n, ok := amqp.Int(v); ok {
		return strconv.FormatInt(n, 10), true
	}
	return string(amqp.AppendTable(nil, amqp.Table{"": v})), true
}

// idOf reads the id of m from its headers (decoded from its content
// header only when it has headers).
func (d *dedupSet) idOf(m *Message) (string, bool) {
	if m.Flags()&amqp.FlagHeaders == 0 {
		return "", false
	}
	p := amqp.Properties{Flags: amqp.FlagHeaders, Headers: m.Headers()}
	return DedupID(&p, d.header)
}

// enterLocked records m's id and reports whether m may be enqueued.
// Lock must be held.
func (d *dedupSet) enterLocked(m *Message) bool {
	id, ok := d.idOf(m)
	if !ok {
		return true
	}
	if _, dup := d.ids[id]; dup {
		return false
	}
	d.ids[id] = struct{}{}
	return true
}

// leaveLocked forgets m's id: m left the queue. Lock must be held.
func (d *dedupSet) leaveLocked(m *Message) {
	if id, ok := d.idOf(m); ok {
		delete(d.ids, id)
	}
}

// dedupDiskDroppedLocked: the paged-out part was dropped in bulk (purge),
// without a look at its ids. The set is rebuilt from what remains in
// memory; ids of unacked deliveries are forgotten with it (a duplicate of
// one may then be enqueued). Lock must be held.
func (q *Queue) dedupDiskDroppedLocked() {
	clear(q.dedup.ids)
	q.ready.each(func(e *Entry) { q.dedup.enterLocked(e.Msg) })
}

// dedupRestoredLocked enters the ids of restored entries and drops (and
// settles with the journal) an entry whose id an earlier one has: a
// replicated queue's new leader can inherit both copies when the old one
// was lost before it settled the second (amqp/server/replica.go). Lock must
// be held.
func (q *Queue) dedupRestoredLocked(es []Entry) []Entry {
	kept := es[:0]
	for _, e := range es {
		if q.dedup.enterLocked(e.Msg) {
			kept = append(kept, e)
		} else if q.Journal != nil {
			q.Journal.Remove(q.ID, e.Seq, e.Msg)
		}
	}
	return kept
}

// restoreDedupDiskLocked adds the ids of the paged-out part after a
// restart, read back in pages: the ids are the queue's messages, so they
// survive as the messages do. Lock must be held.
func (q *Queue) restoreDedupDiskLocked() {
	from := q.disk.From
	for left := q.disk.N; left > 0 && q.Journal != nil; {
		page, err := q.Journal.Load(q.ID, from, min(left, 4096))
		if err != nil || len(page) == 0 {
			return
		}
		for i := range page {
			q.dedup.enterLocked(page[i].Msg)
		}
		left -= len(page)
		from = page[len(page)-1].Seq + 1
	}
}
