package server

import (
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// dest is a binding destination: a *Queue or an *Exchange.
type dest interface{ destName() string }

// Exchange is a declared exchange.
type Exchange struct {
	Name       string
	Kind       string
	Durable    bool
	AutoDelete bool
	Internal   bool
	Args       amqp.Table
	// AE is the alternate exchange in effect: the alternate-exchange
	// argument, else the policy's. Guarded by the vhost's mu.
	AE     string
	policy *Policy // the policy that applies, guarded by the vhost's mu
	// delay holds the pending messages of an x-delayed-message exchange.
	delay *delayer
	// pick is m when it routes to one destination at most (hash.go).
	pick exchange.Picker[dest]
	// dedup remembers message ids (x-message-deduplication); nil when off.
	dedup *dedupCache

	m exchange.Matcher[dest]
	// in lists bindings that have this exchange as their destination.
	in []binding
}

func (x *Exchange) destName() string { return x.Name }

// Queue is a declared queue with the bindings that point at it.
type Queue struct {
	*queue.Queue
	// home is the node the queue lives on (its messages and consumers):
	// where its locator put it, or the leader of a replicated queue's
	// group, which moves. On a single node, always this node.
	home   atomic.Pointer[string]
	srv    *Server // for a queue elsewhere: the way to its home (remote.go)
	owner  *conn   // exclusive owner, nil for shared queues
	in     []binding
	policy atomic.Pointer[Policy] // the policy that applies
	// repl is a replicated (quorum) queue's group state in a cluster; nil
	// for every other queue (replica.go).
	repl *replica
	// srepl is a replicated stream's group state in a cluster; nil for
	// every other queue (stream_replica.go).
	srepl *streamReplica
	// dlx holds a quorum queue's unroutable at-least-once dead letters
	// (deadletter.go).
	dlx dlxHeld
}

func (q *Queue) destName() string { return q.Name }

// Home is the node the queue lives on now.
func (q *Queue) Home() string {
	if h := q.home.Load(); h != nil {
		return *h
	}
	return ""
}

func (q *Queue) setHome(node string) { q.home.Store(&node) }

type binding struct {
	src  *Exchange
	key  string
	args amqp.Table
}

// Vhost is a virtual host: a namespace of exchanges, queues and bindings.
// mu guards the maps and every exchange's matcher.
type Vhost struct {
	Name string
	log  *zap.Logger

	mu        sync.RWMutex
	exchanges map[string]*Exchange
	queues    map[string]*Queue
	policies  map[string]*Policy
	limits    atomic.Pointer[map[string]int64] // max-connections, max-queues (replaced whole)
	trace     atomic.Pointer[tracer]           // firehose tracing; nil when off (trace.go)
	// restoring is set while Restore rebuilds the vhost from the store, so
	// nothing is written back. Guarded by mu.
	restoring bool

	store       *store.Store
	node        string // this node's name
	srv         *Server
	retired     *statTotals // where a deleted queue's counters go
	nextQueueID func() uint64
	pageWindow  int
	budget      *queue.Budget
	delayWindow int
}

func newVhost(name string, log *zap.Logger) *Vhost {
	v := &Vhost{Name: name, log: log, exchanges: map[string]*Exchange{}, queues: map[string]*Queue{}}
	for _, x := range []struct{ name, kind string }{
		{"", exchange.Direct},
		{"amq.direct", exchange.Direct},
		{"amq.fanout", exchange.Fanout},
		{"amq.topic", exchange.Topic},
		{"amq.headers", exchange.Headers},
		{"amq.match", exchange.Headers},
		{traceExchange, exchange.Topic},
	} {
		m, _ := exchange.NewMatcher[dest](x.kind)
		// amq.rabbitmq.trace is internal: only the firehose publishes to it.
		v.exchanges[x.name] = &Exchange{Name: x.name, Kind: x.kind, Durable: true, Internal: x.name == traceExchange, m: m}
	}
	return v
}

func (v *Vhost) close() {
	if t := v.trace.Swap(nil); t != nil {
		t.close()
	}
	v.mu.Lock()
	qs := make([]*Queue, 0, len(v.queues))
	for _, q := range v.queues {
		qs = append(qs, q)
	}
	var ds []*delayer
	for _, x := range v.exchanges {
		if x.delay != nil {
			ds = append(ds, x.delay)
		}
	}
	v.mu.Unlock()
	for _, d := range ds {
		d.close(false)
	}
	for _, q := range qs {
		q.Queue.Stop()
	}
}

// Counts returns the number of exchanges and queues.
func (v *Vhost) Counts() (exchanges, queues int) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.exchanges), len(v.queues)
}

