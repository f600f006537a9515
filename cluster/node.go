package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/cluster/transport"
)

// Transport frame kinds beyond Raft's: the cluster's control requests
// (forwarded proposals, joins, node information), and the brokers' own
// traffic (forwarded messages and their answers). multiraft.KindHeartbeats
// comes after them.
const (
	KindRPC    = multiraft.KindRaft + 1
	KindBroker = multiraft.KindRaft + 2
)

// forwardWait bounds one attempt at a change forwarded to the leader.
const forwardWait = 2 * time.Second

// ErrNoQuorum is returned for a metadata change when no leader can be
// reached (the node is in a minority, or an election is running).
var ErrNoQuorum = errors.New("cluster: no majority of the cluster's nodes is reachable; metadata changes are unavailable")

// Config configures a Node.
type Config struct {
	// NodeName is this node's name (warren@host).
	NodeName string
	// Listener is the cluster listener (--cluster-listen), already bound.
	Listener net.Listener
	// Seeds is --cluster-seeds: host:port of every founding node, the same
	// list on every node; it may include this node.
	Seeds []string
	// Dir holds the Raft write-ahead log and snapshots.
	Dir string
	// TLS, when set, secures inter-node connections (mutual TLS).
	TLS *tls.Config
	// Logger [zap.NewNop()].
	Logger *zap.Logger
	// Broker receives the metadata commands.
	Broker Broker
	// AMQP and HTTP are this node's client-facing addresses, for status.
	AMQP, HTTP string
	// TickInterval is one Raft tick [100 ms]; elections take 10 ticks.
	TickInterval time.Duration
}

// Node is this process's membership of a Warren cluster: the transport to
// the other nodes, the Raft host and the metadata group.
type Node struct {
	cfg     Config
	log     *zap.Logger
	id      uint64
	addr    string // this node's cluster address as others dial it
	started time.Time

	tr   *transport.Transport
	host *multiraft.Host
	meta *multiraft.Group
	sm   *metaSM

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start joins or forms the cluster and returns once the metadata group runs
// on this node (it may not have a leader yet). A node restarted with its
// data rejoins with its log; a node among the seeds forms the cluster with
// the others (the first majority of them to start elects a leader); any
// other node asks the seeds to add it.
func Start(cfg Config) (*Node, error) {
	n := New(cfg)
	return n, n.Start()
}

// New returns a node that does nothing until Start, so that the broker can
// be given it (as its MetaLog and Peers) before any traffic can arrive.
func New(cfg Config) *Node {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named("cluster"), started: time.Now()}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n
}

// Start runs the node (see the package's Start).
func (n *Node) Start() error {
	cfg := n.cfg
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	self, inSeeds := selfSeed(ctx, cfg.Seeds, cfg.Listener.Addr())
	cancel()
	if inSeeds {
		n.addr = self
	} else {
		n.addr = advertised(cfg.Listener.Addr())
	}
	n.id = NodeID(n.addr)
	n.tr = transport.New(transport.Config{NodeID: n.id, TLS: cfg.TLS, Logger: n.log.Named("transport"), Advertise: n.addr})
	n.tr.Handle(KindRPC, n.onRPC)
	n.tr.Handle(KindBroker, func(from uint64, payload []byte, reply func([]byte, error)) {
		m, ok := n.sm.member(from)
		if !ok || cfg.Broker == nil {
			if reply != nil {
				reply(nil, ErrUnknownNode)
			}
			return
		}
		cfg.Broker.HandlePeer(m.Name, payload, reply)
	})
	n.tr.OnPeerDown(func(peer uint64) {
		if m, ok := n.sm.member(peer); ok && cfg.Broker != nil {
			cfg.Broker.PeerDown(m.Name)
		}
	})
	n.sm = newMetaSM(cfg.Broker, cfg.Seeds, n.updatePeers)
	for _, s := range cfg.Seeds {
		n.tr.AddPeer(NodeID(s), s)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.tr.Serve(cfg.Listener)
	}()
	host, err := multiraft.NewHost(multiraft.Config{
		NodeID: n.id, Dir: filepath.Join(cfg.Dir, "raft"), Transport: n.tr, Logger: n.log.Named("raft"),
		TickInterval: cfg.TickInterval,
		// The metadata group's state lives in the broker's store; Raft
		// snapshots of it would not carry the definitions, so the log is not
		// compacted (a metadata log stays small: one entry per change).
		SnapshotEntries: math.MaxUint64,
	})
	if err != nil {
		n.close()
		return fmt.Errorf("cluster: %w", err)
	}
	n.host = host
	var peers []uint64
	recovered := slices.Contains(host.RecoveredGroups(), MetaGroup)
	switch {
	case recovered:
		n.log.Info("rejoining the cluster from the local log", zap.String("node", cfg.NodeName))
	case inSeeds:
		for _, s := range cfg.Seeds {
			peers = append(peers, NodeID(s))
		}
		slices.Sort(peers)
		peers = slices.Compact(peers)
		n.log.Info("forming the cluster with the seeds", zap.Strings("seeds", cfg.Seeds), zap.String("self", n.addr))
	default:
		n.log.Info("joining the cluster through the seeds", zap.Strings("seeds", cfg.Seeds), zap.String("self", n.addr))
	}
	if n.meta, err = host.StartGroup(MetaGroup, peers, n.sm); err != nil {
		n.close()
		return fmt.Errorf("cluster: starting the metadata group: %w", err)
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.announce(!recovered && !inSeeds)
	}()
	return nil
}

