package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The chaos test's clients and checker (chaos_test.go drives them): a
// Jepsen-style queue test. Every message body names its producer and
// sequence number (and the queue it was published to); the history records
// each publish attempt and its outcome (confirmed, nacked, or unknown when
// the connection died before the answer) and every delivery, and the
// checker compares the two exactly.

// msgKey identifies one message: producer and sequence number.
type msgKey struct{ p, s int32 }

// Publish outcomes.
const (
	pubUnknown   = iota // sent; no answer before the connection died (or not yet)
	pubConfirmed        // basic.ack
	pubNacked           // basic.nack
)

type pubRec struct {
	q, node int8
	state   uint8
	at, end time.Duration // attempt and answer, since the history's start
}

// chaosHistory is what the clients did and saw. Clients never touch the
// testing.T: what they have to say goes to events, which the test prints.
type chaosHistory struct {
	start  time.Time
	queues []string

	mu           sync.Mutex
	pubs         map[msgKey]*pubRec
	deliv        map[msgKey]int
	deliveries   int // every delivery and get
	redelivered  int // of which with the redelivered flag
	unflagged    int // deliveries of a message delivered before, without the flag
	maxCount     int64
	bad          []string // deliveries that match no publish (first few)
	badN         int
	confirmed    int
	nacked       int
	lastDelivery time.Time
	events       []string
	eventCounts  map[string]int
}

func newChaosHistory(queues []string) *chaosHistory {
	return &chaosHistory{start: time.Now(), queues: queues, pubs: map[msgKey]*pubRec{}, deliv: map[msgKey]int{},
		eventCounts: map[string]int{}}
}

func (h *chaosHistory) since() time.Duration { return time.Since(h.start) }

// event records what a client saw (a reconnect, a channel closed by the
// broker, a stall); kind is counted, text kept for the report.
func (h *chaosHistory) event(kind, format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.eventCounts[kind]++
	if len(h.events) < 5000 {
		h.events = append(h.events, fmt.Sprintf("%8.3fs %s: %s", h.since().Seconds(), kind, fmt.Sprintf(format, args...)))
	}
}

func chaosBody(k msgKey, q int) string { return fmt.Sprintf("chaos p=%d s=%d q=%d", k.p, k.s, q) }

// parseChaosBody is chaosBody's inverse; ok only for a body it makes.
func parseChaosBody(b []byte) (k msgKey, q int, ok bool) {
	if _, err := fmt.Sscanf(string(b), "chaos p=%d s=%d q=%d", &k.p, &k.s, &q); err != nil {
		return k, q, false
	}
	return k, q, chaosBody(k, q) == string(b)
}

func (h *chaosHistory) sent(k msgKey, q, node int) {
	h.mu.Lock()
	h.pubs[k] = &pubRec{q: int8(q), node: int8(node), at: h.since()}
	h.mu.Unlock()
}

func (h *chaosHistory) answered(k msgKey, ack bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.pubs[k]
	r.end = h.since()
	if ack {
		r.state = pubConfirmed
		h.confirmed++
	} else {
		r.state = pubNacked
		h.nacked++
	}
}

