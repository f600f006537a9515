package server

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// Definition records as stored. Arguments keep their AMQP field types by
// being stored in wire form.
type exchangeRecord struct {
	Vhost      string `json:"vhost"`
	Name       string `json:"name"`
	Type       string `json:"type"`
	AutoDelete bool   `json:"auto_delete"`
	Internal   bool   `json:"internal"`
	Args       []byte `json:"arguments"`
	// DelayID is the journal id of a delayed-message exchange's pending messages.
	DelayID uint64 `json:"delay_id,omitempty"`
	// Group and Members: the Raft group of a deduplicating exchange's cache
	// on a cluster (dedup_group.go).
	Group   uint64   `json:"group,omitempty"`
	Members []string `json:"members,omitempty"`
}

type queueRecord struct {
	Vhost      string `json:"vhost"`
	Name       string `json:"name"`
	ID         uint64 `json:"id"`
	AutoDelete bool   `json:"auto_delete"`
	Args       []byte `json:"arguments"`
	// Home is the node the queue lives on, in a cluster ("": this node).
	Home string `json:"home,omitempty"`
	// Group and Members: a replicated queue's Raft group (replica.go).
	Group   uint64   `json:"group,omitempty"`
	Members []string `json:"members,omitempty"`
}

type bindingRecord struct {
	Vhost       string `json:"vhost"`
	Source      string `json:"source"`
	Destination string `json:"destination"`
	ToExchange  bool   `json:"to_exchange"`
	RoutingKey  string `json:"routing_key"`
	Args        []byte `json:"arguments"`
	// Seq orders bindings at restore as they were made, so a
	// consistent-hash exchange rebuilds the same ring (hash.go).
	Seq int64 `json:"seq,omitempty"`
}

func nameKey(vhost, name string) string { return vhost + "\x00" + name }

func bindingRecordOf(vhost, src string, d dest, key string) bindingRecord {
	_, toX := d.(*Exchange)
	return bindingRecord{Vhost: vhost, Source: src, Destination: d.destName(), ToExchange: toX, RoutingKey: key}
}

// recordKey is a binding's key in the store.
func recordKey(r bindingRecord, args amqp.Table) string {
	kind := "q"
	if r.ToExchange {
		kind = "e"
	}
	return r.Vhost + "\x00" + r.Source + "\x00" + kind + "\x00" + r.Destination + "\x00" + r.RoutingKey + "\x00" + exchange.CanonicalArgs(args)
}

func isDurable(d dest) bool {
	switch d := d.(type) {
	case *Queue:
		return d.Durable
	case *Exchange:
		return d.Durable
	}
	return false
}

// The persist and forget methods add definition changes to the store's
// pending batch; handlers call syncDefs before answering. Lock must be held.

func (v *Vhost) persistExchange(x *Exchange) {
	if v.store == nil || !x.Durable || x.Name == "" || v.restoring {
		return
	}
	v.store.PutDef(store.KindExchange, nameKey(v.Name, x.Name), exchangeRecord{
		Vhost: v.Name, Name: x.Name, Type: x.Kind, AutoDelete: x.AutoDelete, Internal: x.Internal,
		Args: amqp.AppendTable(nil, x.Args), DelayID: delayID(x),
		Group: x.dedupGroupID(), Members: x.dedupMembers(),
	})
}

func (v *Vhost) forgetExchange(x *Exchange) {
	if v.store != nil && x.Durable {
		v.store.DeleteDef(store.KindExchange, nameKey(v.Name, x.Name))
	}
}

func (v *Vhost) persistQueue(q *Queue) {
	if v.store == nil || !q.Durable || q.Exclusive || v.restoring {
		return
	}
	v.store.PutDef(store.KindQueue, nameKey(v.Name, q.Name), queueRecord{
		Vhost: v.Name, Name: q.Name, ID: q.ID, AutoDelete: q.AutoDelete, Args: amqp.AppendTable(nil, q.Args), Home: q.homeRecord(v.node),
		Group: q.groupID(), Members: q.groupMembers(),
	})
}

func (v *Vhost) forgetQueue(q *Queue) {
	if v.store != nil && q.Durable && !q.Exclusive {
		v.store.DeleteDef(store.KindQueue, nameKey(v.Name, q.Name))
		v.store.DeleteQueue(q.ID)
	}
}

