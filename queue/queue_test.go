package queue

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
)

// recSink records deliveries; credit limits how many it takes.
type recSink struct {
	mu     sync.Mutex
	got    map[string][]Entry
	order  []string
	credit map[string]int
	ch     chan struct{}
}

func newSink() *recSink {
	return &recSink{got: map[string][]Entry{}, credit: map[string]int{}, ch: make(chan struct{}, 1000)}
}

func (s *recSink) CanTake(_ *Queue, c *Consumer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, limited := s.credit[c.Tag]
	return !limited || n > 0
}

func (s *recSink) Deliver(_ *Queue, c *Consumer, e Entry) {
	s.mu.Lock()
	s.got[c.Tag] = append(s.got[c.Tag], e)
	s.order = append(s.order, c.Tag)
	if n, ok := s.credit[c.Tag]; ok {
		s.credit[c.Tag] = n - 1
	}
	s.mu.Unlock()
	s.ch <- struct{}{}
}

func (s *recSink) Cancelled(*Consumer) {}

func (s *recSink) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-s.ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d deliveries", i, n)
		}
	}
}

func msg(body string) *Message { return &Message{Body: []byte(body)} }

func newQ(t *testing.T, args amqp.Table) *Queue {
	q := New(Config{Name: "q", Args: args})
	t.Cleanup(func() { q.Delete() })
	return q
}

func TestRoundRobinStrict(t *testing.T) {
	q := newQ(t, nil)
	s := newSink()
	for _, tag := range []string{"a", "b", "c"} {
		require.True(t, q.AddConsumer(&Consumer{Tag: tag, NoAck: true, Sink: s}))
	}
	for i := 0; i < 9; i++ {
		q.Publish(msg("m"), -1)
	}
	s.wait(t, 9)
	require.Equal(t, []string{"a", "b", "c", "a", "b", "c", "a", "b", "c"}, s.order)
}

func TestPriorityConsumerWinsWhileItHasCredit(t *testing.T) {
	q := newQ(t, nil)
	s := newSink()
	s.credit["hi"] = 2
	q.AddConsumer(&Consumer{Tag: "lo", Sink: s})
	q.AddConsumer(&Consumer{Tag: "hi", Priority: 10, Sink: s})
	for i := 0; i < 5; i++ {
		q.Publish(msg("m"), -1)
	}
	s.wait(t, 5)
	require.Equal(t, []string{"hi", "hi", "lo", "lo", "lo"}, s.order)
}

func TestRequeueKeepsOriginalPosition(t *testing.T) {
	q := newQ(t, nil)
	for _, b := range []string{"1", "2", "3", "4"} {
		q.Publish(msg(b), -1)
	}
	var got []Entry
	for i := 0; i < 3; i++ {
		e, _, ok := q.Get(false)
		require.True(t, ok)
		got = append(got, e)
	}
	// Requeue in reverse order: they still go back to 1, 2, 3, 4.
	q.Requeue([]Entry{got[2]})
	q.Requeue([]Entry{got[0], got[1]})
	var bodies []string
	for {
		e, _, ok := q.Get(true)
		if !ok {
			break
		}
		bodies = append(bodies, string(e.Msg.Body))
		require.Equal(t, string(e.Msg.Body) != "4", e.Redelivered)
	}
	require.Equal(t, []string{"1", "2", "3", "4"}, bodies)
}

func TestTTLExpiresAtHeadAndDeadLetters(t *testing.T) {
	q := newQ(t, amqp.Table{"x-message-ttl": int32(20), "x-dead-letter-exchange": "dlx"})
	dead := make(chan DeadLetter, 10)
	q.OnDeadLetter = func(_ *Queue, d []DeadLetter) {
		for _, x := range d {
			dead <- x
		}
	}
	q.Publish(msg("a"), -1)
	q.Publish(msg("b"), 1000000)
	for i := 0; i < 2; i++ {
		select {
		case d := <-dead:
			require.Equal(t, ReasonExpired, d.Reason)
		case <-time.After(5 * time.Second):
			t.Fatal("no expiry without consumers")
		}
	}
	ready, _, _ := q.Counts()
	require.Equal(t, 0, ready)
}