// delivered records one delivery from queue q (index) on node.
func (h *chaosHistory) delivered(d *amqp.Delivery, q, node int, how string) {
	k, bq, ok := parseChaosBody(d.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deliveries++
	h.lastDelivery = time.Now()
	if d.Redelivered {
		h.redelivered++
	}
	if n, ok := d.Headers["x-delivery-count"].(int64); ok && n > h.maxCount {
		h.maxCount = n
	}
	var why string
	switch {
	case !ok:
		why = "not a body of this test"
	case h.pubs[k] == nil:
		why = "never published"
	case bq != q || int(h.pubs[k].q) != q:
		why = fmt.Sprintf("published to %s", h.queues[bq])
	}
	if why != "" {
		h.badN++
		if len(h.bad) < 20 {
			h.bad = append(h.bad, fmt.Sprintf("%q from %s on node %d (%s): %s", d.Body, h.queues[q], node+1, how, why))
		}
		return
	}
	if h.deliv[k] > 0 && !d.Redelivered {
		h.unflagged++
	}
	h.deliv[k]++
}

// progress is how many publishes were confirmed and how many deliveries
// made so far, and when the last delivery came.
func (h *chaosHistory) progress() (confirmed, delivered int, last time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.confirmed, h.deliveries, h.lastDelivery
}

// chaosResult is the checker's verdict.
type chaosResult struct {
	Attempted, Confirmed, Nacked, Unknown  int
	Deliveries, Distinct, Redelivered      int
	DupUnflagged                           int // a message's second or later delivery without the redelivered flag
	Lost, Unexpected, Duplicated, DupExtra int
	UnknownDelivered, NackedDelivered      int
	MaxDeliveryCount                       int64
	lost                                   []msgKey
	bad                                    []string
}

// check compares publishes and deliveries: lost are confirmed messages
// never delivered, unexpected deliveries of nothing published (or from
// another queue than the one published to), duplicated messages delivered
// more than once.
func (h *chaosHistory) check() chaosResult {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := chaosResult{Attempted: len(h.pubs), Deliveries: h.deliveries, Redelivered: h.redelivered,
		DupUnflagged: h.unflagged,
		Unexpected:   h.badN, MaxDeliveryCount: h.maxCount, bad: slices.Clone(h.bad)}
	for k, p := range h.pubs {
		n := h.deliv[k]
		switch p.state {
		case pubConfirmed:
			r.Confirmed++
			if n == 0 {
				r.Lost++
				r.lost = append(r.lost, k)
			}
		case pubNacked:
			r.Nacked++
			if n > 0 {
				r.NackedDelivered++
			}
		default:
			r.Unknown++
			if n > 0 {
				r.UnknownDelivered++
			}
		}
		if n > 0 {
			r.Distinct++
		}
		if n > 1 {
			r.Duplicated++
			r.DupExtra += n - 1
		}
	}
	sort.Slice(r.lost, func(i, j int) bool {
		a, b := r.lost[i], r.lost[j]
		return a.p < b.p || a.p == b.p && a.s < b.s
	})
	return r
}

// describeLost says, for the first lost messages, where and when each was
// published and confirmed.
func (h *chaosHistory) describeLost(lost []msgKey, names func(int) string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var b strings.Builder
	for i, k := range lost {
		if i == 30 {
			fmt.Fprintf(&b, "... and %d more\n", len(lost)-i)
			break
		}
		p := h.pubs[k]
		fmt.Fprintf(&b, "lost %q: published to %s on %s at %.3fs, confirmed at %.3fs\n", chaosBody(k, int(p.q)),
			h.queues[p.q], names(int(p.node)), p.at.Seconds(), p.end.Seconds())
	}
	return b.String()
}

// A chaosClient connects to its node first, and after any connection
// failure to any node that takes it (in random order), as a real client
// with a list of cluster nodes does.
type chaosClient struct {
	id   int
	kind string // "producer" or "consumer"
	q    int    // the consumer's queue
	home int
	urls []string
	h    *chaosHistory
	rng  *rand.Rand
	stop chan struct{}
	done chan struct{}
	cfg  chaosClientConfig
	seq  int32 // the producer's last sequence number

	mu       sync.Mutex
	connects int // guarded by mu

	// A stream consumer's progress (guarded by mu): the offset it resumes
	// at after a reconnect (the one after the last it acked; -1 before the
	// first: it starts from first), the messages it read, and the
	// deliveries whose offset was not the one expected next (a gap, or one
	// read twice within a session).
	resume  int64
	expect  int64 // the offset expected next in this session (-1: any)
	seen    map[msgKey]bool
	skipped []string
}

type chaosClientConfig struct {
	window   int           // publishes in flight per producer
	interval time.Duration // between publishes
	prefetch int
	// confirmWait: a publish without an answer for this long closes the
	// connection (the publish is then unknown). Above the broker's own
	// bound (a replicated publish is nacked after 10 s without a leader).
	confirmWait time.Duration
	// stream: the queues are streams; consumers read from first, and after
	// a reconnect from the offset after the last they acked.
	stream bool
}

func (c *chaosClient) name() string { return fmt.Sprintf("%s%d", c.kind, c.id) }

func (c *chaosClient) stopped() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// dial connects to node `first` when it is >= 0, else to the nodes in a
// random order until one takes the connection; nil once the client is
// stopped.
func (c *chaosClient) dial(first int) (*amqp.Connection, int) {
	for !c.stopped() {
		order := c.rng.Perm(len(c.urls))
		if first >= 0 {
			order = []int{first}
			first = -1
		}
		for _, n := range order {
			conn, err := amqp.DialConfig(c.urls[n], amqp.Config{
				Heartbeat:  time.Second, // a paused or cut-off node is noticed within 3 s
				Dial:       amqp.DefaultDial(2 * time.Second),
				Properties: amqp.Table{"connection_name": c.name()},
			})
			if err == nil {
				c.mu.Lock()
				c.connects++
				c.mu.Unlock()
				return conn, n
			}
			c.h.event("dial-failed", "%s: node %d: %v", c.name(), n+1, err)
		}
		select {
		case <-c.stop:
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil, -1
}

// bounded runs a synchronous client call (channel open, confirm.select,
// basic.qos, basic.consume) that a broker might never answer: after d the
// connection is closed, which makes the call fail.
func (c *chaosClient) bounded(conn *amqp.Connection, node int, what string, d time.Duration, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		c.h.event("call-stalled", "%s: %s on node %d had no answer in %v", c.name(), what, node+1, d)
		conn.CloseDeadline(time.Now().Add(time.Second))
		return <-done
	}
}

func (c *chaosClient) run() {
	defer close(c.done)
	first := c.home
	backoff := 100 * time.Millisecond
	for !c.stopped() {
		conn, node := c.dial(first)
		first = -1
		if conn == nil {
			return
		}
		start := time.Now()
		if c.kind == "producer" {
			c.produce(conn, node)
		} else {
			c.consume(conn, node)
		}
		conn.CloseDeadline(time.Now().Add(time.Second))
		// Back off (up to 1 s) while sessions fail at once.
		if time.Since(start) > 2*time.Second {
			backoff = 100 * time.Millisecond
		} else {
			backoff = min(2*backoff, time.Second)
		}
		select {
		case <-c.stop:
		case <-time.After(backoff):
		}
	}
}

// produce publishes on one connection until it fails or the client is
// stopped; stopped, it waits for the answers in flight (up to
// confirmWait).
func (c *chaosClient) produce(conn *amqp.Connection, node int) {
	var ch *amqp.Channel
	var confirms chan amqp.Confirmation
	err := c.bounded(conn, node, "channel.open/confirm.select", 15*time.Second, func() error {
		var err error
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		confirms = ch.NotifyPublish(make(chan amqp.Confirmation, c.cfg.window+1))
		return ch.Confirm(false)
	})
	if err != nil {
		c.h.event("setup-failed", "%s on node %d: %v", c.name(), node+1, err)
		return
	}
	type inflight struct {
		k  msgKey
		at time.Time
	}
	out := map[uint64]inflight{} // by delivery tag
	var tag, oldest uint64 = 0, 1
	stop := c.stop
	pace := time.NewTicker(c.cfg.interval)
	defer pace.Stop()
	check := time.NewTicker(200 * time.Millisecond)
	defer check.Stop()
	closing := false
	for {
		if stop == nil && len(out) == 0 {
			return
		}
		var paceC <-chan time.Time
		if stop != nil && !closing && len(out) < c.cfg.window {
			paceC = pace.C
		}
		select {
		case <-stop:
			stop = nil
		case <-paceC:
			k := msgKey{int32(c.id), c.nextSeq()}
			q := int(k.s) % len(c.h.queues)
			c.h.sent(k, q, node)
			if err := ch.Publish("", c.h.queues[q], false, false, amqp.Publishing{
				Body: []byte(chaosBody(k, q)), DeliveryMode: amqp.Persistent}); err != nil {
				c.h.event("publish-failed", "%s on node %d: %v", c.name(), node+1, err)
				closing = true // k stays unknown
				conn.CloseDeadline(time.Now().Add(time.Second))
				continue
			}
			tag++
			out[tag] = inflight{k, time.Now()}
		case cf, ok := <-confirms:
			if !ok { // the channel or connection closed: what is in flight stays unknown
				if len(out) > 0 {
					c.h.event("unknown", "%s on node %d: connection lost with %d publishes unanswered", c.name(), node+1, len(out))
				}
				return
			}
			f, found := out[cf.DeliveryTag]
			if !found {
				c.h.event("bad-confirm", "%s on node %d: answer for delivery tag %d never used", c.name(), node+1, cf.DeliveryTag)
				continue
			}
			delete(out, cf.DeliveryTag)
			c.h.answered(f.k, cf.Ack)
		case <-check.C:
			for oldest <= tag {
				if _, ok := out[oldest]; ok {
					break
				}
				oldest++
			}
			if f, ok := out[oldest]; ok && !closing && time.Since(f.at) > c.cfg.confirmWait {
				c.h.event("confirm-stalled", "%s on node %d: no answer in %v for %d publishes: closing the connection", c.name(), node+1, c.cfg.confirmWait, len(out))
				closing = true
				conn.CloseDeadline(time.Now().Add(time.Second))
			}
		}
	}
}

func (c *chaosClient) nextSeq() int32 {
	c.seq++
	return c.seq
}

// consume consumes its queue on one connection, acking each delivery once
// recorded, until the connection or channel fails, the broker cancels the
// consumer, or the client is stopped.
func (c *chaosClient) consume(conn *amqp.Connection, node int) {
	var ch *amqp.Channel
	var ds <-chan amqp.Delivery
	closed := make(chan *amqp.Error, 1)
	err := c.bounded(conn, node, "basic.consume", 15*time.Second, func() error {
		var err error
		if ch, err = conn.Channel(); err != nil {
			return err
		}
		ch.NotifyClose(closed)
		if err = ch.Qos(c.cfg.prefetch, 0, false); err != nil {
			return err
		}
		var args amqp.Table
		if c.cfg.stream {
			args = amqp.Table{"x-stream-offset": c.streamStart()}
		}
		ds, err = ch.Consume(c.h.queues[c.q], c.name(), false, false, false, false, args)
		return err
	})
	if err != nil {
		c.h.event("setup-failed", "%s on node %d: %v", c.name(), node+1, err)
		return
	}
	for {
		select {
		case <-c.stop:
			return
		case d, ok := <-ds:
			if !ok {
				select {
				case e := <-closed:
					if e != nil && !conn.IsClosed() {
						c.h.event("channel-closed", "%s on node %d: %v", c.name(), node+1, e)
					}
				default:
					if !conn.IsClosed() {
						c.h.event("cancelled", "%s on node %d: the broker cancelled the consumer", c.name(), node+1)
					}
				}
				return
			}
			c.h.delivered(&d, c.q, node, c.name())
			if c.cfg.stream {
				c.streamRead(&d, node)
			}
			if err := d.Ack(false); err != nil {
				return
			}
			if c.cfg.stream {
				c.streamAcked(&d)
			}
		}
	}
}

// chaosAPI is a management API call that fails instead of failing the test
// (the node may be down or paused). A node asks the others for a queue's
// figures and leaves out those that do not answer in 3 s: hence 8 s.
func chaosAPI(nd *clusterNode, path string, out any) error {
	req, err := http.NewRequest("GET", "http://"+nd.http+path, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := (&http.Client{Timeout: 8 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, raw)
	}
	return json.Unmarshal(raw, out)
}

// chaosRaw is the body of GET path, or the error.
func chaosRaw(nd *clusterNode, path string) string {
	var v any
	if err := chaosAPI(nd, path, &v); err != nil {
		return err.Error()
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// streamStart is where a stream consumer's session starts: first, or the
// offset after the last it acked.
func (c *chaosClient) streamStart() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen, c.resume = map[msgKey]bool{}, -1
	}
	c.expect = c.resume
	if c.resume < 0 {
		return "first"
	}
	return c.resume
}

// streamRead records a stream delivery: its message, and whether its
// offset is the one expected (the session's start, then one more each).
func (c *chaosClient) streamRead(d *amqp.Delivery, node int) {
	off, ok := d.Headers["x-stream-offset"].(int64)
	k, _, _ := parseChaosBody(d.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[k] = true
	switch {
	case !ok:
		c.skipped = append(c.skipped, fmt.Sprintf("node %d: a delivery without x-stream-offset", node+1))
	case c.expect >= 0 && off != c.expect:
		c.skipped = append(c.skipped, fmt.Sprintf("node %d: offset %d where %d was next", node+1, off, c.expect))
	}
	c.expect = off + 1
}

// streamAcked moves the resume point past an acked delivery: a session
// that fails before the next ack reads the deliveries after it again.
func (c *chaosClient) streamAcked(d *amqp.Delivery) {
	if off, ok := d.Headers["x-stream-offset"].(int64); ok {
		c.mu.Lock()
		c.resume = off + 1
		c.mu.Unlock()
	}
}

// streamMissing is the confirmed messages of the consumer's stream it has
// not read.
func (c *chaosClient) streamMissing() []msgKey {
	c.h.mu.Lock()
	var want []msgKey
	for k, p := range c.h.pubs {
		if p.state == pubConfirmed && int(p.q) == c.q {
			want = append(want, k)
		}
	}
	c.h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []msgKey
	for _, k := range want {
		if !c.seen[k] {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].p < out[j].p || out[i].p == out[j].p && out[i].s < out[j].s })
	return out
}