// router holds the scratch state of one routing decision, reused per channel
// so that routing allocates nothing.
type router struct {
	queues  []*Queue
	visited []*Exchange
	seen    map[*Queue]struct{} // used only when fanning out wide
	emit    func(dest)
	key     string
	headers amqp.Table
	props   *amqp.Properties // nil: none (hash-property reads it)
	// picked lists the one-destination exchanges already routed through:
	// they route a message once, on its first routing key (hash.go).
	picked   []*Exchange
	firstKey string
	// holdDelayed: a delayed-message exchange reached through an
	// exchange-to-exchange binding holds a message with an x-delay header
	// (as the plugin's does) instead of routing it on; the exchanges are
	// collected in delayed for the caller to hand the message to.
	holdDelayed bool
	delayed     []*Exchange
	// verdict: a cluster's deduplicating exchange gave its verdict on the
	// message before routing (dedup_group.go): 0 none, verdictNew,
	// verdictDup. route resets it.
	verdict uint8
}

const (
	verdictNew = 1 + iota
	verdictDup
)

func newRouter() *router {
	r := &router{}
	r.emit = r.add
	return r
}

func (r *router) add(d dest) {
	switch d := d.(type) {
	case *Queue:
		if len(r.queues) < 16 {
			if slices.Contains(r.queues, d) {
				return
			}
		} else {
			if r.seen == nil {
				r.seen = map[*Queue]struct{}{}
			}
			if len(r.seen) == 0 {
				for _, q := range r.queues {
					r.seen[q] = struct{}{}
				}
			}
			if _, ok := r.seen[d]; ok {
				return
			}
			r.seen[d] = struct{}{}
		}
		r.queues = append(r.queues, d)
	case *Exchange:
		if r.holdDelayed && d.delay != nil && !slices.Contains(r.visited, d) {
			if _, ok := delayOf(r.headers); ok {
				if !slices.Contains(r.delayed, d) {
					r.delayed = append(r.delayed, d)
				}
				return
			}
		}
		r.routeFrom(d)
	}
}

// routeFrom routes through x and, recursively, the exchanges it is bound to
// and its alternate exchange. Each exchange is visited once, so cycles and
// diamonds deliver one copy per queue.
func (r *router) routeFrom(x *Exchange) {
	if slices.Contains(r.visited, x) {
		return
	}
	r.visited = append(r.visited, x)
	if x.pick != nil {
		r.pickFrom(x)
		return
	}
	x.m.Match(r.key, r.headers, r.emit)
}

// route returns the queues a message with properties props (nil: none)
// goes to. Lock must be held (read).
func (v *Vhost) route(r *router, x *Exchange, keys []string, props *amqp.Properties) []*Queue {
	r.queues = r.queues[:0]
	r.visited = r.visited[:0]
	r.delayed = r.delayed[:0]
	r.picked = r.picked[:0]
	clear(r.seen)
	r.props, r.headers = props, nil
	if props != nil {
		r.headers = props.Headers
	}
	r.firstKey = keys[0]
	verdict := r.verdict
	r.verdict = 0
	if x.dedup != nil {
		var dup bool
		switch {
		case verdict != 0:
			dup = verdict == verdictDup
		case x.dedup.grp == nil:
			dup = x.dedup.duplicate(props)
		default:
			// Routed by the broker (dead-lettered, delayed): decided here
			// if this node leads the group, else not checked.
			dup = x.dedup.grp.localVerdict(x.dedup, props)
		}
		if dup {
			return r.queues // a duplicate goes nowhere (dedup.go)
		}
	}
	for _, k := range keys {
		r.key = k
		if x.Name == "" {
			if q := v.queues[k]; q != nil {
				r.add(q)
			}
			continue
		}
		r.visited = r.visited[:0]
		r.routeAE(v, x)
	}
	return r.queues
}

