package server

import (
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Read-only views of the broker's objects for the management API and
// metrics. Each call copies what it returns; nothing here is on a message
// path.

// ExchangeInfo describes an exchange.
type ExchangeInfo struct {
	Name, Vhost, Type             string
	Durable, AutoDelete, Internal bool
	Arguments                     amqp.Table
	Policy                        string // name of the policy that applies
	// Delayed counts the pending messages of a delayed-message exchange.
	Delayed int64
}

// QueueInfo describes a queue with its counts and counters.
type QueueInfo struct {
	Name, Vhost                    string
	Durable, AutoDelete, Exclusive bool
	Arguments                      amqp.Table
	// Owner names the exclusive owner's connection.
	Owner string
	// Policy is the policy that applies, if any.
	Policy *Policy
	// Node is the queue's home node, where its messages are (a replicated
	// queue's leader).
	Node string
	// Members and Online are a replicated queue's group members and those
	// of them reachable now; nil for other queues.
	Members, Online []string
	// DLX and DLXBytes count a quorum queue's dead letters held for
	// at-least-once dead-lettering (messages_dlx).
	DLX      int
	DLXBytes int64
	queue.Snapshot
}

// BindingInfo describes a binding; DestinationType is "queue" or "exchange".
type BindingInfo struct {
	Source, Vhost, Destination, DestinationType, RoutingKey string
	Arguments                                               amqp.Table
}

// ChannelInfo describes an open channel.
type ChannelInfo struct {
	Name, Connection, User, Vhost string
	Number                        uint16
	Consumers, Unacked            int
	Prefetch, GlobalPrefetch      int
	Confirm, Transactional        bool
	Published, Confirmed          uint64
}

// ConsumerInfo describes a consumer.
type ConsumerInfo struct {
	Tag, Queue, Vhost, Channel, Connection string
	ChannelNumber                          uint16
	AckRequired, Exclusive                 bool
	Prefetch                               int
	Priority                               int64
}

// Totals are broker-wide message counters since start.
type Totals struct {
	Published, Confirmed, Returned  uint64 // by publishing channels
	Delivered, Redelivered, Acked   uint64 // by queues
	Connections, Channels           int
	Consumers, Queues, Exchanges    int
	Ready, Unacked                  int
	closedPublished, closedConfirms uint64
}

// statTotals keeps the counters of closed channels and deleted queues.
type statTotals struct {
	published, confirmed, returned atomic.Uint64
	delivered, redelivered, acked  atomic.Uint64
}

func (t *statTotals) add(c *chanStats) {
	t.published.Add(c.published.Load())
	t.confirmed.Add(c.confirmed.Load())
	t.returned.Add(c.returned.Load())
}

func (t *statTotals) addQueue(s queue.Stats) {
	t.delivered.Add(s.Delivered)
	t.redelivered.Add(s.Redelivered)
	t.acked.Add(s.Acked)
}

func (s *Server) vhostList(name string) []*Vhost {
	s.mu.Lock()
	defer s.mu.Unlock()
	if name != "" {
		if v := s.vhosts[name]; v != nil {
			return []*Vhost{v}
		}
		return nil
	}
	out := make([]*Vhost, 0, len(s.vhosts))
	for _, v := range s.vhosts {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Exchanges lists the exchanges of vhost ("" for all), by vhost and name.
func (s *Server) Exchanges(vhost string) []ExchangeInfo {
	var out []ExchangeInfo
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		for _, x := range v.exchanges {
			out = append(out, ExchangeInfo{Name: x.Name, Vhost: v.Name, Type: x.Kind, Durable: x.Durable,
				AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: x.Args, Policy: policyName(x.policy), Delayed: pendingOf(x)})
		}
		v.mu.RUnlock()
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Vhost != out[j].Vhost {
			return out[i].Vhost < out[j].Vhost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Exchange describes one exchange.
func (s *Server) Exchange(vhost, name string) (ExchangeInfo, bool) {
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		x, ok := v.exchanges[name]
		v.mu.RUnlock()
		if ok {
			return ExchangeInfo{Name: x.Name, Vhost: v.Name, Type: x.Kind, Durable: x.Durable,
				AutoDelete: x.AutoDelete, Internal: x.Internal, Arguments: x.Args, Policy: policyName(x.policy), Delayed: pendingOf(x)}, true
		}
	}
	return ExchangeInfo{}, false
}

func queueInfo(v *Vhost, q *Queue) QueueInfo {
	qi := QueueInfo{Name: q.Name, Vhost: v.Name, Durable: q.Durable, AutoDelete: q.AutoDelete,
		Exclusive: q.Exclusive, Arguments: q.Args, Snapshot: q.Snapshot()}
	if q.owner != nil {
		qi.Owner = q.owner.name
	}
	qi.Policy = q.policy.Load()
	qi.Node = q.Home()
	qi.DLX, qi.DLXBytes = q.heldDeadLetters()
	if r := q.repl; r != nil {
		qi.Members = r.memberList()
		for _, n := range qi.Members {
			if n == r.s.cfg.NodeName || r.s.reachable(n) {
				qi.Online = append(qi.Online, n)
			}
		}
	}
	if r := q.srepl; r != nil {
		streamInfo(&qi, r)
	}
	return qi
}

// Queues lists the queues of vhost ("" for all), by vhost and name.
func (s *Server) Queues(vhost string) []QueueInfo {
	var out []QueueInfo
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		qs := make([]*Queue, 0, len(v.queues))
		for _, q := range v.queues {
			qs = append(qs, q)
		}
		v.mu.RUnlock()
		for _, q := range qs {
			out = append(out, queueInfo(v, q))
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Vhost != out[j].Vhost {
			return out[i].Vhost < out[j].Vhost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Queue describes one queue.
func (s *Server) Queue(vhost, name string) (QueueInfo, bool) {
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		q, ok := v.queues[name]
		v.mu.RUnlock()
		if ok {
			return queueInfo(v, q), true
		}
	}
	return QueueInfo{}, false
}

// Bindings lists the bindings of vhost ("" for all), including the default
// exchange's implicit binding of every queue, in RabbitMQ's order.
func (s *Server) Bindings(vhost string) []BindingInfo {
	var out []BindingInfo
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		names := make([]string, 0, len(v.queues))
		for n := range v.queues {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			out = append(out, BindingInfo{Vhost: v.Name, Destination: n, DestinationType: "queue", RoutingKey: n})
		}
		xs := make([]*Exchange, 0, len(v.exchanges))
		for _, x := range v.exchanges {
			if x.Name != "" {
				xs = append(xs, x)
			}
		}
		sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
		for _, x := range xs {
			for _, b := range x.m.Bindings() {
				bi := BindingInfo{Source: x.Name, Vhost: v.Name, Destination: b.Dest.destName(), RoutingKey: b.Key, Arguments: b.Args, DestinationType: "queue"}
				if _, ok := b.Dest.(*Exchange); ok {
					bi.DestinationType = "exchange"
				}
				out = append(out, bi)
			}
		}
		v.mu.RUnlock()
	}
	return out
}

func (s *Server) connList() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if c.info.Load() != nil {
			out = append(out, c)
		}
	}
	return out
}

func (c *conn) channelList() []*channel {
	if p := c.chanSnap.Load(); p != nil {
		return *p
	}
	return nil
}

// Channels lists the open channels of every connection.
func (s *Server) Channels() []ChannelInfo {
	var out []ChannelInfo
	for _, c := range s.connList() {
		for _, ch := range c.channelList() {
			ch.mu.Lock()
			n, closed := len(ch.consumers), ch.closed
			ch.mu.Unlock()
			if closed {
				continue
			}
			mode := ch.modeFlags.Load()
			out = append(out, ChannelInfo{
				Name: fmt.Sprintf("%s (%d)", c.name, ch.id), Connection: c.name, User: c.user.Name, Vhost: c.vhost.Name,
				Number: ch.id, Consumers: n, Unacked: int(ch.unackedN.Load()),
				Prefetch: int(ch.prefetchNA.Load()), GlobalPrefetch: int(ch.globalPrefetch.Load()),
				Confirm: mode&modeConfirm != 0, Transactional: mode&modeTx != 0,
				Published: ch.stats.published.Load(), Confirmed: ch.stats.confirmed.Load(),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Consumers lists every consumer of every channel.
func (s *Server) Consumers() []ConsumerInfo {
	var out []ConsumerInfo
	for _, c := range s.connList() {
		for _, ch := range c.channelList() {
			ch.mu.Lock()
			for tag, ci := range ch.consumers {
				out = append(out, ConsumerInfo{
					Tag: tag, Queue: ci.q.Name, Vhost: c.vhost.Name, Channel: fmt.Sprintf("%s (%d)", c.name, ch.id),
					Connection: c.name, ChannelNumber: ch.id, AckRequired: !ci.c.NoAck, Exclusive: ci.c.Exclusive,
					Prefetch: int(ci.prefetch), Priority: ci.c.Priority,
				})
			}
			ch.mu.Unlock()
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Channel != out[j].Channel {
			return out[i].Channel < out[j].Channel
		}
		return out[i].Tag < out[j].Tag
	})
	return out
}

// Totals adds up the broker's counters and object counts.
func (s *Server) Totals() Totals {
	t := Totals{
		Published: s.closedStats.published.Load(), Confirmed: s.closedStats.confirmed.Load(),
		Returned: s.closedStats.returned.Load(), Delivered: s.closedStats.delivered.Load(),
		Redelivered: s.closedStats.redelivered.Load(), Acked: s.closedStats.acked.Load(),
	}
	for _, c := range s.connList() {
		t.Connections++
		for _, ch := range c.channelList() {
			t.Channels++
			t.Published += ch.stats.published.Load()
			t.Confirmed += ch.stats.confirmed.Load()
			t.Returned += ch.stats.returned.Load()
			ch.mu.Lock()
			t.Consumers += len(ch.consumers)
			ch.mu.Unlock()
		}
	}
	for _, v := range s.vhostList("") {
		v.mu.RLock()
		t.Exchanges += len(v.exchanges)
		qs := make([]*Queue, 0, len(v.queues))
		for _, q := range v.queues {
			qs = append(qs, q)
		}
		v.mu.RUnlock()
		t.Queues += len(qs)
		for _, q := range qs {
			snap := q.Snapshot()
			t.Ready += snap.Ready
			t.Unacked += snap.Unacked
			t.Delivered += snap.Delivered
			t.Redelivered += snap.Redelivered
			t.Acked += snap.Acked
		}
	}
	return t
}

func policyName(p *Policy) string {
	if p == nil {
		return ""
	}
	return p.Name
}

func pendingOf(x *Exchange) int64 {
	if x.delay == nil {
		return 0
	}
	return x.delay.pending.Load()
}
