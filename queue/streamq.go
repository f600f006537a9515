package queue

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue/stream"
)

// A stream queue (x-queue-type stream) keeps its messages in an
// append-only log (package stream) instead of a ready list: a publish
// appends, a consumer reads from its own position (x-stream-offset) and an
// ack only gives back credit (the message stays for the next reader), as
// RabbitMQ's streams behave over AMQP 0-9-1
// (https://www.rabbitmq.com/streams.html). The queue keeps nothing per
// message in memory: each consumer has a reader with a small read-ahead,
// and what it has been handed and not acked is bounded by its prefetch.
//
// Deliveries run on the queue's goroutine, as for other queues: a kick
// (new records synced, credit back, a consumer added) makes it feed every
// consumer with credit from its reader, a batch at a time, round-robin.
// sq.mu plays the queue lock's part in the lock order (queue → channel).

// Stream start kinds (x-stream-offset).
const (
	StartNext   = iota // only what is appended from now on (the default)
	StartFirst         // the oldest record kept
	StartLast          // the last record
	StartOffset        // a given offset
	StartTime          // the first record appended at or after a time
	StartLastN         // the last N records (a negative offset; Warren's, as LavinMQ)
)

// StreamStart is where a stream consumer starts.
type StreamStart struct {
	Kind   int
	Offset uint64 // StartOffset; the count for StartLastN
	Time   time.Time
}

// ParseStreamOffset reads an x-stream-offset consumer argument: first,
// last, next, an offset, a negative count (the last N), a timestamp, or an
// interval back from now such as "1h" (units Y M D h m s). ok is false for
// anything else.
func ParseStreamOffset(v any, now time.Time) (StreamStart, bool) {
	switch v := v.(type) {
	case nil:
		return StreamStart{Kind: StartNext}, true
	case string:
		switch v {
		case "first":
			return StreamStart{Kind: StartFirst}, true
		case "last":
			return StreamStart{Kind: StartLast}, true
		case "next":
			return StreamStart{Kind: StartNext}, true
		}
		if d, ok := ParseStreamAge(v); ok {
			return StreamStart{Kind: StartTime, Time: now.Add(-d)}, true
		}
		return StreamStart{}, false
	case time.Time:
		return StreamStart{Kind: StartTime, Time: v}, true
	}
	if n, ok := amqp.Int(v); ok {
		if n < 0 {
			return StreamStart{Kind: StartLastN, Offset: uint64(-n)}, true
		}
		return StreamStart{Kind: StartOffset, Offset: uint64(n)}, true
	}
	return StreamStart{}, false
}

// ParseStreamAge reads x-max-age (and the max-age policy key): a positive
// whole number and one unit of Y (365 days), M (30 days), D, h, m or s, as
// RabbitMQ takes it.
func ParseStreamAge(s string) (time.Duration, bool) {
	if len(s) < 2 {
		return 0, false
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'Y':
		unit = 365 * 24 * time.Hour
	case 'M':
		unit = 30 * 24 * time.Hour
	case 'D':
		unit = 24 * time.Hour
	case 'h':
		unit = time.Hour
	case 'm':
		unit = time.Minute
	case 's':
		unit = time.Second
	default:
		return 0, false
	}
	digits := s[:len(s)-1]
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n <= 0 || n > int64(1<<62)/int64(unit) {
		return 0, false
	}
	return time.Duration(n) * unit, true
}

// IsStream reports whether declare arguments ask for a stream.
func IsStream(args amqp.Table) bool {
	s, _ := args["x-queue-type"].(string)
	return s == "stream"
}

type streamQueue struct {
	q   *Queue
	log *stream.Log

	mu sync.Mutex
	// Guarded by mu.
	consumers []*streamConsumer
	rr        int
	nextID    int64

	published, delivered, acked atomic.Uint64
	names                       Names // the delivery goroutine's
	// replicated: the log is a member's of a replicated stream, which may
	// be behind its group; a consumer asking an offset past its end waits
	// there (SetStreamReplicated).
	replicated atomic.Bool

	// Named consumers' offsets (streamtrack.go). Lock order: mu, then
	// tmu, then the Offsets' own lock; acks take tmu without mu.
	offsets  *stream.Offsets
	nTracked atomic.Int32 // len(trackers), read without tmu
	tmu      sync.Mutex
	trackers map[int64]*tracker // by consumer id; guarded by tmu
}

