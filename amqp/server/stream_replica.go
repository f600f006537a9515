package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/queue/stream"
)

// Replicated streams in a cluster. A stream declared on a cluster is a Raft
// group of x-initial-cluster-size member nodes (every node of the cluster by
// default, as RabbitMQ does), on the node's multiraft host beside the quorum
// queues' groups. Its log holds one entry per publish: the message and the
// time the leader took it. Every member applies the committed entries to its
// own stream log (queue/stream) in log order: a message's offset is the
// number of messages applied before it and its timestamp is the entry's, so
// every member's log is the same, record for record.
//
// Publishes go to the group's leader (forwarded there from other nodes, as
// a quorum queue's are) and are confirmed once their entry commits, that is
// once a majority of the members has it in its write-ahead log. Consumers
// read their own node's log when the node is a member: a member's log only
// ever holds committed entries, so what it serves is committed, and nothing
// moves when the leader changes (a consumer carries on at its offset while
// the members elect a new leader). A member may be behind the group: a
// consumer that asks it for an offset past its log's end (one it read on
// another member) waits there until the member applies it, rather than
// start at the member's end and get again what it had. On a node that is not a member, the
// stream's home is a member, read through the remote-consumer path (with
// the consumer's arguments); when that member goes away, the home moves to
// another and the consumers attach there again from where they started.
//
// The log is the state machine's state (a multiraft.Checkpointer): a
// checkpoint waits until the log has synced what was applied and records
// how many messages that is; at a restart the entries after it apply again
// and those the log holds already are skipped. A member that needs a
// snapshot gets the log's records (SnapshotData), appends those it lacks,
// and starts over at the snapshot's first offset if its log ends before it.
//
// Retention (max-age, max-length-bytes) drops whole segments. Segments are
// cut at the same records on every member (their size decides), so every
// member drops the same ones: by size at the same point of the log, by age
// when each member's clock says so.

// streamReplica is a replicated stream's state on one node: the group and
// the publishes waiting for a leader. Its log is the queue's (q.Queue).
type streamReplica struct {
	s       *Server
	v       *Vhost
	q       *Queue
	id      uint64   // the group
	members []string // node names, fixed at declare
	sm      ssm
	log     *zap.Logger

	g       atomic.Pointer[groupRef] // this node's member; nil on other nodes
	stopped atomic.Bool

	flow flowGate  // publishes taken and not yet answered (flow control)
	pubs *pubQueue // publishes on their way to the leader, in order (pubqueue.go)
}

// replicateStream makes the stream q (its log opened by newStreamQueue) a
// replicated one of group id with the given members, and sets its home:
// this node on a member, else the first member. Lock must be held.
func (v *Vhost) replicateStream(q *Queue, id uint64, members []string) {
	r := &streamReplica{s: v.srv, v: v, q: q, id: id, members: slices.Clone(members)}
	r.log = v.srv.log.With(zap.Uint64("group", id))
	r.sm.r = r
	r.pubs = newPubQueue(r.try, r.target, &r.stopped, &r.flow)
	q.srepl = r
	q.SetStreamReplicated() // a member behind its group: consumers wait for their offset
	if r.member() || len(members) == 0 {
		q.setHome(v.node)
	} else {
		q.setHome(members[0])
	}
}

// streamMembers picks the members of a new stream's group: its home first,
// then x-initial-cluster-size - 1 other nodes (every node of the cluster
// without it, as RabbitMQ's default).
func (s *Server) streamMembers(home string, args amqp.Table) []string {
	size := int64(1 << 20)
	if n, ok := amqp.Int(args["x-initial-cluster-size"]); ok && n > 0 {
		size = n
	}
	return s.chooseMembers(home, amqp.Table{"x-quorum-initial-group-size": size})
}

func (r *streamReplica) member() bool { return slices.Contains(r.members, r.s.cfg.NodeName) }

// leader names the group's leader as this node knows it ("" if none, or on
// a node that is not a member).
func (r *streamReplica) leader() string {
	if g := r.g.Load(); g != nil {
		return g.Leader()
	}
	return ""
}

