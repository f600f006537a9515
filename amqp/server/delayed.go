package server

import (
	"math"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// The x-delayed-message exchange type, built in: a message published with
// an x-delay header (milliseconds) greater than 0 is held until it is due,
// then routed by the exchange's x-delayed-type with the bindings that exist
// then. Pending messages are journaled in the store under an id of their own
// (like a queue's entries), keyed by due time, so they survive restarts and
// come out in due-time order; memory holds only the earliest delayWindow of
// them, the rest are read back from disk as those drain.

// DelayedType is the exchange type of delayed-message exchanges.
const DelayedType = "x-delayed-message"

// defaultDelayWindow is how many pending messages a delayed exchange keeps
// in memory by default (Config.DelayWindow).
const defaultDelayWindow = 10000

// counterBits is the low part of a pending entry's sequence number; the high
// part is the due time in Unix milliseconds, so key order is due order.
const counterBits = 22

type delayer struct {
	v  *Vhost
	x  *Exchange
	id uint64 // journal id; 0 without a store
	st *store.Store

	mu      sync.Mutex
	mem     []queue.Entry // the earliest pending entries, by Seq
	head    int
	diskN   int    // entries on disk only
	diskMin uint64 // every entry with Seq >= diskMin is on disk only (diskN > 0)
	counter uint64
	pending atomic.Int64

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// delayedTypeOf validates the x-delayed-type argument of a declare.
func delayedTypeOf(args amqp.Table) (string, *amqp.Error) {
	t, ok := args["x-delayed-type"].(string)
	switch {
	case !ok || t == "":
		return "", amqp.Errorf(amqp.PreconditionFailed, "Invalid argument, 'x-delayed-type' must be an existing exchange type")
	case t == DelayedType:
		return "", amqp.Errorf(amqp.PreconditionFailed, "Invalid argument, 'x-delayed-type' can't be 'x-delayed-message'")
	}
	if _, ok := exchange.NewMatcher[dest](t); !ok {
		return "", amqp.Errorf(amqp.CommandInvalid, "unknown exchange type '%s'", t)
	}
	return t, nil
}

// routingKind is the kind whose routing an exchange uses.
func (x *Exchange) routingKind() string {
	if x.Kind == DelayedType {
		t, _ := x.Args["x-delayed-type"].(string)
		return t
	}
	return x.Kind
}

// delayOf reads the x-delay header: integers, numeric strings and floats as
// the plugin takes them; ok is false when the message is not delayed.
func delayOf(h amqp.Table) (time.Duration, bool) {
	v, present := h["x-delay"]
	if !present {
		return 0, false
	}
	var ms float64
	switch d := v.(type) {
	case string:
		f, err := strconv.ParseFloat(d, 64)
		if err != nil {
			return 0, false
		}
		ms = f
	case float32:
		ms = float64(d)
	case float64:
		ms = d
	default:
		n, ok := amqp.Int(v)
		if !ok {
			return 0, false
		}
		ms = float64(n)
	}
	if ms <= 0 || math.IsNaN(ms) {
		return 0, false
	}
	return time.Duration(min(ms, float64(math.MaxInt64/int64(time.Millisecond))) * float64(time.Millisecond)), true
}

func newDelayer(v *Vhost, x *Exchange, id uint64) *delayer {
	d := &delayer{v: v, x: x, id: id, st: v.store, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	return d
}

func (d *delayer) start() { go d.loop() }

// restore loads the pending entries a durable exchange had on disk.
func (d *delayer) restore() error {
	es, disk, _, err := d.st.LoadQueue(d.id, d.v.delayWindow, map[uint64]*queue.Message{})
	if err != nil {
		return err
	}
	d.mem = es
	d.diskN, d.diskMin = disk.N, disk.From
	if len(es) > 0 {
		d.counter = es[len(es)-1].Seq & (1<<counterBits - 1)
	}
	if disk.N > 0 {
		d.counter = max(d.counter, disk.Last&(1<<counterBits-1))
	}
	d.pending.Store(int64(len(es) + disk.N))
	return nil
}

// add holds msg until due. persisted reports whether the message is
// journaled (a publisher confirm then waits for the sync).
func (d *delayer) add(msg *queue.Message, delay time.Duration) (persisted bool) {
	// Rounded up to the millisecond: a message never comes out early.
	at := time.Now().Add(delay)
	due := at.UnixMilli()
	if at.UnixNano()%int64(time.Millisecond) != 0 {
		due++
	}
	d.mu.Lock()
	d.counter = (d.counter + 1) & (1<<counterBits - 1)
	e := queue.Entry{Msg: msg, Seq: uint64(due)<<counterBits | d.counter}
	if d.st != nil {
		jm := *msg
		jm.StoreInline, jm.StoreID = true, 0
		if d.x.Durable {
			// Like the plugin, a durable delayed exchange keeps every
			// pending message across restarts, persistent or not.
			d.st.Append(d.id, e.Seq, &jm, 0)
			persisted = true
		} else {
			d.st.Spill(d.id, e.Seq, &jm, 0)
		}
		e.Journaled = true
	}
	d.pending.Add(1)
	if d.diskN > 0 && e.Seq >= d.diskMin {
		d.diskN++ // beyond the in-memory part: on disk only
		d.mu.Unlock()
		return persisted
	}
	live := d.mem[d.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq > e.Seq })
	d.mem = append(d.mem, queue.Entry{})
	copy(d.mem[d.head+i+1:], d.mem[d.head+i:])
	d.mem[d.head+i] = e
	if d.st != nil && len(d.mem)-d.head > d.v.delayWindow {
		// Over the window: the latest leaves memory (it is on disk).
		last := d.mem[len(d.mem)-1]
		d.mem = d.mem[:len(d.mem)-1]
		d.diskMin = last.Seq
		d.diskN++
	}
	first := i == 0
	d.mu.Unlock()
	if first {
		select {
		case d.kick <- struct{}{}:
		default:
		}
	}
	return persisted
}

// loop routes messages as they come due.
func (d *delayer) loop() {
	defer close(d.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := d.fire()
		if next > 0 {
			t.Reset(next)
		} else {
			t.Stop()
		}
		select {
		case <-t.C:
		case <-d.kick:
		case <-d.stop:
			return
		}
	}
}

// fire routes what is due and returns the wait until the next entry (0:
// none pending).
func (d *delayer) fire() time.Duration {
	r := newRouter()
	r.holdDelayed = true
	for {
		now := time.Now().UnixMilli()
		d.mu.Lock()
		if d.head == len(d.mem) && d.diskN > 0 {
			d.pageInLocked()
		}
		var due []queue.Entry
		for d.head < len(d.mem) && int64(d.mem[d.head].Seq>>counterBits) <= now && len(due) < 1000 {
			due = append(due, d.mem[d.head])
			d.mem[d.head] = queue.Entry{}
			d.head++
		}
		if d.head == len(d.mem) {
			d.mem, d.head = d.mem[:0], 0
		} else if d.head > len(d.mem)/2 && d.head > 1024 {
			d.mem = append(d.mem[:0], d.mem[d.head:]...)
			d.head = 0
		}
		var wait time.Duration
		if d.head < len(d.mem) {
			wait = max(time.Duration(int64(d.mem[d.head].Seq>>counterBits)-now)*time.Millisecond, time.Millisecond)
		} else if d.diskN > 0 {
			wait = time.Millisecond
		}
		d.mu.Unlock()
		if len(due) == 0 {
			return wait
		}
		d.route(r, due)
	}
}

// pageInLocked reads the next entries from disk. Lock must be held.
func (d *delayer) pageInLocked() {
	es, err := d.st.Load(d.id, d.diskMin, d.v.delayWindow)
	if err != nil {
		d.v.log.Sugar().Errorf("delayed exchange %q: paging in: %v", d.x.Name, err)
		return
	}
	d.mem, d.head = es, 0
	d.diskN -= len(es)
	if d.diskN <= 0 || len(es) == 0 {
		d.diskN = 0
	} else {
		d.diskMin = es[len(es)-1].Seq + 1
	}
}

// route sends due messages through the exchange's bindings as they are
// now, then forgets them in the journal (after the queues' own writes, in
// the same or a later batch).
func (d *delayer) route(r *router, due []queue.Entry) {
	v := d.v
	v.mu.RLock()
	for i := range due {
		msg := due[i].Msg
		p := msg.Props()
		keys := ccKeys([]string{msg.RoutingKey}, p.Headers)
		qs := v.route(r, d.x, keys, &p)
		if msg.Persistent() && d.st != nil {
			msg.StoreInline = oneDurable(qs)
		}
		for _, q := range qs {
			v.publishTo(q, msg, messageTTL(msg))
		}
		holdDelayed(r, msg) // a further delayed exchange down the line
	}
	v.mu.RUnlock()
	for i := range due {
		if due[i].Journaled {
			d.st.Remove(d.id, due[i].Seq, &queue.Message{})
		}
	}
	d.pending.Add(-int64(len(due)))
}

// held says what holdDelayed did with a message.
type held int

const (
	notHeld       held = iota
	heldMemory         // held by a delayed exchange, in memory only
	heldPersisted      // held, and journaled: confirm after the store syncs
)

// holdDelayed hands msg to the delayed exchanges the last routing through
// r reached by exchange-to-exchange bindings (r.delayed); each holds its own
// copy and routes it through its bindings when due. Vhost.mu must be held
// (read), so none of them is deleted meanwhile.
func holdDelayed(r *router, msg *queue.Message) held {
	if len(r.delayed) == 0 {
		return notHeld
	}
	delay, _ := delayOf(r.headers)
	h := heldMemory
	for _, x := range r.delayed {
		cp := *msg
		cp.StoreInline, cp.StoreID = false, 0
		if x.delay.add(&cp, delay) {
			h = heldPersisted
		}
	}
	return h
}

// close stops the scheduler; drop also deletes the pending messages.
func (d *delayer) close(drop bool) {
	select {
	case <-d.stop:
	default:
		close(d.stop)
	}
	<-d.done
	if drop && d.st != nil {
		d.st.DropFrom(d.id, 0)
	}
}