func (v *Vhost) persistBinding(src *Exchange, d dest, key string, args amqp.Table) {
	if v.store == nil || !src.Durable || !isDurable(d) || src.Name == "" || v.restoring {
		return
	}
	r := bindingRecordOf(v.Name, src.Name, d, key)
	r.Args = amqp.AppendTable(nil, args)
	r.Seq = time.Now().UnixNano()
	v.store.PutDef(store.KindBinding, recordKey(r, args), r)
}

func (v *Vhost) forgetBinding(src *Exchange, d dest, key string, args amqp.Table) {
	if v.store != nil && src.Durable && isDurable(d) {
		v.store.DeleteDef(store.KindBinding, recordKey(bindingRecordOf(v.Name, src.Name, d, key), args))
	}
}

// syncDefs waits until definition changes made so far are on disk.
func (v *Vhost) syncDefs() {
	if v.store != nil {
		v.store.Flush()
	}
}

// newQueue builds a queue wired to this vhost: journal, dead-lettering and
// auto-delete. Lock must be held (it is added to the registry).
func (v *Vhost) newQueue(cfg queue.Config, owner *conn) *Queue {
	if v.store != nil {
		// Every queue gets an id and the journal: durable ones to persist,
		// all of them to page out beyond their in-memory window.
		cfg.ID = v.nextQueueID()
		cfg.Journal = v.store
		cfg.PageWindow = v.pageWindow
		cfg.Budget = v.budget
	}
	p, def := v.queuePolicy(cfg.Name)
	cfg.Policy = def
	q := &Queue{Queue: queue.New(cfg), owner: owner, srv: v.srv}
	q.setHome(v.node)
	q.policy.Store(p)
	if owner != nil {
		owner.addExclusive(q)
	}
	v.attachQueue(q)
	return q
}

// newReplicatedQueue builds a quorum queue of a cluster: its messages are in
// its group's log, not the store (replica.go). Lock must be held.
func (v *Vhost) newReplicatedQueue(cfg queue.Config, group uint64, members []string) *Queue {
	r := newReplica(v.srv, v, group, members)
	cfg.Durable = true
	cfg.Journal = r
	// The leader's queue pages like a classic one: its head in memory
	// within the budget, the rest in the state machine's store.
	cfg.PageWindow = v.pageWindow
	cfg.Budget = v.budget
	if v.store != nil {
		cfg.ID = v.nextQueueID()
	}
	p, def := v.queuePolicy(cfg.Name)
	cfg.Policy = def
	q := &Queue{Queue: queue.New(cfg), srv: v.srv, repl: r}
	r.q = q
	q.setHome("") // until its group has a leader (replica.follow)
	q.policy.Store(p)
	v.attachQueue(q)
	return q
}

// groupID and groupMembers are a replicated queue's group, for its record.
func (q *Queue) groupID() uint64 {
	switch {
	case q.repl != nil:
		return q.repl.id
	case q.srepl != nil:
		return q.srepl.id
	}
	return 0
}

func (q *Queue) groupMembers() []string {
	switch {
	case q.repl != nil:
		return q.repl.memberList()
	case q.srepl != nil:
		return q.srepl.members
	}
	return nil
}

// StartReplicas starts this node's members of the replicated queues it
// restored (call once the cluster runs).
func (s *Server) StartReplicas() {
	if s.cfg.QuorumReplaceAfter > 0 && s.groups != nil {
		go s.replaceLost(s.stopWatch)
	}
	for _, v := range s.vhostList("") {
		v.mu.RLock()
		for _, q := range v.queues {
			if q.repl != nil {
				go q.repl.start()
			}
			if q.srepl != nil {
				go q.srepl.start()
			}
		}
		for _, x := range v.exchanges {
			if x.dedup != nil && x.dedup.grp != nil {
				go x.dedup.grp.start()
			}
		}
		v.mu.RUnlock()
	}
}

// attachQueue registers q and wires its dead-lettering and its deletion
// when unused (auto-delete, x-expires). Lock must be held.
func (v *Vhost) attachQueue(q *Queue) {
	q.OnDeadLetter = func(_ *queue.Queue, dls []queue.DeadLetter) { v.deadLetter(q, dls) }
	q.OnUnused = func(*queue.Queue) {
		if q.owner != nil {
			q.owner.removeExclusive(q)
		}
		// In a cluster a shared queue's deletion (auto-delete, x-expires)
		// goes through the metadata log, so every node drops it.
		if v.srv != nil && v.srv.meta != nil && !q.Exclusive {
			go v.srv.dropQueue(v.Name, q.Name)
			return
		}
		v.deleteQueue(q)
	}
	v.queues[q.Name] = q
	v.topologyChanged()
}

