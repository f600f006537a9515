package server

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/queue/stream"
)

// testStreamReplica is a member's state machine over a stream log in dir.
func testStreamReplica(t *testing.T, dir string) *streamReplica {
	s := New(Config{})
	v := s.vhosts["/"]
	require.NotNil(t, v)
	qq, err := queue.NewStream(queue.Config{Name: "s", Durable: true, Args: amqp.Table{"x-queue-type": "stream"},
		StreamDir: dir})
	require.NoError(t, err)
	q := &Queue{Queue: qq, srv: s}
	v.mu.Lock()
	v.replicateStream(q, 9, []string{"a", "b", "c"})
	v.mu.Unlock()
	t.Cleanup(func() { qq.Stop() })
	return q.srepl
}

// streamEntry is a publish entry stamped ts with body b (and a filter value
// when filter is set).
func streamEntry(ts int64, b, filter string) multiraft.Entry {
	p := &amqp.Properties{}
	if filter != "" {
		p.Flags, p.Headers = amqp.FlagHeaders, amqp.Table{"x-stream-filter-value": filter}
	}
	hdr := amqp.AppendContentHeader(nil, uint64(len(b)), p)
	data := appendStreamEntry(queue.NewMessage("", "s", hdr, []byte(b)))
	// The proposer's clock, as the entry carries it.
	for i := range 8 {
		data[1+i] = byte(uint64(ts) >> (56 - 8*i))
	}
	return multiraft.Entry{Data: data}
}

type streamRec struct {
	off    uint64
	ts     int64
	body   string
	filter string
}

func readAll(t *testing.T, l *stream.Log) []streamRec {
	t.Helper()
	done := make(chan struct{})
	l.AfterSync(func() { close(done) })
	<-done
	rd, err := l.NewReader(0)
	require.NoError(t, err)
	defer rd.Close()
	var out []streamRec
	for {
		rec, ok, err := rd.Next()
		require.NoError(t, err)
		if !ok {
			return out
		}
		out = append(out, streamRec{rec.Offset, rec.Timestamp, string(rec.Body), string(rec.Filter)})
	}
}

// Members apply the same entries to the same log: offsets by count,
// timestamps from the entries (never decreasing), filter values from the
// headers; entries applied again after a restart are skipped.
func TestStreamStateMachine(t *testing.T) {
	var es []multiraft.Entry
	for i := range 6 {
		f := ""
		if i%2 == 0 {
			f = "even"
		}
		ts := int64(1000 + 10*i)
		if i == 3 {
			ts = 1005 // a leader whose clock is behind: raised to the last one
		}
		es = append(es, streamEntry(ts, fmt.Sprint("m", i), f))
	}
	es = append(es, multiraft.Entry{}) // a new leader's empty entry takes no offset
	es = append(es, streamEntry(2000, "m6", ""))
	want := []streamRec{{0, 1000, "m0", "even"}, {1, 1010, "m1", ""}, {2, 1020, "m2", "even"}, {3, 1020, "m3", ""},
		{4, 1040, "m4", "even"}, {5, 1050, "m5", ""}, {6, 2000, "m6", ""}}

	a, b := testStreamReplica(t, t.TempDir()), testStreamReplica(t, t.TempDir())
	res := a.sm.Apply(es[:4])
	require.Equal(t, uint64(3), res[3].Value)
	a.sm.Apply(es[4:])
	b.sm.Apply(es)
	require.Equal(t, want, readAll(t, a.q.StreamLog()))
	require.Equal(t, want, readAll(t, b.q.StreamLog()))

	// A checkpoint after four entries; a restart applies the entries after
	// it again over a log that has them all.
	dir := t.TempDir()
	c := testStreamReplica(t, dir)
	c.sm.Apply(es[:4])
	cp, err := c.sm.Snapshot()
	require.NoError(t, err)
	c.sm.Apply(es[4:])
	readAll(t, c.q.StreamLog())
	c.q.Queue.Stop()
	c2 := testStreamReplica(t, dir)
	require.NoError(t, c2.sm.Restore(cp))
	res = c2.sm.Apply(es[4:])
	require.Equal(t, uint64(6), res[len(res)-1].Value)
	require.Equal(t, want, readAll(t, c2.q.StreamLog()))
	c2.sm.Apply([]multiraft.Entry{streamEntry(3000, "m7", "")})
	require.Equal(t, streamRec{7, 3000, "m7", ""}, readAll(t, c2.q.StreamLog())[7])
}