type streamConsumer struct {
	c  *Consumer
	id int64
	rd *stream.Reader
	// filters are the x-stream-filter values; nil: every record.
	filters         map[string]struct{}
	matchUnfiltered bool
	failed          bool
	offset          atomic.Uint64 // the next offset it gets, for lag
	track           *tracker      // a named consumer's; nil for others
}

// NewStream creates a stream queue whose log is in cfg.StreamDir (created
// if need be, recovered if it holds one) and starts its delivery goroutine.
func NewStream(cfg Config) (*Queue, error) {
	q := &Queue{
		Config: cfg,
		kick:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	q.timer = time.NewTimer(time.Hour)
	q.timer.Stop()
	q.expTimer = time.NewTimer(time.Hour)
	q.expTimer.Stop()
	sq := &streamQueue{q: q}
	maxBytes, maxAge := streamRetention(cfg.Args, cfg.Policy)
	seg, _ := amqp.Int(cfg.Args["x-stream-max-segment-size-bytes"])
	if v, ok := amqp.Int(cfg.Policy["stream-max-segment-size-bytes"]); ok && seg == 0 {
		seg = v
	}
	l, err := stream.Open(cfg.StreamDir, stream.Options{MaxSegmentBytes: seg, MaxBytes: maxBytes, MaxAge: maxAge, OnCommit: q.Kick})
	if err != nil {
		return nil, err
	}
	sq.log = l
	if sq.offsets, err = stream.OpenOffsets(cfg.StreamDir, 0); err != nil {
		l.Close()
		return nil, err
	}
	q.sq = sq
	go sq.loop()
	return q, nil
}

// streamRetention is the effective max-length-bytes and max-age: the
// lower of argument and policy, as RabbitMQ resolves them for streams.
func streamRetention(args amqp.Table, def map[string]any) (int64, time.Duration) {
	maxBytes, _ := amqp.Int(args["x-max-length-bytes"])
	if v, ok := amqp.Int(def["max-length-bytes"]); ok && v >= 0 && (maxBytes == 0 || v < maxBytes) {
		maxBytes = v
	}
	var maxAge time.Duration
	if s, ok := args["x-max-age"].(string); ok {
		maxAge, _ = ParseStreamAge(s)
	}
	if s, ok := def["max-age"].(string); ok {
		if d, ok := ParseStreamAge(s); ok && (maxAge == 0 || d < maxAge) {
			maxAge = d
		}
	}
	return maxBytes, maxAge
}

// IsStream reports whether q is a stream queue.
func (q *Queue) IsStream() bool { return q.sq != nil }

// AfterStreamSync runs fn once everything published to the stream q so far
// is on disk (publisher confirms).
func (q *Queue) AfterStreamSync(fn func()) { q.sq.log.AfterSync(fn) }

func (sq *streamQueue) loop() {
	q := sq.q
	defer close(q.done)
	for {
		select {
		case <-q.stop:
			return
		case <-q.kick:
		}
		sq.deliver()
	}
}

// streamBatch is how many deliveries one consumer gets before the next
// one's turn.
const streamBatch = 64

func (sq *streamQueue) deliver() {
	sq.mu.Lock()
	defer sq.mu.Unlock()
	for progress := true; progress; {
		progress = false
		n := len(sq.consumers)
		for i := 0; i < n; i++ {
			sc := sq.consumers[(sq.rr+i)%n]
			if sq.feedLocked(sc) > 0 {
				progress = true
			}
		}
		if n > 0 {
			sq.rr = (sq.rr + 1) % n
		}
	}
}

// feedLocked hands sc up to streamBatch records it has credit for.
// Lock must be held.
func (sq *streamQueue) feedLocked(sc *streamConsumer) int {
	if sc.failed {
		return 0
	}
	q, n := sq.q, 0
	var skipped uint64 // a named consumer's filter skipped the records below
	for n < streamBatch && sc.c.Sink.CanTake(q, sc.c) {
		rec, ok, err := sc.rd.Next()
		if err != nil {
			// A record that does not read back: this consumer stops here
			// rather than skip it silently.
			sc.failed = true
			return n
		}
		if !ok {
			break
		}
		sc.offset.Store(rec.Offset + 1)
		if !sc.matches(rec.Filter) {
			skipped = rec.Offset + 1
			continue
		}
		if sc.track != nil {
			sq.trackDelivered(sc.track, rec.Offset)
		}
		m := sq.message(rec)
		sc.c.Sink.Deliver(q, sc.c, Entry{Msg: m, Seq: rec.Offset, ExpiresAt: sc.id})
		n++
	}
	if n > 0 {
		sq.delivered.Add(uint64(n))
	}
	if skipped > 0 && sc.track != nil {
		sq.trackSkipped(sc.track, skipped)
	}
	return n
}

// matches applies the consumer's filter exactly: RabbitMQ's Bloom filter
// lets other values through and leaves the client to drop them; Warren
// delivers only what matches.
func (sc *streamConsumer) matches(filter []byte) bool {
	if sc.filters == nil {
		return true
	}
	if len(filter) == 0 {
		return sc.matchUnfiltered
	}
	_, ok := sc.filters[string(filter)]
	return ok
}

// message builds the delivered message: the content header as published
// with x-stream-offset added to its headers, as RabbitMQ delivers it.
func (sq *streamQueue) message(rec stream.Record) *Message {
	buf := make([]byte, 0, len(rec.Header)+offsetEntryLen+4+len(rec.Body))
	buf = appendWithOffset(buf, rec.Header, rec.Offset)
	hl := len(buf)
	buf = append(buf, rec.Body...)
	return NewMessage(sq.names.InternBytes(rec.Exchange), sq.names.InternBytes(rec.RoutingKey), buf[:hl:hl], buf[hl:])
}

// offsetEntry is the header table entry x-stream-offset, a long-long
// ('l'), without its value.
const offsetEntry = "\x0fx-stream-offset" + "l"
const offsetEntryLen = len(offsetEntry) + 8

// appendWithOffset appends the content header payload h with the
// x-stream-offset header set to off, splicing the entry into the headers
// table (added last, so it wins over a publisher's own) without decoding
// the other properties.
func appendWithOffset(dst, h []byte, off uint64) []byte {
	if len(h) < 14 {
		return append(dst, h...)
	}
	flags := binary.BigEndian.Uint16(h[12:])
	p := 14
	for _, f := range [...]uint16{amqp.FlagContentType, amqp.FlagContentEncoding} {
		if flags&f != 0 {
			if p >= len(h) || p+1+int(h[p]) > len(h) {
				return append(dst, h...)
			}
			p += 1 + int(h[p])
		}
	}
	entry := func(b []byte) []byte {
		b = append(b, offsetEntry...)
		return binary.BigEndian.AppendUint64(b, off)
	}
	if flags&amqp.FlagHeaders != 0 {
		if p+4 > len(h) {
			return append(dst, h...)
		}
		tl := int(binary.BigEndian.Uint32(h[p:]))
		end := p + 4 + tl
		if end > len(h) {
			return append(dst, h...)
		}
		dst = append(dst, h[:p]...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(tl+offsetEntryLen))
		dst = append(dst, h[p+4:end]...)
		dst = entry(dst)
		return append(dst, h[end:]...)
	}
	dst = append(dst, h[:12]...)
	dst = binary.BigEndian.AppendUint16(dst, flags|amqp.FlagHeaders)
	dst = append(dst, h[14:p]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(offsetEntryLen))
	dst = entry(dst)
	return append(dst, h[p:]...)
}

// filterValue is the message's x-stream-filter-value header, if any.
func filterValue(m *Message) string {
	if m.flags&amqp.FlagHeaders == 0 {
		return ""
	}
	p := m.Props()
	s, _ := p.Headers["x-stream-filter-value"].(string)
	return s
}

func (sq *streamQueue) publish(m *Message) PublishResult {
	if _, err := sq.log.Append(filterValue(m), m.Exchange, m.RoutingKey, m.Header, m.Body); err != nil {
		return Rejected // the log cannot take it (closed, or the disk failed): nacked
	}
	sq.published.Add(1)
	return Enqueued
}

// addConsumer starts c at its x-stream-offset with its filter.
func (sq *streamQueue) addConsumer(c *Consumer) bool {
	start, _ := ParseStreamOffset(c.Args["x-stream-offset"], time.Now()) // checked by the server
	name := StreamConsumerName(c.Tag, c.Args)
	if name != "" && !explicitOffset(c.Args) {
		start, _ = sq.trackedStart(name)
	}
	off, err := sq.resolve(start)
	if err != nil {
		return false
	}
	newReader := sq.log.NewReader
	if sq.replicated.Load() {
		newReader = sq.log.NewReaderAhead
	}
	rd, err := newReader(off)
	if err != nil {
		return false
	}
	sc := &streamConsumer{c: c, rd: rd}
	sc.offset.Store(rd.Offset())
	sc.filters, sc.matchUnfiltered = streamFilters(c.Args)
	sq.mu.Lock()
	if sq.q.Deleted() {
		sq.mu.Unlock()
		rd.Close()
		return false
	}
	sq.nextID++
	sc.id = sq.nextID
	if name != "" {
		sq.trackStart(sc, name, rd.Offset())
	}
	sq.consumers = append(sq.consumers, sc)
	sq.mu.Unlock()
	sq.q.Kick()
	return true
}

// streamFilters reads x-stream-filter (a string or an array of strings)
// and x-stream-match-unfiltered.
func streamFilters(args amqp.Table) (map[string]struct{}, bool) {
	var vals []string
	switch v := args["x-stream-filter"].(type) {
	case string:
		vals = []string{v}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				vals = append(vals, s)
			}
		}
	default:
		return nil, false
	}
	m := make(map[string]struct{}, len(vals))
	for _, s := range vals {
		m[s] = struct{}{}
	}
	mu, _ := args["x-stream-match-unfiltered"].(bool)
	return m, mu
}