// start runs this node's member of the group, if it is one. Not on the
// ready loop: starting a group touches the disk.
func (r *streamReplica) start() {
	if r.s.groups == nil || !r.member() || r.stopped.Load() {
		return
	}
	g, err := r.s.startMember(r.id, r.members, false, &r.sm, r.stopped.Load)
	if err != nil {
		r.log.Error("starting the stream's group", zap.String("queue", r.q.Name), zap.Error(err))
		return
	}
	ref := &groupRef{g, make(chan struct{})}
	if !r.g.CompareAndSwap(nil, ref) {
		return // already started (start runs once per member; defensive)
	}
	if r.stopped.Load() {
		r.stop()
		return
	}
	if r.members[0] == r.s.cfg.NodeName {
		go campaignFirst(g, r.stopped.Load)
	}
	go r.run(ref)
}

// run follows the group's leader: publishes that wait for one are tried
// again when it changes.
func (r *streamReplica) run(ref *groupRef) {
	last := ""
	for {
		ch := ref.LeaderChanged()
		if lead := ref.Leader(); lead != last {
			last = lead
			if lead != "" {
				r.log.Debug("stream leader", zap.String("queue", r.q.Name), zap.String("leader", lead))
			}
			r.pubs.leaderChanged()
		}
		select {
		case <-ch:
		case <-ref.done:
			return
		}
	}
}

// stop ends this node's member and drops its group's log (the stream was
// deleted; its own log goes with the queue).
func (r *streamReplica) stop() {
	r.stopped.Store(true)
	if ref := r.g.Swap(nil); ref != nil {
		close(ref.done)
		if r.s.groups != nil {
			go r.s.groups.StopQueueGroup(r.id)
		}
	}
}