// A member behind gets the leader's records from a snapshot: it appends
// those it lacks, or starts over at the snapshot's first offset when its
// log ends before it; a snapshot larger than the bound starts later.
func TestStreamSnapshot(t *testing.T) {
	var es []multiraft.Entry
	for i := range 50 {
		es = append(es, streamEntry(int64(1000+i), fmt.Sprintf("m%02d", i), map[bool]string{true: "f"}[i%5 == 0]))
	}
	lead := testStreamReplica(t, t.TempDir())
	lead.sm.Apply(es)
	full, err := lead.sm.SnapshotData()
	require.NoError(t, err)
	want := readAll(t, lead.q.StreamLog())

	behind := testStreamReplica(t, t.TempDir())
	behind.sm.Apply(es[:20])
	require.NoError(t, behind.sm.Restore(full))
	require.Equal(t, want, readAll(t, behind.q.StreamLog()))
	behind.sm.Apply([]multiraft.Entry{streamEntry(5000, "next", "")})
	require.Equal(t, streamRec{50, 5000, "next", ""}, readAll(t, behind.q.StreamLog())[50])

	// Bounded: the newest records that fit; the member's log starts there.
	part, err := streamSnapshot(lead.q.StreamLog(), 50, 1000)
	require.NoError(t, err)
	require.Less(t, len(part), 1100)
	empty := testStreamReplica(t, t.TempDir())
	require.NoError(t, empty.sm.Restore(part))
	got := readAll(t, empty.q.StreamLog())
	require.NotEmpty(t, got)
	require.Greater(t, got[0].off, uint64(0))
	require.Equal(t, want[got[0].off:], got)
	empty.sm.Apply([]multiraft.Entry{streamEntry(5000, "next", "")})
	got = readAll(t, empty.q.StreamLog())
	require.Equal(t, streamRec{50, 5000, "next", ""}, got[len(got)-1])

	require.Error(t, behind.sm.Restore(full[:len(full)-3]), "a cut snapshot is refused")
}

// offsetSink records the offsets a stream consumer is handed.
type offsetSink struct {
	mu   sync.Mutex
	offs []uint64
}

func (s *offsetSink) CanTake(*queue.Queue, *queue.Consumer) bool { return true }
func (s *offsetSink) Deliver(_ *queue.Queue, _ *queue.Consumer, e queue.Entry) {
	s.mu.Lock()
	s.offs = append(s.offs, e.Seq)
	s.mu.Unlock()
}
func (s *offsetSink) Cancelled(*queue.Consumer) {}

func (s *offsetSink) got() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.offs)
}

// A consumer that asks a member behind its group for an offset past the
// member's log (one it read on another member before reconnecting here)
// gets that offset first once the member applies it, never the records
// between the member's end and it again: its offsets never go back within
// the subscription (the chaos run's "offset 3689 where 3691 was next").
func TestStreamMemberBehindConsumerWaits(t *testing.T) {
	var es []multiraft.Entry
	for i := range 12 {
		es = append(es, streamEntry(int64(1000+i), fmt.Sprint("m", i), ""))
	}
	r := testStreamReplica(t, t.TempDir())
	r.sm.Apply(es[:5]) // behind: the group has 12
	readAll(t, r.q.StreamLog())
	sink := &offsetSink{}
	require.True(t, r.q.AddConsumer(&queue.Consumer{Tag: "c", NoAck: true, Sink: sink,
		Args: amqp.Table{"x-stream-offset": int64(8)}}))
	time.Sleep(50 * time.Millisecond) // its first feed: nothing yet
	require.Empty(t, sink.got())
	r.sm.Apply(es[5:]) // caught up
	readAll(t, r.q.StreamLog())
	require.Eventually(t, func() bool { return len(sink.got()) >= 4 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, []uint64{8, 9, 10, 11}, sink.got())
}