// resolve turns a start into an offset.
func (sq *streamQueue) resolve(s StreamStart) (uint64, error) {
	info := sq.log.Info()
	switch s.Kind {
	case StartFirst:
		return info.First, nil
	case StartLast:
		if info.Next > info.First {
			return info.Next - 1, nil
		}
		return info.First, nil
	case StartOffset:
		return s.Offset, nil
	case StartLastN:
		if s.Offset >= info.Next-info.First {
			return info.First, nil
		}
		return info.Next - s.Offset, nil
	case StartTime:
		return sq.log.OffsetAt(s.Time.UnixMilli())
	}
	return info.Next, nil
}

func (sq *streamQueue) removeConsumer(c *Consumer) bool {
	sq.mu.Lock()
	defer sq.mu.Unlock()
	for i, sc := range sq.consumers {
		if sc.c == c {
			sq.trackStop(sc)
			sc.rd.Close()
			sq.consumers = append(sq.consumers[:i], sq.consumers[i+1:]...)
			if sq.rr > i {
				sq.rr--
			}
			return true
		}
	}
	return false
}

func (sq *streamQueue) ack(es []Entry) {
	sq.acked.Add(uint64(len(es)))
	sq.trackAcks(es)
	sq.q.Kick() // credit came back
}

// StreamInfo describes a stream for listings.
type StreamInfo struct {
	First, Last uint64 // offsets of the oldest and newest records kept (Last < First: empty)
	Messages    uint64
	Bytes       int64
	Segments    int
	Consumers   []StreamConsumerInfo
	// Tracking lists the named consumers' stored offsets, by name.
	Tracking []StreamTracking
}