// loadRecords reads every stored definition of a kind as JSON records of T.
func loadRecords[T any](st *store.Store, kind byte) ([]T, error) {
	var out []T
	err := st.Defs(kind, func(name string, raw []byte) error {
		var r T
		if err := json.Unmarshal(raw, &r); err != nil {
			return fmt.Errorf("definition %q: %w", name, err)
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// Restore loads durable definitions and messages from the store. Call it
// once, before Serve.
func (s *Server) Restore() error {
	st := s.store
	if st == nil {
		return nil
	}
	if err := s.restoreAccess(); err != nil {
		return err
	}
	if err := s.restorePolicies(); err != nil {
		return err
	}
	if err := s.restoreGlobals(); err != nil {
		return err
	}
	if err := s.restoreParameters(); err != nil {
		return err
	}
	if err := s.restoreMetaApplied(); err != nil {
		return err
	}
	s.mu.Lock()
	vhosts := make(map[string]*Vhost, len(s.vhosts))
	for n, v := range s.vhosts {
		vhosts[n] = v
	}
	s.mu.Unlock()
	for _, v := range vhosts {
		v.mu.Lock()
		v.restoring = true
	}
	defer func() {
		for _, v := range vhosts {
			v.restoring = false
			v.mu.Unlock()
		}
	}()
	vhostOf := func(name string) (*Vhost, error) {
		if v := vhosts[name]; v != nil {
			return v, nil
		}
		return nil, fmt.Errorf("definition in unknown vhost %q", name)
	}

	var delayed []*delayer
	exchanges, err := loadRecords[exchangeRecord](st, store.KindExchange)
	if err != nil {
		return err
	}
	for _, r := range exchanges {
		v, err := vhostOf(r.Vhost)
		if err != nil {
			return err
		}
		args, err := decodeArgs(r.Args)
		if err != nil {
			return err
		}
		kind := r.Type
		if kind == DelayedType {
			kind, _ = args["x-delayed-type"].(string)
		}
		m, ok := matcherOf(kind, args)
		if !ok {
			return fmt.Errorf("exchange %q has unknown type %q", r.Name, r.Type)
		}
		configurePicker(m, args) // validated when declared
		x := &Exchange{Name: r.Name, Kind: r.Type, Durable: true, AutoDelete: r.AutoDelete, Internal: r.Internal, Args: args, m: m}
		x.pick, _ = m.(exchange.Picker[dest])
		x.dedup = v.newDedupCache(x)
		if x.dedup != nil && r.Group != 0 && v.srv != nil {
			v.replicateDedup(v.srv, x, r.Group, r.Members) // started by StartReplicas
		}
		x.policy = v.policyFor("exchanges", x.Name)
		x.AE = exchangeAE(x)
		if r.Type == DelayedType {
			x.delay = newDelayer(v, x, r.DelayID)
			if err := x.delay.restore(); err != nil {
				return fmt.Errorf("delayed exchange %q: %w", r.Name, err)
			}
			delayed = append(delayed, x.delay)
			if r.DelayID > s.lastQueueID.Load() {
				s.lastQueueID.Store(r.DelayID)
			}
		}
		v.exchanges[r.Name] = x
	}

	if err := restoreDedupCaches(st, vhosts); err != nil {
		return err
	}

	records, err := loadRecords[queueRecord](st, store.KindQueue)
	if err != nil {
		return err
	}
	sort.Slice(records, func(i, j int) bool { return records[i].ID < records[j].ID })
	live := map[uint64]bool{}
	window := s.cfg.PageWindow
	if window == 0 {
		window = queue.DefaultPageWindow
	}
	// Each queue reads back only its head, its share of the memory budget;
	// the rest stays on disk until consumers reach it.
	head := int64(math.MaxInt64)
	if s.budget != nil {
		head = s.budget.RestoreShare(len(records))
	}
	loads, err := loadHeads(st, records, window, head)
	if err != nil {
		return err
	}
	for i, r := range records {
		v, err := vhostOf(r.Vhost)
		if err != nil {
			return err
		}
		args, err := decodeArgs(r.Args)
		if err != nil {
			return err
		}
		if r.ID > s.lastQueueID.Load() {
			s.lastQueueID.Store(r.ID)
		}
		if r.Group != 0 && len(r.Members) > 0 && !queue.IsStream(args) {
			// A replicated queue: its messages come back from its log when
			// its group starts (StartReplicas).
			q := v.newReplicatedQueue(queue.Config{Name: r.Name, Vhost: v.Name, AutoDelete: r.AutoDelete, Args: args}, r.Group, r.Members)
			q.ID = r.ID
			if r.Home != "" {
				q.setHome(r.Home)
			}
			live[r.ID] = true
			continue
		}
		if queue.IsStream(args) {
			// A stream's messages are in its log, which serves at once.
			q, err := v.newStreamQueue(queue.Config{Name: r.Name, Vhost: v.Name, Durable: true, Args: args, ID: r.ID})
			if err != nil {
				return fmt.Errorf("stream %q: %w", r.Name, err)
			}
			if r.Group != 0 && len(r.Members) > 0 {
				v.replicateStream(q, r.Group, r.Members) // its group starts with StartReplicas
			}
			live[r.ID] = true
			continue
		}
		p, def := v.queuePolicy(r.Name)
		q := &Queue{Queue: queue.New(queue.Config{Name: r.Name, Vhost: v.Name, Durable: true, AutoDelete: r.AutoDelete, Args: args, ID: r.ID, Journal: st, PageWindow: v.pageWindow, Budget: v.budget, Policy: def}), srv: s}
		q.setHome(v.node)
		if r.Home != "" {
			q.setHome(r.Home)
		}
		q.policy.Store(p)
		q.Restore(loads[i].es, loads[i].disk, loads[i].watermark)
		v.attachQueue(q)
		live[r.ID] = true
	}

	bindings, err := loadRecords[bindingRecord](st, store.KindBinding)
	if err != nil {
		return err
	}
	sort.SliceStable(bindings, func(i, j int) bool { return bindings[i].Seq < bindings[j].Seq })
	for _, r := range bindings {
		v, err := vhostOf(r.Vhost)
		if err != nil {
			return err
		}
		args, err := decodeArgs(r.Args)
		if err != nil {
			return err
		}
		src := v.exchanges[r.Source]
		var d dest
		if r.ToExchange {
			if x := v.exchanges[r.Destination]; x != nil {
				d = x
			}
		} else if q := v.queues[r.Destination]; q != nil {
			d = q
		}
		if src == nil || d == nil {
			s.log.Sugar().Warnf("dropping binding %s -> %s: an end is missing", r.Source, r.Destination)
			st.DeleteDef(store.KindBinding, recordKey(r, args))
			continue
		}
		v.bind(src, d, r.RoutingKey, args)
	}
	for _, d := range delayed {
		live[d.id] = true
		d.start()
	}
	if err := st.Sweep(live); err != nil {
		return err
	}
	s.sweepStreams(live)
	groups := map[uint64]bool{}
	for _, v := range vhosts {
		for _, q := range v.queues {
			if q.repl != nil {
				groups[q.repl.id] = true
			}
		}
	}
	if err := st.SweepGroups(groups); err != nil {
		return err
	}
	n := 0
	for _, r := range records {
		if q := vhosts[r.Vhost].queues[r.Name]; q != nil {
			ready, _, _ := q.Counts()
			n += ready
		}
	}
	s.log.Sugar().Infof("restored %d durable queues with %d messages", len(records), n)
	return nil
}

func decodeArgs(b []byte) (amqp.Table, error) {
	if len(b) == 0 {
		return nil, nil
	}
	t, err := amqp.DecodeTable(b)
	if err != nil {
		return nil, fmt.Errorf("stored arguments: %w", err)
	}
	if len(t) == 0 {
		return nil, nil
	}
	return t, nil
}

func delayID(x *Exchange) uint64 {
	if x.delay == nil {
		return 0
	}
	return x.delay.id
}

// homeRecord is the home stored for q: empty when it is this node, so a
// single node's records do not name it.
func (q *Queue) homeRecord(node string) string {
	if q.Home() == node {
		return ""
	}
	return q.Home()
}

// dedupGroupID and dedupMembers are a deduplicating exchange's group on a
// cluster, for its record.
func (x *Exchange) dedupGroupID() uint64 {
	if x.dedup == nil || x.dedup.grp == nil {
		return 0
	}
	return x.dedup.grp.id
}

func (x *Exchange) dedupMembers() []string {
	if x.dedup == nil || x.dedup.grp == nil {
		return nil
	}
	return x.dedup.grp.members
}