// announce records this node's name and addresses in the metadata (and,
// for a node that is not a member yet, first asks the cluster to add it),
// retrying until it succeeds or the node closes.
func (n *Node) announce(join bool) {
	me := Member{ID: n.id, Name: n.cfg.NodeName, Addr: n.addr, AMQP: n.cfg.AMQP, HTTP: n.cfg.HTTP}
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		var err error
		if join {
			err = n.askToJoin(me)
		}
		if err == nil {
			me.Seed = slices.Contains(n.cfg.Seeds, n.addr)
			err = n.proposeCommand(n.ctx, command{Op: "member", Member: &me}, nil)
		}
		if err == nil {
			n.log.Info("cluster member", zap.String("node", n.cfg.NodeName), zap.Uint64("id", n.id))
			return
		}
		n.log.Debug("announcing this node", zap.Error(err))
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// askToJoin asks each seed in turn to add this node to the cluster. A
// seed with a lower ID dials this node, which it does not know yet: it is
// told where this node is first (Knock).
func (n *Node) askToJoin(me Member) error {
	var last error = ErrNoQuorum
	for _, s := range n.cfg.Seeds {
		if id := NodeID(s); id < n.id && !n.tr.Connected(id) {
			ctx, cancel := context.WithTimeout(n.ctx, 2*time.Second)
			n.tr.Knock(ctx, s)
			cancel()
			for wait := 0; wait < 50 && !n.tr.Connected(id) && n.ctx.Err() == nil; wait++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
		ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
		_, err := n.rpc(ctx, NodeID(s), rpcRequest{Op: "join", Member: &me})
		cancel()
		if err == nil {
			return nil
		}
		last = err
	}
	return last
}

// updatePeers tells the transport where every member is (from Apply).
func (n *Node) updatePeers(ms map[uint64]Member) {
	for id, m := range ms {
		if id != n.id && m.Addr != "" {
			n.tr.AddPeer(id, m.Addr)
		}
	}
}

// ErrUnknownNode is returned for a node name no member has.
var ErrUnknownNode = errors.New("cluster: no such node")

// Send queues a broker payload for the node named node (server.Peers).
func (n *Node) Send(node string, payload []byte) error {
	m, ok := n.sm.memberByName(node)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, node)
	}
	return n.tr.Send(m.ID, KindBroker, payload)
}

// Queued is how many bytes wait to be sent to the node named node
// (server.PeerBacklog).
func (n *Node) Queued(node string) int {
	m, ok := n.sm.memberByName(node)
	if !ok {
		return 0
	}
	return n.tr.Queued(m.ID)
}

// Call sends a broker request to the node named node and waits for its
// answer (server.PeerCaller).
func (n *Node) Call(ctx context.Context, node string, payload []byte) ([]byte, error) {
	m, ok := n.sm.memberByName(node)
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnknownNode, node)
	}
	return n.tr.Request(ctx, m.ID, KindBroker, payload)
}