// routeAE routes via x, then via its alternate exchange chain when x routed
// the message nowhere.
func (r *router) routeAE(v *Vhost, x *Exchange) {
	for hops := 0; x != nil && hops < 16; hops++ {
		before := len(r.queues)
		r.routeFrom(x)
		if len(r.queues) > before || x.AE == "" {
			return
		}
		x = v.exchanges[x.AE]
	}
}

// bind adds a binding. Lock must be held.
func (v *Vhost) bind(src *Exchange, d dest, key string, args amqp.Table) {
	if !src.m.Add(exchange.Binding[dest]{Dest: d, Key: key, Args: args}) {
		return
	}
	v.persistBinding(src, d, key, args)
	v.topologyChanged()
	b := binding{src: src, key: key, args: args}
	switch d := d.(type) {
	case *Queue:
		d.in = append(d.in, b)
	case *Exchange:
		d.in = append(d.in, b)
	}
}

// unbind removes a binding and reports whether it existed. An auto-delete
// source exchange that loses its last binding is deleted. Lock must be held.
func (v *Vhost) unbind(src *Exchange, d dest, key string, args amqp.Table) bool {
	if !src.m.Remove(exchange.Binding[dest]{Dest: d, Key: key, Args: args}) {
		return false
	}
	v.forgetBinding(src, d, key, args)
	v.topologyChanged()
	canon := exchange.CanonicalArgs(args)
	drop := func(in []binding) []binding {
		return slices.DeleteFunc(in, func(b binding) bool {
			return b.src == src && b.key == key && exchange.CanonicalArgs(b.args) == canon
		})
	}
	switch d := d.(type) {
	case *Queue:
		d.in = drop(d.in)
	case *Exchange:
		d.in = drop(d.in)
	}
	v.autoDeleteLocked(src)
	return true
}

// autoDeleteLocked deletes x if it is auto-delete and has no bindings left
// as a source. Lock must be held.
func (v *Vhost) autoDeleteLocked(x *Exchange) {
	if x.AutoDelete && x.m.Len() == 0 && v.exchanges[x.Name] == x {
		v.deleteExchangeLocked(x)
	}
}

// deleteExchangeLocked removes x and every binding from or to it.
// Lock must be held.
func (v *Vhost) deleteExchangeLocked(x *Exchange) {
	delete(v.exchanges, x.Name)
	v.topologyChanged()
	x.dedup.drop()
	if x.delay != nil {
		// Its scheduler may be waiting for this lock to route: stop it
		// and drop the pending messages without the lock.
		go x.delay.close(true)
	}
	v.forgetExchange(x)
	for _, b := range x.m.Bindings() {
		v.unbind(x, b.Dest, b.Key, b.Args)
	}
	for _, b := range slices.Clone(x.in) {
		v.unbind(b.src, x, b.key, b.args)
	}
}

// removeQueueLocked removes q from the registry and drops its bindings; the
// caller then calls q.Queue.Delete without the lock. Lock must be held.
func (v *Vhost) removeQueueLocked(q *Queue) bool {
	if v.queues[q.Name] != q {
		return false
	}
	delete(v.queues, q.Name)
	v.topologyChanged()
	v.forgetQueue(q)
	if q.repl != nil {
		q.repl.stop()
	}
	if q.srepl != nil {
		q.srepl.stop()
	}
	if v.retired != nil {
		v.retired.addQueue(q.Snapshot().Stats)
	}
	for _, b := range slices.Clone(q.in) {
		v.unbind(b.src, q, b.key, b.args)
	}
	return true
}

// deleteQueue removes q and deletes it, returning the dropped message count.
func (v *Vhost) deleteQueue(q *Queue) int {
	v.mu.Lock()
	ok := v.removeQueueLocked(q)
	v.mu.Unlock()
	if !ok {
		return 0
	}
	return q.Queue.Delete()
}