// streamLeaderLost is told that node's connection dropped: an election
// starts at once in the groups of streams that node led, on the first
// surviving member by name, rather than after the election timeout; and
// streams at home there for this node move (streamHomeLost).
func (s *Server) streamLeaderLost(node string) {
	if s.groups == nil {
		return
	}
	s.streamHomeLost(node)
	for _, q := range s.replicatedStreams() {
		r := q.srepl
		g := r.g.Load()
		if g == nil || g.Leader() != node {
			continue
		}
		for _, m := range slices.Sorted(slices.Values(r.members)) {
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

// streamHomeLost is told (before the consumers of queues at home on node
// are cancelled) that node's connection dropped: on this node, if it is
// not a member of a stream whose home was node, the stream's home moves to
// another member that is up, and this node's consumers of it attach there
// again, each from the offset after the last one it delivered.
// Publishes go to any member already.
func (s *Server) streamHomeLost(node string) {
	for _, q := range s.replicatedStreams() {
		r := q.srepl
		if r.member() || q.Home() != node {
			continue
		}
		for _, m := range r.members {
			if m != node && s.reachable(m) {
				q.setHome(m)
				for _, ci := range s.remotes.ofQueue(q) {
					go s.reattachStream(r, ci)
				}
				break
			}
		}
	}
}

// reattachStream attaches ci (a consumer here of r's stream) to the
// stream's home again, its delivery tags above every tag it had (so that
// settling an old delivery cannot touch a new one), reading on from the
// offset after the last one it delivered (from its own x-stream-offset if
// none came yet). Retried while the home does not take it, up to
// publishWait; then the client is told.
func (s *Server) reattachStream(r *streamReplica, ci *consumerInfo) {
	args := ci.c.Args
	if next := ci.streamNext.Load(); next > 0 {
		args = maps.Clone(args)
		if args == nil {
			args = amqp.Table{}
		}
		args["x-stream-offset"] = int64(next)
	}
	deadline := time.Now().Add(publishWait)
	for time.Now().Before(deadline) {
		if s.remotes.get(ci.remote) != ci || r.stopped.Load() {
			return // cancelled meanwhile
		}
		if home := r.q.Home(); home != "" {
			out, err := s.callPeer(home, consumeRequest(ci, r.v.Name, ci.attach.Add(1)<<40, args))
			if err == nil && len(out) > 0 && out[0] == 0 {
				s.sendPeer(home, binary.BigEndian.AppendUint64([]byte{peerActivate}, ci.remote))
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s.remotes.take(ci.remote) == ci {
		remoteCancelled([]*consumerInfo{ci})
	}
}

// --- publishing: through the leader ---

// replicated reports whether q's messages go through a Raft group (a
// quorum queue or a stream of a cluster).
func (q *Queue) replicated() bool { return q.repl != nil || q.srepl != nil }

// flowGate is the publisher flow control of a replicated queue or stream
// (flowgate.go), nil for other queues.
func (q *Queue) flowGate() *flowGate {
	switch {
	case q.repl != nil:
		return &q.repl.flow
	case q.srepl != nil:
		return &q.srepl.flow
	}
	return nil
}

// publishReplicated enqueues msg into a replicated queue or stream; done
// (if set) gets the outcome once committed.
func (q *Queue) publishReplicated(msg *queue.Message, ttl int64, done func(bool)) {
	if q.srepl != nil {
		q.srepl.publish(msg, done)
		return
	}
	q.repl.publish(msg, ttl, done)
}

// publish appends msg through the group: proposed here when this node
// leads, otherwise sent to the node that does (or, from a node that is not
// a member, to the stream's home, which sends it on). Publishes keep their
// order (pubQueue): behind those waiting for a leader, and across a change
// of leader.
func (r *streamReplica) publish(msg *queue.Message, done func(bool)) {
	r.pubs.take(msg, -1, done)
}

// target is where a publish would go now: this node while it leads (the
// term tells its leaderships apart), the leader, or from a node that is
// not a member the home or another member that is up ("" when there is
// none).
func (r *streamReplica) target() sendTarget {
	self := r.s.cfg.NodeName
	if g := r.g.Load(); g != nil {
		if lead := g.Leader(); lead != self {
			return sendTarget{node: lead}
		}
		// Read before the proposal: a leadership since then has a later
		// term, which only holds later publishes until these are answered.
		return sendTarget{self, g.Term()}
	}
	for _, m := range append([]string{r.q.Home()}, r.members...) {
		if m != self && r.s.reachable(m) {
			return sendTarget{node: m}
		}
	}
	return sendTarget{}
}

// try proposes p here if this node leads, or sends it to the node that
// should take it; false when there is none now.
func (r *streamReplica) try(p waitingPublish) bool {
	self := r.s.cfg.NodeName
	t := r.target()
	if g := r.g.Load(); g != nil && t.node == self {
		r.pubs.track(t)
		err := g.ProposeAsync(appendStreamEntry(p.msg), func(_ any, err error) {
			switch {
			case err == nil:
				r.pubs.untrack()
				r.pubs.answer(p, true)
			case errors.Is(err, multiraft.ErrNotLeader) || errors.Is(err, multiraft.ErrLeadershipLost) ||
				errors.Is(err, multiraft.ErrProposalDropped):
				// Not proposed, or its outcome is unknown: proposed again,
				// here or by the next leader (a duplicate if it did
				// commit, never a loss).
				r.pubs.wait(p)
				r.pubs.untrack()
			default:
				r.pubs.untrack()
				r.pubs.answer(p, false)
			}
		})
		if err != nil {
			r.pubs.untrack()
		}
		return err == nil
	}
	if t.node == "" || t.node == self || !r.s.reachable(t.node) {
		return false
	}
	r.pubs.track(t)
	w := forwardWait{
		done:   func(ok bool) { r.pubs.untrack(); r.pubs.answer(p, ok) },
		resend: func() { r.pubs.wait(p); r.pubs.untrack() },
	}
	if !r.s.forwardTo(t.node, r.v, r.q, p.msg, -1, w) {
		r.pubs.untrack()
		return false
	}
	return true
}

// opStreamPublish is a stream's publish entry: ts(8, Unix ms) exchange key
// (shortstr each) hdrLen(4) header body.
const opStreamPublish = 'P'

func appendStreamEntry(msg *queue.Message) []byte {
	b := make([]byte, 0, 16+len(msg.Exchange)+len(msg.RoutingKey)+len(msg.Header)+len(msg.Body))
	b = append(b, opStreamPublish)
	b = binary.BigEndian.AppendUint64(b, uint64(time.Now().UnixMilli()))
	b = appendShortstr(b, msg.Exchange)
	b = appendShortstr(b, msg.RoutingKey)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg.Header)))
	b = append(b, msg.Header...)
	return append(b, msg.Body...)
}

func decodeStreamEntry(b []byte) (int64, *queue.Message, error) {
	rd := &peerReader{b: b}
	ts := int64(rd.u64())
	exch, key := rd.shortstr(), rd.shortstr()
	header := rd.bytes(rd.u32())
	if rd.err != nil {
		return 0, nil, rd.err
	}
	return ts, queue.NewMessage(exch, key, header, rd.b), nil
}

// --- the state machine: the stream's own log ---

// ssm applies a stream's group log to the member's stream log.
type ssm struct {
	r *streamReplica

	mu   sync.Mutex
	next uint64 // offset of the next message applied; guarded by mu
}

func (sm *ssm) streamLog() *stream.Log { return sm.r.q.StreamLog() }

// Apply implements multiraft.StateMachine: each publish takes the next
// offset; one the log holds already (applied again after a restart) is
// skipped.
func (sm *ssm) Apply(entries []multiraft.Entry) []multiraft.Result {
	out := make([]multiraft.Result, len(entries))
	l := sm.streamLog()
	for i, e := range entries {
		if len(e.Data) == 0 || e.Data[0] != opStreamPublish {
			continue
		}
		ts, msg, err := decodeStreamEntry(e.Data[1:])
		if err != nil {
			continue // proposed by no broker of ours: it takes no offset
		}
		sm.mu.Lock()
		off := sm.next
		sm.next++
		sm.mu.Unlock()
		out[i].Value = off
		if off < l.Next() {
			continue
		}
		got, err := sm.r.q.AppendStream(ts, msg)
		switch {
		case errors.Is(err, stream.ErrClosed):
			// The stream is being deleted or the broker stops.
		case err != nil:
			sm.r.log.Error("appending to the stream's log", zap.String("queue", sm.r.q.Name), zap.Error(err))
		case got != off:
			sm.r.log.Error("stream log out of step with its group", zap.String("queue", sm.r.q.Name),
				zap.Uint64("offset", got), zap.Uint64("expected", off))
		}
	}
	return out
}

// SnapshotDue implements multiraft.SnapshotPolicy: a checkpoint costs a
// sync of the log, so one every checkpointEvery entries keeps the group's
// in-memory log short.
func (sm *ssm) SnapshotDue(since uint64) bool { return since >= checkpointEvery }

// synced waits until the log has synced everything appended so far.
func (sm *ssm) synced() error {
	l := sm.streamLog()
	done := make(chan struct{})
	l.AfterSync(func() { close(done) })
	<-done
	return l.Err()
}

// Stream snapshot formats: a checkpoint, or the log's records (what a
// member that needs a snapshot is sent).
const (
	streamSnapCheckpoint = 'C' // next(8)
	streamSnapFull       = 'F' // next(8) first(8), then per record ts(8) filter(u16 len) exchange key(shortstr) header(u32 len) body(u32 len)
)

// Snapshot implements multiraft.Checkpointer: the log synced up to the
// last applied entry, and the count of messages applied.
func (sm *ssm) Snapshot() ([]byte, error) {
	if err := sm.synced(); err != nil {
		return nil, err
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return binary.BigEndian.AppendUint64([]byte{streamSnapCheckpoint}, sm.next), nil
}

// maxStreamSnapshot bounds a full snapshot: it travels in one transport
// frame (64 MiB). A log larger than this is sent from a later offset on, so
// a member restored from it keeps less history than the others.
const maxStreamSnapshot = 60 << 20

// SnapshotData implements multiraft.Checkpointer: the log's records, as of
// the last applied entry.
func (sm *ssm) SnapshotData() ([]byte, error) {
	if err := sm.synced(); err != nil {
		return nil, err
	}
	sm.mu.Lock()
	next := sm.next
	sm.mu.Unlock()
	return streamSnapshot(sm.streamLog(), next, maxStreamSnapshot)
}

// streamSnapshot encodes the records of l below next, the newest of them
// that fit in limit bytes. It is the one place that builds a full snapshot,
// so that it can become a stream of chunks.
func streamSnapshot(l *stream.Log, next uint64, limit int) ([]byte, error) {
	info := l.Info()
	from := info.First
	if n := next - min(from, next); info.Bytes > int64(limit) && n > 0 {
		// Start where the newest records about fill limit would begin.
		from += uint64(float64(n) * float64(info.Bytes-int64(limit)) / float64(info.Bytes))
	}
	for {
		b, full, err := encodeRecords(l, from, next, limit)
		if err != nil || !full {
			return b, err
		}
		from += max((next-from)/8, 1) // too big still: start later
	}
}

// encodeRecords encodes the records [from, next) of l; full reports that
// they did not fit in limit.
func encodeRecords(l *stream.Log, from, next uint64, limit int) ([]byte, bool, error) {
	rd, err := l.NewReader(from)
	if err != nil {
		return nil, false, err
	}
	defer rd.Close()
	first := rd.Offset()
	b := []byte{streamSnapFull}
	b = binary.BigEndian.AppendUint64(b, next)
	b = binary.BigEndian.AppendUint64(b, first)
	for want := first; want < next; want++ {
		rec, ok, err := rd.Next()
		if err != nil {
			return nil, false, err
		}
		if !ok || rec.Offset != want {
			return nil, false, fmt.Errorf("stream snapshot: record %d missing from the log", want)
		}
		b = binary.BigEndian.AppendUint64(b, uint64(rec.Timestamp))
		b = binary.BigEndian.AppendUint16(b, uint16(len(rec.Filter)))
		b = append(b, rec.Filter...)
		b = appendShortstr(b, string(rec.Exchange))
		b = appendShortstr(b, string(rec.RoutingKey))
		b = binary.BigEndian.AppendUint32(b, uint32(len(rec.Header)))
		b = append(b, rec.Header...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(rec.Body)))
		b = append(b, rec.Body...)
		if len(b) > limit && want+1 < next {
			return nil, true, nil
		}
	}
	return b, false, nil
}

var errStreamSnapshot = errors.New("bad stream snapshot")

// Restore implements multiraft.StateMachine: a checkpoint at a restart (the
// log has the records), or the records of the leader's log, of which this
// member appends those its log lacks.
func (sm *ssm) Restore(data []byte) error {
	if len(data) == 0 {
		return errStreamSnapshot
	}
	l := sm.streamLog()
	rd := &peerReader{b: data[1:]}
	switch data[0] {
	case streamSnapCheckpoint:
		next := rd.u64()
		if rd.err != nil || len(rd.b) != 0 {
			return errStreamSnapshot
		}
		if have := l.Next(); have < next {
			// The log lost what it had synced (its files were removed):
			// its offsets must stay those of the group.
			sm.r.log.Error("stream log shorter than its checkpoint; going on from the checkpoint",
				zap.String("queue", sm.r.q.Name), zap.Uint64("log", have), zap.Uint64("checkpoint", next))
			if err := l.ResetTo(next); err != nil {
				return err
			}
		}
		sm.mu.Lock()
		sm.next = next
		sm.mu.Unlock()
		return nil
	case streamSnapFull:
	default:
		return errStreamSnapshot
	}
	next, first := rd.u64(), rd.u64()
	if rd.err != nil || first > next {
		return errStreamSnapshot
	}
	if l.Next() < first {
		if err := l.ResetTo(first); err != nil {
			return err
		}
	}
	for off := first; off < next; off++ {
		ts := int64(rd.u64())
		var filter []byte
		if fl := rd.bytes(2); rd.err == nil {
			filter = rd.bytes(uint32(binary.BigEndian.Uint16(fl)))
		}
		exch, key := rd.shortstr(), rd.shortstr()
		header := rd.bytes(rd.u32())
		body := rd.bytes(rd.u32())
		if rd.err != nil {
			return fmt.Errorf("%w: record %d: %w", errStreamSnapshot, off, rd.err)
		}
		if off < l.Next() {
			continue
		}
		if _, err := l.AppendAt(ts, string(filter), exch, key, header, body); err != nil {
			return err
		}
	}
	sm.mu.Lock()
	sm.next = next
	sm.mu.Unlock()
	sm.r.log.Info("stream caught up from a snapshot", zap.String("queue", sm.r.q.Name),
		zap.Uint64("first", first), zap.Uint64("next", next))
	return nil
}

// streamInfo fills a replicated stream's leader (its node, as for quorum
// queues), members and the members reachable now.
func streamInfo(qi *QueueInfo, r *streamReplica) {
	if lead := r.leader(); lead != "" {
		qi.Node = lead
	}
	qi.Members = slices.Clone(r.members)
	for _, n := range qi.Members {
		if n == r.s.cfg.NodeName || r.s.reachable(n) {
			qi.Online = append(qi.Online, n)
		}
	}
}