// Others names the other members that are reachable now
// (server.PeerLister).
func (n *Node) Others() []string {
	var out []string
	for _, m := range n.sm.memberList() {
		if m.ID != n.id && m.Name != "" && n.tr.Connected(m.ID) {
			out = append(out, m.Name)
		}
	}
	return out
}

// ID is this node's ID.
func (n *Node) ID() uint64 { return n.id }

// Propose commits a broker metadata command through the metadata group and
// returns the result of applying it on this node; a node that does not lead
// forwards it to the leader. It returns once a majority has it on disk.
func (n *Node) Propose(ctx context.Context, cmd []byte) ([]byte, error) {
	var res []byte
	err := n.proposeCommand(ctx, command{Op: "broker", Broker: cmd}, &res)
	return res, err
}

// proposeCommand proposes c, at the leader: here when this node leads, else
// forwarded. res, when set, receives a broker command's result.
func (n *Node) proposeCommand(ctx context.Context, c command, res *[]byte) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		lead, local := n.meta.Leader()
		var out []byte
		switch {
		case local:
			var v any
			v, err = n.meta.Propose(ctx, data)
			out, _ = v.([]byte)
		case lead != 0:
			// A leader cut off by a partition does not answer: give up on it
			// after a few election timeouts and ask whoever leads then.
			actx, cancel := context.WithTimeout(ctx, forwardWait)
			out, err = n.rpc(actx, lead, rpcRequest{Op: "propose", Data: data})
			cancel()
		default:
			err = ErrNoQuorum
		}
		if err == nil {
			if res != nil {
				*res = out
			}
			return nil
		}
		// An election, or a leader that just changed: wait for the next
		// leader (bounded by ctx) and try again.
		if ctx.Err() != nil || attempt >= 50 {
			if errors.Is(err, multiraft.ErrNotLeader) || errors.Is(err, transport.ErrUnreachable) {
				return ErrNoQuorum
			}
			return err
		}
		select {
		case <-ctx.Done():
			return ErrNoQuorum
		case <-n.meta.LeaderChanged():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rpcRequest is a control request between nodes (JSON: rare and small).
type rpcRequest struct {
	Op     string  `json:"op"` // propose, join, info, forget
	Data   []byte  `json:"data,omitempty"`
	Member *Member `json:"member,omitempty"`
	ID     uint64  `json:"id,omitempty"`
}

func (n *Node) rpc(ctx context.Context, to uint64, req rpcRequest) ([]byte, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	out, err := n.tr.Request(ctx, to, KindRPC, payload)
	var re *transport.RemoteError
	if errors.As(err, &re) {
		return nil, errors.New(re.Text)
	}
	return out, err
}

// onRPC serves another node's request on its own goroutine (transport
// handlers must not block).
func (n *Node) onRPC(from uint64, payload []byte, reply func([]byte, error)) {
	if reply == nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		var req rpcRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			reply(nil, err)
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
		defer cancel()
		switch req.Op {
		case "propose":
			if _, local := n.meta.Leader(); !local {
				reply(nil, ErrNoQuorum)
				return
			}
			v, err := n.meta.Propose(ctx, req.Data)
			out, _ := v.([]byte)
			reply(out, err)
		case "join":
			reply(nil, n.addMember(ctx, *req.Member))
		case "forget":
			reply(nil, n.Forget(ctx, req.ID))
		case "info":
			out, err := json.Marshal(n.localInfo())
			reply(out, err)
		default:
			reply(nil, fmt.Errorf("cluster: unknown request %q", req.Op))
		}
	}()
}

// addMember adds a node to the metadata group and records it, at the
// leader (forwarded there when this node does not lead).
func (n *Node) addMember(ctx context.Context, m Member) error {
	lead, local := n.meta.Leader()
	if !local {
		if lead == 0 {
			return ErrNoQuorum
		}
		_, err := n.rpc(ctx, lead, rpcRequest{Op: "join", Member: &m})
		return err
	}
	n.tr.AddPeer(m.ID, m.Addr)
	if err := n.proposeCommand(ctx, command{Op: "member", Member: &m}, nil); err != nil {
		return err
	}
	if hasID(n.meta.Status().Config.Voters.IDs(), m.ID) {
		return nil
	}
	return n.meta.AddNode(ctx, m.ID)
}

