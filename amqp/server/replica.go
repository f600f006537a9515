package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
)

// Replicated (quorum) queues in a cluster. Each one is a Raft group of its
// member nodes (x-quorum-initial-group-size of them, 3 by default), run by
// the cluster's multiraft host next to the metadata group: one shared
// write-ahead log with one fsync per batch across every group.
//
// The log holds what a new leader needs to carry on: every message
// enqueued, and every way one left (acked, rejected, expired, dropped,
// dead-lettered, purged), with the delivered watermark and the return
// counts of the delivery limit. Every member applies it to a qsm (the
// messages not yet settled, in order). The leader's node also runs the
// queue itself (the queue.Queue of the server's Queue): consumers, prefetch,
// TTL, dead-lettering and every other feature are the classic queue's. A
// message enters it when its enqueue entry applies (so a publish is
// confirmed only once a majority has it on disk), at the sequence number
// the log gave it; what the queue reports to its journal when a message
// leaves (the replica is its journal) is proposed to the log in batches.
//
// The queue's home (Queue.Home) is its group's leader: clients of other
// nodes publish, consume and get through it as they do for a classic queue
// homed elsewhere. When the leader changes, the new one rebuilds the queue
// from its qsm once its own first entry applies (everything committed
// before is applied by then): messages delivered before come back
// redelivered; consumers of other nodes attach to it again without the
// client noticing, and copies forwarded to a lost leader are sent to the
// new one.

// QueueGroups runs the Raft groups of replicated queues (the cluster's
// node implements it).
type QueueGroups interface {
	// StartQueueGroup starts this node's member of group id: a new group
	// with the given members (node names), or the one its log holds.
	// With join, an empty member that the leader's AddMember fills.
	StartQueueGroup(id uint64, members []string, join bool, sm multiraft.StateMachine) (QueueGroup, error)
	// StopQueueGroup stops the member and drops its log.
	StopQueueGroup(id uint64)
}

// QueueGroup is this node's member of one queue's group.
type QueueGroup interface {
	// ProposeAsync: see multiraft.Group.ProposeAsync.
	ProposeAsync(data []byte, done func(any, error)) error
	// Leader names the leader's node ("" while there is none).
	Leader() string
	// LeaderChanged is closed when the leader changes.
	LeaderChanged() <-chan struct{}
	// Campaign asks for an election now.
	Campaign() error
	// AddMember and RemoveMember change the group's members (on the
	// leader); TransferLeadership hands the leadership to a member.
	AddMember(ctx context.Context, node string) error
	RemoveMember(ctx context.Context, node string) error
	TransferLeadership(node string)
	// ForceCampaign starts an election that voters grant even within the
	// old leader's lease (for a leader whose node is known to be gone).
	ForceCampaign()
	// Term is the group's current term here.
	Term() uint64
}

// SetQueueGroups makes quorum queues of a cluster replicated. Call before
// Serve (and before StartReplicas).
func (s *Server) SetQueueGroups(g QueueGroups) { s.groups = g }

// MemberLister is the part of Peers that names every member node of the
// cluster, reachable or not.
type MemberLister interface {
	// Members names them; complete is false while some has no name yet.
	Members() (names []string, complete bool)
}

// defaultGroupSize is a quorum queue's member count without
// x-quorum-initial-group-size (RabbitMQ's default).
const defaultGroupSize = 3