func TestMaxLengthDropHeadAndReject(t *testing.T) {
	q := newQ(t, amqp.Table{"x-max-length": int64(2)})
	for _, b := range []string{"1", "2", "3"} {
		require.Equal(t, Enqueued, q.Publish(msg(b), -1))
	}
	e, _, _ := q.Get(true)
	require.Equal(t, "2", string(e.Msg.Body), "drop-head dropped the oldest")

	r := newQ(t, amqp.Table{"x-max-length-bytes": int64(3), "x-overflow": "reject-publish"})
	require.Equal(t, Enqueued, r.Publish(msg("ab"), -1))
	require.Equal(t, Rejected, r.Publish(msg("cd"), -1))
	ready, _, _ := r.Counts()
	require.Equal(t, 1, ready)
}

func TestExclusiveConsumerAndDelete(t *testing.T) {
	q := New(Config{Name: "q"})
	s := newSink()
	require.True(t, q.AddConsumer(&Consumer{Tag: "a", Exclusive: true, Sink: s}))
	require.False(t, q.AddConsumer(&Consumer{Tag: "b", Sink: s}))
	q.Publish(msg("x"), -1)
	s.wait(t, 1)
	q.Publish(msg("y"), -1)
	q.Delete()
	require.Equal(t, Gone, q.Publish(msg("z"), -1))
	require.True(t, q.Deleted())
}

func BenchmarkPublishGet(b *testing.B) {
	q := New(Config{Name: "bench"})
	defer q.Delete()
	m := msg("0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		q.Publish(m, -1)
		q.Get(true)
	}
}

// gatedSink takes every message once its gate opens, like a consumer that
// has just subscribed and is about to drain a backlog.
type gatedSink struct {
	recSink
	open atomic.Bool
}

func (s *gatedSink) CanTake(*Queue, *Consumer) bool   { return s.open.Load() }
func (s *gatedSink) Deliver(*Queue, *Consumer, Entry) {}

type closedSink struct{ recSink }

func (s *closedSink) CanTake(*Queue, *Consumer) bool { return false }

func TestThrottleWhileConsumersLag(t *testing.T) {
	q := newQ(t, nil)
	for i := 0; i < flowHigh+5000; i++ {
		q.Publish(msg("m"), -1)
	}
	require.Nil(t, q.Throttle(), "no consumers: nothing to wait for")

	sink := &gatedSink{}
	q.AddConsumer(&Consumer{Tag: "new", NoAck: true, Sink: sink})
	w := q.Throttle()
	require.NotNil(t, w, "behind an active consumer: publishers wait")
	sink.open.Store(true)
	q.Kick()
	select {
	case <-w:
	case <-time.After(10 * time.Second):
		t.Fatal("throttle never released")
	}
	ready, _, _ := q.Counts()
	require.Less(t, ready, flowLow+1)

	// A consumer without credit does not throttle publishers.
	q2 := newQ(t, nil)
	q2.AddConsumer(&Consumer{Tag: "stuck", Sink: &closedSink{}})
	for i := 0; i < flowHigh+1; i++ {
		q2.Publish(msg("m"), -1)
	}
	eventually := time.Now().Add(5 * time.Second)
	for q2.Throttle() != nil && time.Now().Before(eventually) {
		q2.Kick()
		time.Sleep(time.Millisecond)
	}
	require.Nil(t, q2.Throttle())
}

// drainingSink is a consumer held back by its connection (full but read by
// the client): it takes nothing now, yet it is not stuck.
type drainingSink struct{ closedSink }

func (s *drainingSink) Draining(*Consumer) bool { return true }

// TestThrottleBehindDrainingConsumer: a queue whose consumer's connection is
// full throttles publishers however long the consumer has taken nothing,
// where one whose consumer has no credit does not (the second half of
// TestThrottleWhileConsumersLag).
func TestThrottleBehindDrainingConsumer(t *testing.T) {
	q := newQ(t, nil)
	q.AddConsumer(&Consumer{Tag: "slow-reader", NoAck: true, Sink: &drainingSink{}})
	for i := 0; i < flowHigh+1; i++ {
		q.Publish(msg("m"), -1)
	}
	time.Sleep(time.Duration(progressWindow) + 50*time.Millisecond)
	require.NotNil(t, q.Throttle(), "no delivery for longer than progressWindow, but the connection drains")
}