// Join adds the node listening on the cluster address addr (a node started
// with this cluster's seeds that is not a member yet, or one that left),
// with the name and addresses it reports.
func (n *Node) Join(ctx context.Context, addr string) error {
	m := Member{ID: NodeID(addr), Addr: addr}
	n.tr.AddPeer(m.ID, addr)
	raw, err := n.rpc(ctx, m.ID, rpcRequest{Op: "info"})
	if err != nil {
		return fmt.Errorf("cluster: node at %s does not answer: %w", addr, err)
	}
	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return err
	}
	m.Name, m.AMQP, m.HTTP = info.Name, info.AMQP, info.HTTP
	return n.addMember(ctx, m)
}

// Forget removes a node from the cluster (it should be stopped, or gone for
// good): from the metadata group's voters and the member list.
func (n *Node) Forget(ctx context.Context, id uint64) error {
	lead, local := n.meta.Leader()
	if !local {
		if lead == 0 {
			return ErrNoQuorum
		}
		_, err := n.rpc(ctx, lead, rpcRequest{Op: "forget", ID: id})
		return err
	}
	if hasID(n.meta.Status().Config.Voters.IDs(), id) {
		if err := n.meta.RemoveNode(ctx, id); err != nil {
			return err
		}
	}
	return n.proposeCommand(ctx, command{Op: "forget", ID: id}, nil)
}

// Leave removes this node from the cluster (its leadership first handed to
// another node). Stop it afterwards: it no longer takes part in the
// metadata group.
func (n *Node) Leave(ctx context.Context) error {
	if _, local := n.meta.Leader(); local {
		for _, m := range n.sm.memberList() {
			if m.ID != n.id && n.tr.Connected(m.ID) {
				n.meta.TransferLeadership(m.ID)
				break
			}
		}
		// Proposals are dropped while leadership moves: wait for the new
		// leader, who then removes this node.
		for {
			if lead, local := n.meta.Leader(); !local && lead != 0 {
				break
			}
			select {
			case <-ctx.Done():
				return ErrNoQuorum
			case <-n.meta.LeaderChanged():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return n.Forget(ctx, n.id)
}

// NodeStatus is one member as the status shows it.
type NodeStatus struct {
	Member
	Running bool    `json:"running"`
	Leader  bool    `json:"leader"` // leads the metadata group
	Voter   bool    `json:"voter"`
	Uptime  float64 `json:"uptime_seconds,omitempty"`
}

// Status lists the members, which are reachable from here and which leads.
func (n *Node) Status() []NodeStatus {
	st := n.meta.Status()
	voters := st.Config.Voters.IDs()
	var out []NodeStatus
	for _, m := range n.sm.memberList() {
		ns := NodeStatus{Member: m, Leader: st.Lead == m.ID, Voter: hasID(voters, m.ID)}
		if m.ID == n.id {
			ns.Running, ns.Uptime = true, time.Since(n.started).Seconds()
		} else {
			ns.Running = n.tr.Connected(m.ID)
		}
		out = append(out, ns)
	}
	return out
}

func hasID(ids map[uint64]struct{}, id uint64) bool {
	_, ok := ids[id]
	return ok
}

// Info is what a node tells about itself.
type Info struct {
	ID       uint64  `json:"id"`
	Name     string  `json:"name"`
	Uptime   float64 `json:"uptime_seconds"`
	RaftRole string  `json:"raft_role"`
	AMQP     string  `json:"amqp,omitempty"`
	HTTP     string  `json:"http,omitempty"`
}

func (n *Node) localInfo() Info {
	role := "follower"
	if st := n.meta.Status(); st.RaftState == raft.StateLeader {
		role = "leader"
	} else if st.RaftState == raft.StateCandidate || st.RaftState == raft.StatePreCandidate {
		role = "candidate"
	}
	return Info{ID: n.id, Name: n.cfg.NodeName, Uptime: time.Since(n.started).Seconds(), RaftRole: role, AMQP: n.cfg.AMQP, HTTP: n.cfg.HTTP}
}

// Close leaves the cluster's connections (not the cluster: a restarted node
// rejoins with its log) and stops every goroutine.
func (n *Node) Close() error {
	n.close()
	return nil
}

func (n *Node) close() {
	n.cancel()
	if n.tr != nil {
		n.tr.Close()
	}
	if n.host != nil {
		n.host.Close()
	}
	n.wg.Wait()
}