// chooseMembers picks the members of a new quorum queue's group: its home
// first, then the other running nodes at random.
func (s *Server) chooseMembers(home string, args amqp.Table) []string {
	size := defaultGroupSize
	if n, ok := amqp.Int(args["x-quorum-initial-group-size"]); ok && n > 0 {
		size = int(n)
	}
	// Every member node, running or not (RabbitMQ picks from all the
	// cluster's nodes too): one down now counts towards the quorum later.
	var nodes []string
	if ml, ok := s.peers.(MemberLister); ok {
		// A cluster just formed: wait (briefly) for every node's name.
		for range 100 {
			names, complete := ml.Members()
			nodes = names
			if complete {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	} else if pl, ok := s.peers.(PeerLister); ok {
		nodes = append(pl.Others(), s.cfg.NodeName)
	}
	others := []string{}
	for _, n := range nodes {
		if n != home {
			others = append(others, n)
		}
	}
	rand.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	members := append([]string{home}, others...)
	return members[:min(size, len(members))]
}

// replica is a replicated queue's state on one node.
type replica struct {
	s       *Server
	v       *Vhost
	q       *Queue
	id      uint64                   // the group
	members atomic.Pointer[[]string] // node names (memberList); changed by the metadata log
	sm      qsm
	log     *zap.Logger

	g       atomic.Pointer[groupRef] // this node's member; nil on other nodes
	leading atomic.Bool              // the queue runs here (set when the leader's first entry applies)
	stopped atomic.Bool
	// join: this node was added to the group after it started (its member
	// starts empty and the leader fills it).
	join bool

	mu   sync.Mutex
	ops  []byte // journal operations waiting to be proposed; guarded by mu
	kick chan struct{}

	pubs  *pubQueue     // publishes on their way to the leader, in order (pubqueue.go)
	epoch atomic.Uint64 // this node's leaderships of the group

	flow flowGate // publishes taken and not yet answered (flow control)
}

// groupRef is this node's running member of the group; done ends its
// goroutine (the queue deleted, or this node removed from the group).
type groupRef struct {
	QueueGroup
	done chan struct{}
}

func newReplica(s *Server, v *Vhost, id uint64, members []string) *replica {
	r := &replica{s: s, v: v, id: id, kick: make(chan struct{}, 1)}
	r.members.Store(&members)
	r.log = s.log.With(zap.Uint64("group", id))
	r.sm.r, r.sm.st = r, s.store
	r.pubs = newPubQueue(r.try, r.target, &r.stopped, &r.flow)
	return r
}

func (r *replica) member() bool { return slices.Contains(r.memberList(), r.s.cfg.NodeName) }

// memberList names the group's members now.
func (r *replica) memberList() []string { return *r.members.Load() }

// start runs this node's member of the group (if it is one) and follows
// its leader. Not on the ready loop: starting a group touches the disk.
func (r *replica) start() {
	if r.s.groups == nil || !r.member() {
		return
	}
	// The messages this member kept in the store (a restart): read their
	// ids before the log applies again over them.
	if err := r.sm.load(); err != nil {
		r.log.Error("reading the queue's messages", zap.String("queue", r.q.Name), zap.Error(err))
		return
	}
	g, err := r.s.startMember(r.id, r.memberList(), r.join, &r.sm, r.stopped.Load)
	if err != nil {
		r.log.Error("starting the queue's group", zap.String("queue", r.q.Name), zap.Error(err))
		return
	}
	ref := &groupRef{g, make(chan struct{})}
	r.g.Store(ref)
	if !r.join && r.memberList()[0] == r.s.cfg.NodeName {
		go campaignFirst(g, r.stopped.Load)
	}
	go r.run(ref)
}

// startMember starts this node's member of a group (StartQueueGroup),
// retrying while a node restarted early does not know every member's name
// yet, until stopped says so.
func (s *Server) startMember(id uint64, members []string, join bool, sm multiraft.StateMachine, stopped func() bool) (QueueGroup, error) {
	var g QueueGroup
	var err error
	for range 100 {
		if g, err = s.groups.StartQueueGroup(id, members, join, sm); err == nil || stopped() {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return g, err
}

// campaignFirst makes the declaring node lead a new group first: it
// campaigns as soon as raft lets it (not before the group's first
// configuration applies).
func campaignFirst(g QueueGroup, stopped func() bool) {
	for range 40 {
		if g.Leader() != "" || stopped() {
			return
		}
		g.Campaign()
		time.Sleep(25 * time.Millisecond)
	}
}

// stop ends this node's member (the queue was deleted).
func (r *replica) stop() {
	if r.stopped.Swap(true) {
		return
	}
	r.leading.Store(false)
	if ref := r.g.Swap(nil); ref != nil {
		close(ref.done)
		if r.s.groups != nil {
			go func() {
				r.s.groups.StopQueueGroup(r.id)
				r.sm.drop()
			}()
		}
	}
}

// run is the member's one goroutine: it follows the group's leader (the
// queue's home; a new leader here proposes its marker entry, and the queue
// runs here once it applies) and proposes the queue's journal operations
// in batches. An idle queue's goroutine sleeps until one of those happens.
func (r *replica) run(ref *groupRef) {
	g := ref.QueueGroup
	last := ""
	for {
		ch := g.LeaderChanged()
		if lead := g.Leader(); lead != last {
			last = lead
			if lead != r.s.cfg.NodeName && r.leading.Load() {
				r.stepDown()
			}
			if lead != "" && lead != r.s.cfg.NodeName {
				r.q.setHome(lead)
				r.s.reattach(r.q)
			}
			if lead == r.s.cfg.NodeName {
				go r.claim(g)
			}
			r.pubs.leaderChanged()
		}
		select {
		case <-ch:
		case <-r.kick:
			r.flush(g)
		case <-ref.done:
			return
		}
	}
}

// claim proposes the marker entry that makes the queue run here.
func (r *replica) claim(g QueueGroup) {
	cmd := appendShortstr([]byte{opLead}, r.s.cfg.NodeName)
	for range 50 {
		done := make(chan error, 1)
		if err := g.ProposeAsync(cmd, func(_ any, err error) { done <- err }); err != nil {
			return // not the leader any more
		}
		if err := <-done; err == nil || r.stopped.Load() {
			return
		} else if errors.Is(err, multiraft.ErrNotLeader) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stepDown stops running the queue here: its consumers here are cancelled
// (clients of this node are told; other nodes' attach to the new leader)
// and its messages dropped from memory (the log keeps them).
func (r *replica) stepDown() {
	r.leading.Store(false)
	for _, p := range r.s.proxies.ofQueue(r.q) {
		p.abandon()
	}
	r.q.Queue.Reset()
}

// becomeLeader rebuilds the queue from the state machine (ready loop: the
// marker entry of this node applied, so everything before it has): its
// head in memory, its share of the memory budget, and the rest paged out.
func (r *replica) becomeLeader() {
	window := r.q.PageWindow
	head := int64(math.MaxInt64)
	if r.s.budget != nil {
		head = r.s.budget.Share()
	}
	es, disk, watermark, err := r.sm.head(window, head)
	if err != nil {
		r.log.Error("reading the queue's messages", zap.String("queue", r.q.Name), zap.Error(err))
		return
	}
	r.q.Queue.Reset()
	r.q.Queue.Restore(es, disk, watermark)
	r.epoch.Add(1)
	r.leading.Store(true)
	r.q.setHome(r.s.cfg.NodeName)
	r.pubs.leaderChanged() // publishes waiting for a leader go to this node now
	r.log.Info("leading quorum queue", zap.String("queue", r.q.Name), zap.String("vhost", r.v.Name), zap.Int("messages", len(es)+disk.N), zap.Int("in_memory", len(es)))
	go r.s.reattach(r.q)
	if len(r.memberList()) < r.clusterSize() {
		// Nodes that are not members learn the leader from the metadata.
		go func() {
			if _, err := r.s.proposeAdmin(metaCmd{Op: "queue.leader", Vhost: r.v.Name, Name: r.q.Name, Node: r.s.cfg.NodeName, Group: r.id}); err != nil {
				r.log.Warn("announcing the queue's leader", zap.String("queue", r.q.Name), zap.Error(err))
			}
		}()
	}
}

// clusterSize counts the cluster's member nodes.
func (r *replica) clusterSize() int {
	if ml, ok := r.s.peers.(MemberLister); ok {
		names, _ := ml.Members()
		return len(names)
	}
	return len(r.memberList())
}

// publish enqueues msg through the group: proposed here when this node
// leads, otherwise sent to the leader (and on to the next one if that one is
// lost). done (if set) gets the outcome once committed. Publishes keep
// their order: while some wait for a leader, the ones after them wait
// behind them.
func (r *replica) publish(msg *queue.Message, ttl int64, done func(bool)) {
	r.pubs.take(msg, ttl, done)
}

// target is where a publish would go now.
func (r *replica) target() sendTarget {
	if r.g.Load() != nil && r.leading.Load() {
		return sendTarget{r.s.cfg.NodeName, r.epoch.Load()}
	}
	return sendTarget{node: r.q.Home()}
}

// try proposes p here if this node serves the queue, or sends it to the
// node that does; false when there is none to take it now.
func (r *replica) try(p waitingPublish) bool {
	if g := r.g.Load(); g != nil && r.leading.Load() {
		r.pubs.track(sendTarget{r.s.cfg.NodeName, r.epoch.Load()})
		err := g.ProposeAsync(appendEnqueue(p.msg, p.ttl), func(v any, err error) {
			if err != nil {
				r.pubs.wait(p) // leadership lost: the next leader takes it
				r.pubs.untrack()
				return
			}
			r.pubs.untrack()
			res, _ := v.(queue.PublishResult)
			r.pubs.answer(p, res != queue.Rejected && res != queue.Gone)
		})
		if err != nil {
			r.pubs.untrack()
		}
		return err == nil
	}
	home := r.q.Home()
	if home == "" || home == r.s.cfg.NodeName || !r.s.reachable(home) {
		return false
	}
	// A node that stops leading forwards what it gets to the next leader
	// itself; the copy is sent again from here only if that node is lost.
	r.pubs.track(sendTarget{node: home})
	w := forwardWait{
		done:   func(ok bool) { r.pubs.untrack(); r.pubs.answer(p, ok) },
		resend: func() { r.pubs.wait(p); r.pubs.untrack() },
	}
	if !r.s.forwardTo(home, r.v, r.q, p.msg, p.ttl, w) {
		r.pubs.untrack()
		return false
	}
	return true
}

// publishWait bounds how long a publish to a replicated queue waits for
// a leader before it is nacked.
const publishWait = 10 * time.Second

// reachable reports whether node is connected now.
func (s *Server) reachable(node string) bool {
	pl, ok := s.peers.(PeerLister)
	return ok && slices.Contains(pl.Others(), node)
}

// --- the queue's journal: what leaves the queue goes to the log ---

// Journal operations in a batch entry.
const (
	opEnqueue = 'E' // at(8) ttl(8) exchange key (shortstr) hdrLen(4) header body
	opBatch   = 'B' // ops until the end: 'S' id(8) | 'D' id(8) | 'R' id(8) n(4) | 'F' id(8)
	opLead    = 'L' // node (shortstr): the queue runs there from here on
)

func appendEnqueue(msg *queue.Message, ttl int64) []byte {
	b := make([]byte, 0, 32+len(msg.Exchange)+len(msg.RoutingKey)+len(msg.Header)+len(msg.Body))
	b = append(b, opEnqueue)
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(ttl))
	b = appendShortstr(b, msg.Exchange)
	b = appendShortstr(b, msg.RoutingKey)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg.Header)))
	b = append(b, msg.Header...)
	return append(b, msg.Body...)
}

// addOp queues one operation for the log (queue lock held: no blocking).
// Only the leader's queue reports; a queue that stepped down is ignored.
func (r *replica) addOp(op byte, id uint64, n uint32) {
	if !r.leading.Load() {
		return
	}
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.ops = binary.BigEndian.AppendUint64(r.ops, id)
	if op == 'R' {
		r.ops = binary.BigEndian.AppendUint32(r.ops, n)
	}
	first := len(r.ops) <= 13
	r.mu.Unlock()
	if first {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// flush proposes the queued journal operations as one entry.
func (r *replica) flush(g QueueGroup) {
	r.mu.Lock()
	ops := r.ops
	r.ops = nil
	r.mu.Unlock()
	if len(ops) == 0 || !r.leading.Load() {
		return
	}
	// A lost batch is harmless: the next leader delivers those messages
	// again.
	g.ProposeAsync(append([]byte{opBatch}, ops...), func(any, error) {})
}

// Append implements queue.Journal: the message is in the log already.
func (r *replica) Append(uint64, uint64, *queue.Message, int64) {}

// Spill implements queue.Journal: every message of the queue is in the
// state machine's store already.
func (r *replica) Spill(uint64, uint64, *queue.Message, int64) {}

// Remove implements queue.Journal: the message left the queue.
func (r *replica) Remove(_, seq uint64, _ *queue.Message) { r.addOp('S', seq, 0) }

// Delivered implements queue.Journal.
func (r *replica) Delivered(_, seq uint64) { r.addOp('D', seq, 0) }

// Load implements queue.Journal: the leader's queue pages in from the
// state machine's store.
func (r *replica) Load(_, from uint64, max int) ([]queue.Entry, error) {
	gms, err := r.sm.read(from, max, math.MaxInt64)
	if err != nil {
		r.log.Error("paging the queue in", zap.String("queue", r.q.Name), zap.Error(err))
		return nil, err
	}
	r.sm.mu.Lock()
	watermark := r.sm.watermarkLocked()
	r.sm.mu.Unlock()
	now, qttl := time.Now().UnixNano(), r.sm.queueTTL()
	es := make([]queue.Entry, len(gms))
	for i, gm := range gms {
		es[i] = entryOf(gm, watermark, qttl, now)
	}
	return es, nil
}

// DropFrom implements queue.Journal.
func (r *replica) DropFrom(_, from uint64) { r.addOp('F', from, 0) }

// Returned implements queue.Journal.
func (r *replica) Returned(_, seq uint64, n uint32) { r.addOp('R', seq, n) }

// --- consumers and copies in flight follow the leader ---

// settleReplicated settles deliveries of a replicated queue through its
// leader; those a former leader made are not settled (the new leader has
// them back as ready and delivers them again, redelivered).
func settleReplicated(q *Queue, es []unackedEntry, how int) {
	home := q.Home()
	live := es[:0:0]
	for _, u := range es {
		if !u.acked && u.home == home {
			live = append(live, u)
		}
	}
	if len(live) > 0 {
		settleRemote(q, live, how)
	}
}

// reattach attaches this node's consumers of q to its current leader (this
// node included, through the loopback). Each starts its delivery tags above
// every tag it had, so that settling an old delivery cannot touch a new
// one. Retried while the leader is not yet serving the queue.
func (s *Server) reattach(q *Queue) {
	for _, ci := range s.remotes.ofQueue(q) {
		go s.reattachOne(ci)
	}
}

func (s *Server) reattachOne(ci *consumerInfo) {
	q := ci.q
	deadline := time.Now().Add(publishWait)
	for time.Now().Before(deadline) {
		if s.remotes.get(ci.remote) != ci || q.repl.stopped.Load() {
			return // cancelled meanwhile
		}
		home := q.Home()
		if home != "" {
			out, err := s.callPeer(home, consumeRequest(ci, q.repl.v.Name, ci.attach.Add(1)<<40, ci.c.Args))
			if err == nil && len(out) > 0 && out[0] == 0 {
				a := []byte{peerActivate}
				s.sendPeer(home, binary.BigEndian.AppendUint64(a, ci.remote))
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s.remotes.take(ci.remote) == ci {
		remoteCancelled([]*consumerInfo{ci}) // no leader came: the client is told
	}
}

// ofQueue lists (without removing) the consumers of q.
func (r *remoteConsumers) ofQueue(q *Queue) []*consumerInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*consumerInfo
	for _, ci := range r.byID {
		if ci.q == q {
			out = append(out, ci)
		}
	}
	return out
}

// ofQueue removes and returns the proxies consuming q here.
func (p *proxies) ofQueue(q *Queue) []*proxyConsumer {
	return p.takeWhere(func(_ proxyKey, pc *proxyConsumer) bool { return pc.q == q && pc.c != nil })
}

// --- members: grow, shrink, rebalance ---

// memberChangeWait bounds a change of a queue's members in its group.
const memberChangeWait = 30 * time.Second

// ErrNotReplicated: the queue is not a quorum queue of a cluster.
var ErrNotReplicated = errors.New("not a replicated quorum queue")

// replicatedQueue finds a replicated queue.
func (s *Server) replicatedQueue(vhost, name string) (*Queue, error) {
	s.mu.Lock()
	v := s.vhosts[vhost]
	s.mu.Unlock()
	if v == nil {
		return nil, ErrNotFound
	}
	v.mu.RLock()
	q := v.queues[name]
	v.mu.RUnlock()
	if q == nil {
		return nil, ErrNotFound
	}
	if q.repl == nil {
		return nil, ErrNotReplicated
	}
	return q, nil
}

// ChangeQueueMembers adds (add) or removes a node of a quorum queue's
// group through the metadata log: every node records the new members, an
// added node starts an empty member, and the group's leader makes the
// change in the group (the new member catches up from the leader's log or
// a snapshot). It reports whether anything changed.
func (s *Server) ChangeQueueMembers(vhost, name, node string, add bool) (bool, error) {
	q, err := s.replicatedQueue(vhost, name)
	if err != nil {
		return false, err
	}
	if ml, ok := s.peers.(MemberLister); ok {
		if names, _ := ml.Members(); !slices.Contains(names, node) {
			return false, fmt.Errorf("%w: no node '%s' in the cluster", ErrNotFound, node)
		}
	}
	members := slices.Clone(q.repl.memberList())
	switch {
	case add == slices.Contains(members, node):
		return false, nil
	case add:
		members = append(members, node)
	case len(members) == 1:
		return false, fmt.Errorf("cannot remove the last member of queue '%s'", name)
	default:
		members = slices.DeleteFunc(members, func(n string) bool { return n == node })
	}
	_, err = s.proposeAdmin(metaCmd{Op: "queue.members", Vhost: vhost, Name: name, Group: q.repl.id, Members: members, Node: node, On: add})
	return err == nil, err
}

// applyMembers applies a committed change of a queue's members here.
func (s *Server) applyMembers(c *metaCmd) metaResult {
	q, err := s.replicatedQueue(c.Vhost, c.Name)
	if err != nil || q.repl.id != c.Group {
		return resultOf(false, ErrNotFound)
	}
	r := q.repl
	members := slices.Clone(c.Members)
	r.members.Store(&members)
	r.v.persistQueue(q)
	self := s.cfg.NodeName
	stopHere := func() {
		r.leading.Store(false)
		if ref := r.g.Swap(nil); ref != nil {
			close(ref.done)
			if s.groups != nil {
				// Its messages stay in the store: if this node is added
				// back, the log applies again over them (or a snapshot
				// replaces them); they go with the queue.
				s.groups.StopQueueGroup(r.id)
			}
		}
	}
	if c.On && c.Node == self {
		r.join = true
		go r.start()
	}
	g := r.g.Load()
	if g == nil || g.Leader() != self {
		// The leader (elsewhere) changes the group; a node removed stops
		// its member now (the others are a majority without it).
		if !c.On && c.Node == self {
			go stopHere()
		}
		return resultOf(true, nil)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), memberChangeWait)
		defer cancel()
		var err error
		if c.On {
			err = g.AddMember(ctx, c.Node)
		} else {
			err = g.RemoveMember(ctx, c.Node)
		}
		if err != nil {
			r.log.Warn("changing the queue's members", zap.String("queue", q.Name), zap.String("node", c.Node), zap.Bool("add", c.On), zap.Error(err))
		}
		if !c.On && c.Node == self {
			stopHere() // this leader removed itself: it stepped down
		}
	}()
	return resultOf(true, nil)
}

// RebalanceQueues moves quorum queues' leaderships so that the nodes lead
// about as many each (rabbitmq-queues rebalance): a queue led by a node
// above the fair share goes to its member leading the fewest. It returns
// how many moves it asked for; they happen within an election's time.
func (s *Server) RebalanceQueues() (int, error) {
	type led struct {
		q      *Queue
		leader string
	}
	var all []led
	leads := map[string]int{}
	if ml, ok := s.peers.(MemberLister); ok {
		names, _ := ml.Members()
		for _, n := range names {
			leads[n] = 0
		}
	}
	for _, q := range s.replicatedQueues() {
		all = append(all, led{q, q.Home()})
		leads[q.Home()]++
	}
	if len(all) == 0 {
		return 0, nil
	}
	share := (len(all) + len(leads) - 1) / len(leads)
	slices.SortFunc(all, func(a, b led) int { return strings.Compare(a.q.Name, b.q.Name) })
	moves := 0
	for _, x := range all {
		if leads[x.leader] <= share {
			continue
		}
		best := ""
		for _, m := range x.q.repl.memberList() {
			if m != x.leader && (best == "" || leads[m] < leads[best]) && (m == s.cfg.NodeName || s.reachable(m)) {
				best = m
			}
		}
		if best == "" || leads[best]+1 > share {
			continue
		}
		if _, err := s.proposeAdmin(metaCmd{Op: "queue.transfer", Vhost: x.q.repl.v.Name, Name: x.q.Name, Group: x.q.repl.id, Node: best}); err != nil {
			return moves, err
		}
		leads[x.leader]--
		leads[best]++
		moves++
	}
	return moves, nil
}

// applyTransfer hands a queue's leadership to c.Node if this node leads it.
func (s *Server) applyTransfer(c *metaCmd) metaResult {
	q, err := s.replicatedQueue(c.Vhost, c.Name)
	if err != nil || q.repl.id != c.Group {
		return resultOf(false, ErrNotFound)
	}
	if g := q.repl.g.Load(); g != nil && g.Leader() == s.cfg.NodeName {
		q.repl.log.Info("handing the queue's leadership over", zap.String("queue", q.Name), zap.String("to", c.Node))
		g.TransferLeadership(c.Node)
	}
	return resultOf(false, nil)
}

// leaderLost is told that node's connection dropped: for each replicated
// queue it led, one surviving member (the first by name that is up)
// starts an election at once instead of after the election timeout.
func (s *Server) leaderLost(node string) {
	if s.groups == nil {
		return
	}
	for _, q := range s.replicatedQueues() {
		g := q.repl.g.Load()
		if g == nil || q.Home() != node {
			continue
		}
		for _, m := range slices.Sorted(slices.Values(q.repl.memberList())) {
			if m == node || (m != s.cfg.NodeName && !s.reachable(m)) {
				continue
			}
			if m == s.cfg.NodeName {
				g.ForceCampaign()
			}
			break
		}
	}
}

// leaderWait bounds how long an operation on a replicated queue waits for
// its group to have a leader.
const leaderWait = 5 * time.Second

// waitHome waits (up to d) for q to have a home and returns it ("" if none
// came).
func (q *Queue) waitHome(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		if h := q.Home(); h != "" || !time.Now().Before(deadline) {
			return h
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- members lost for good are replaced ---

// replaceLost runs on every node of a cluster: for the quorum queues whose
// group this node leads, a member whose node has been unreachable for
// QuorumReplaceAfter is replaced by a reachable node outside the group (the
// one in the fewest groups): added first, then the lost one removed, both
// through the metadata log. A group without a majority cannot change its
// members and waits.
func (s *Server) replaceLost(stop <-chan struct{}) {
	after := s.cfg.QuorumReplaceAfter
	tick := min(max(after/10, 100*time.Millisecond), 10*time.Second)
	lost := map[string]time.Time{} // node → unreachable since
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ml, ok := s.peers.(MemberLister)
		if !ok {
			continue
		}
		nodes, _ := ml.Members()
		now := time.Now()
		for _, n := range nodes {
			if n == s.cfg.NodeName || s.reachable(n) {
				delete(lost, n)
			} else if _, seen := lost[n]; !seen {
				lost[n] = now
			}
		}
		for _, q := range s.replicatedQueues() {
			r := q.repl
			g := r.g.Load()
			if g == nil || g.Leader() != s.cfg.NodeName {
				continue
			}
			members := r.memberList()
			for _, m := range members {
				since, gone := lost[m]
				if !gone || now.Sub(since) < after {
					continue
				}
				repl := s.replacementFor(members, nodes, lost)
				if repl == "" {
					break
				}
				r.log.Warn("replacing a lost member of the queue's group", zap.String("queue", q.Name),
					zap.String("lost", m), zap.Duration("unreachable", now.Sub(since)), zap.String("by", repl))
				if _, err := s.ChangeQueueMembers(r.v.Name, q.Name, repl, true); err != nil {
					r.log.Warn("adding a member", zap.String("queue", q.Name), zap.Error(err))
					break
				}
				if _, err := s.ChangeQueueMembers(r.v.Name, q.Name, m, false); err != nil {
					r.log.Warn("removing a lost member", zap.String("queue", q.Name), zap.Error(err))
				}
				break // one change per queue per round
			}
		}
	}
}

// replacementFor picks a reachable node outside members, in the fewest
// groups.
func (s *Server) replacementFor(members, nodes []string, lost map[string]time.Time) string {
	in := map[string]int{}
	for _, q := range s.replicatedQueues() {
		for _, m := range q.repl.memberList() {
			in[m]++
		}
	}
	best := ""
	for _, n := range nodes {
		if _, gone := lost[n]; gone || slices.Contains(members, n) {
			continue
		}
		if best == "" || in[n] < in[best] || in[n] == in[best] && n < best {
			best = n
		}
	}
	return best
}

// replicatedQueues lists the quorum queues of a cluster, in every vhost.
func (s *Server) replicatedQueues() []*Queue {
	return s.queuesWhere(func(q *Queue) bool { return q.repl != nil })
}

// replicatedStreams lists the replicated streams of every vhost.
func (s *Server) replicatedStreams() []*Queue {
	return s.queuesWhere(func(q *Queue) bool { return q.srepl != nil })
}

// queuesWhere lists the queues of every vhost that keep says to.
func (s *Server) queuesWhere(keep func(*Queue) bool) []*Queue {
	var out []*Queue
	for _, v := range s.vhostList("") {
		v.mu.RLock()
		for _, q := range v.queues {
			if keep(q) {
				out = append(out, q)
			}
		}
		v.mu.RUnlock()
	}
	return out
}