// StreamConsumerInfo is one stream consumer's position.
type StreamConsumerInfo struct {
	Tag    string
	Name   string // its tracking name; "" when not named
	Offset uint64 // the next offset it gets
	Lag    uint64 // records between it and the end of the stream
}

func (sq *streamQueue) snapshot() Snapshot {
	info := sq.log.Info()
	si := &StreamInfo{First: info.First, Last: info.Committed - 1, Messages: info.Messages(), Bytes: info.Bytes, Segments: info.Segments}
	s := Snapshot{Ready: int(info.Messages()), ReadyBytes: info.Bytes, Stream: si,
		Stats: Stats{Published: sq.published.Load(), Delivered: sq.delivered.Load(), Acked: sq.acked.Load()}}
	sq.mu.Lock()
	for _, sc := range sq.consumers {
		s.Consumers = append(s.Consumers, *sc.c)
		off := sc.offset.Load()
		lag := uint64(0)
		if info.Committed > off {
			lag = info.Committed - off
		}
		ci := StreamConsumerInfo{Tag: sc.c.Tag, Offset: off, Lag: lag}
		if sc.track != nil {
			ci.Name = sc.track.name
		}
		si.Consumers = append(si.Consumers, ci)
	}
	sq.mu.Unlock()
	si.Tracking = sq.tracking()
	return s
}

// peek reads up to n records from offset, for browsing: the messages as a
// consumer would get them.
func (sq *streamQueue) peek(offset, n int) ([]Entry, int) {
	info := sq.log.Info()
	total := int(info.Messages())
	rd, err := sq.log.NewReader(uint64(offset))
	if err != nil {
		return nil, total
	}
	defer rd.Close()
	var names Names
	var out []Entry
	for len(out) < n {
		rec, ok, err := rd.Next()
		if err != nil || !ok {
			break
		}
		buf := appendWithOffset(nil, rec.Header, rec.Offset)
		hl := len(buf)
		buf = append(buf, rec.Body...)
		m := NewMessage(names.InternBytes(rec.Exchange), names.InternBytes(rec.RoutingKey), buf[:hl:hl], buf[hl:])
		out = append(out, Entry{Msg: m, Seq: rec.Offset})
	}
	return out, total
}

// stop ends the delivery goroutine and closes the log (broker shutdown).
func (sq *streamQueue) stop(remove bool) []*Consumer {
	q := sq.q
	q.mu.Lock()
	if q.deleted || q.stopped {
		q.mu.Unlock()
		return nil
	}
	if remove {
		q.deleted = true
	} else {
		q.stopped = true
	}
	q.mu.Unlock()
	close(q.stop)
	<-q.done
	sq.mu.Lock()
	consumers := make([]*Consumer, 0, len(sq.consumers))
	for _, sc := range sq.consumers {
		sq.trackStop(sc)
		sc.rd.Close()
		consumers = append(consumers, sc.c)
	}
	sq.consumers = nil
	sq.mu.Unlock()
	if err := sq.offsets.Close(); err != nil {
		_ = err // named consumers resume from the last offsets written
	}
	if remove {
		if err := sq.log.Delete(); err != nil {
			_ = err // the directory may be left behind; the next restart sweeps it
		}
	} else {
		sq.log.Close()
	}
	return consumers
}

func (sq *streamQueue) setPolicy(def map[string]any) {
	sq.log.SetRetention(streamRetention(sq.q.Args, def))
}

// StreamDirName is the directory of stream queue id under a data directory.
func StreamDirName(id uint64) string { return fmt.Sprintf("%d", id) }

// StreamLog is the log of the stream queue q: a replicated stream's
// members read and restore it directly (amqp/server/stream_replica.go).
func (q *Queue) StreamLog() *stream.Log { return q.sq.log }

// SetStreamReplicated marks the stream queue q's log as a member's of a
// replicated stream. Its offsets are the group's, but it may be behind the
// group (partitioned, or restarted and catching up): a consumer asking for
// an offset past its end (one it read on another member, a reconnecting
// client's next) then starts there once the log gets to it, rather than at
// the log's end, which would hand it again what it had and take its offsets
// back within one subscription.
func (q *Queue) SetStreamReplicated() { q.sq.replicated.Store(true) }

// AppendStream appends m to the stream queue q's log with the timestamp ts
// (Unix ms) its group's log gave it, and returns its offset: how a member
// of a replicated stream applies a publish.
func (q *Queue) AppendStream(ts int64, m *Message) (uint64, error) {
	off, err := q.sq.log.AppendAt(ts, filterValue(m), m.Exchange, m.RoutingKey, m.Header, m.Body)
	if err == nil {
		q.sq.published.Add(1)
	}
	return off, err
}
