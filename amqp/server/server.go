package server

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// Config holds the broker's settings. The zero value is usable: every zero
// field takes RabbitMQ's default.
type Config struct {
	Logger *zap.Logger
	// NodeName names this node as RabbitMQ names nodes, name@host (default
	// warren@localhost): in the management API, metrics and traces.
	NodeName string
	// FrameMax is the largest frame the server proposes (default 131072).
	FrameMax uint32
	// ChannelMax is the highest channel number the server proposes (default 2047).
	ChannelMax uint16
	// Heartbeat is the heartbeat interval in seconds the server proposes (default 60).
	Heartbeat uint16
	// HandshakeTimeout bounds the time from accept to connection.open (default 10s).
	HandshakeTimeout time.Duration
	// WriteTimeout closes a connection whose peer has not taken any of its
	// pending output for this long: a client that stopped reading its socket
	// (default 30s). Until then deliveries to it pause once its outbound
	// buffer is full, so it holds a bounded amount of memory.
	WriteTimeout time.Duration
	// MaxMessageSize bounds a message body (default 128 MiB).
	MaxMessageSize uint64
	// LoopbackUsers may connect only from loopback addresses (default ["guest"]).
	LoopbackUsers []string
	// LoopbackNetworks are the addresses that count as loopback for
	// LoopbackUsers (default 127.0.0.0/8 and ::1/128).
	LoopbackNetworks []*net.IPNet
	// AuthFailureLimit is how many failed logins one source address may make
	// within AuthFailureWindow before its logins are refused until the
	// window passes (default 10 per minute; negative: no limit).
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// DefaultUser and DefaultPass create the first user, an administrator with
	// full permissions on "/" (default guest/guest).
	DefaultUser, DefaultPass string
	// MemoryLimit raises the memory alarm above this RSS in bytes (0: off).
	MemoryLimit uint64
	// DiskFreeLimit raises the disk alarm when free space under DataDir
	// drops below it, in bytes (0: off).
	DiskFreeLimit uint64
	// DataDir is where the disk alarm measures free space.
	DataDir string
	// PageWindow is how many ready messages a queue keeps in memory before
	// paging the rest out to the store (default queue.DefaultPageWindow).
	PageWindow int
	// MemoryBudget bounds the bytes of ready messages all queues together
	// keep in memory; beyond it queues page to the store (see
	// queue.Budget). Default: DefaultMemoryBudget of MemoryLimit.
	MemoryBudget int64
	// DelayWindow is how many pending messages a delayed-message exchange
	// keeps in memory; the rest wait on disk (default 10000).
	DelayWindow int
	// Store persists durable definitions and persistent messages; nil keeps
	// everything in memory. The server does not close it.
	Store *store.Store
	// ConsumerTimeout closes a channel whose oldest delivery has waited
	// longer than this for its ack (default 30 minutes, RabbitMQ's
	// consumer_timeout; negative: off). Queues override it with
	// x-consumer-timeout or the consumer-timeout policy key.
	ConsumerTimeout time.Duration
	// QuorumReplaceAfter: in a cluster, a quorum queue's member whose node
	// has been unreachable this long is replaced by a node outside the
	// group, while the group has a majority (0: never; replica.go).
	QuorumReplaceAfter time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.NodeName == "" {
		c.NodeName = "warren@localhost"
	}
	if c.FrameMax == 0 {
		c.FrameMax = 131072
	}
	if c.ChannelMax == 0 {
		c.ChannelMax = 2047
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 60
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = 128 << 20
	}
	if c.LoopbackUsers == nil {
		c.LoopbackUsers = []string{"guest"}
	}
	if c.LoopbackNetworks == nil {
		for _, n := range []string{"127.0.0.0/8", "::1/128"} {
			_, ipn, _ := net.ParseCIDR(n)
			c.LoopbackNetworks = append(c.LoopbackNetworks, ipn)
		}
	}
	if c.AuthFailureLimit == 0 {
		c.AuthFailureLimit = 10
	}
	if c.AuthFailureWindow == 0 {
		c.AuthFailureWindow = time.Minute
	}
	if c.DefaultUser == "" {
		c.DefaultUser, c.DefaultPass = "guest", "guest"
	}
	if c.ConsumerTimeout == 0 {
		c.ConsumerTimeout = defaultConsumerTimeout
	}
}

// Server is an AMQP 0-9-1 broker.
type Server struct {
	cfg Config
	log *zap.Logger
	// budget is shared by every queue; nil without a store.
	budget     *queue.Budget
	budgetOnce sync.Once

	mu        sync.Mutex
	listeners []net.Listener
	announced []ListenerInfo // every listener of the node, for /api/overview
	conns     map[*conn]struct{}
	vhosts    map[string]*Vhost
	users     map[string]*User
	globals   map[string]any // global parameters (params.go)
	vparams   vparams        // vhost runtime parameters of components (vparams.go)
	closing   bool
	// permGen counts changes to users' permissions and tags (made under
	// mu): a channel's checker made before a change is stale, since
	// RabbitMQ checks every operation against the permissions as they are.
	permGen atomic.Uint64

	store       *store.Store
	meta        MetaLog // the cluster's metadata log; nil on a single node (meta.go)
	applier     applier
	peers       Peers                                        // the other nodes of a cluster; nil on a single node (forward.go)
	groups      QueueGroups                                  // replicated queues' Raft groups; nil on a single node (replica.go)
	dedupGroups dedupGroups                                  // deduplicating exchanges' groups by id (dedup_group.go)
	forwards    forwards                                     // forwarded copies awaiting their home node's answer
	remotes     remoteConsumers                              // this node's consumers of queues elsewhere (remote.go)
	proxies     proxies                                      // consumers here for clients of other nodes
	gets        gets                                         // other nodes' unacked basic.get deliveries
	peerAPI     atomic.Pointer[func([]byte) ([]byte, error)] // other nodes' management requests (peerapi.go)
	lastQueueID atomic.Uint64
	watchers    topologyWatchers // federation.go
	alarm       alarms
	replies     replyRegistry
	stopWatch   chan struct{}
	closedStats statTotals // counters of closed channels and deleted queues
	authFails   failureTracker
	clock       atomic.Int64 // Unix ms, advanced by the consumer-timeout sweep

	// Where stream queues keep their logs (stream.go), set on first use.
	streamsOnce sync.Once
	streamsRoot string
	streamsTemp bool // a temporary directory, removed at shutdown
	streamsErr  error

	wg sync.WaitGroup
}

// New returns a server with the default vhost "/" and the default user.
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		conns:  map[*conn]struct{}{},
		vhosts: map[string]*Vhost{},
		users:  map[string]*User{},
		store:  cfg.Store,
		// A broker without a store still has a cluster id.
		globals: map[string]any{"internal_cluster_id": newClusterID()},
		alarm:   alarms{reasons: map[string]bool{}},
	}
	s.budget = newBudget(&s.cfg)
	s.stopWatch = make(chan struct{})
	s.clock.Store(time.Now().UnixMilli())
	s.wg.Add(1)
	go s.sweepConsumerTimeouts(s.stopWatch)
	if cfg.MemoryLimit > 0 || cfg.DiskFreeLimit > 0 {
		go s.watchResources(s.stopWatch)
	}
	s.newVhostLocked("/")
	u := NewUser(cfg.DefaultUser, cfg.DefaultPass, "administrator")
	u.Permissions["/"] = Permission{Configure: ".*", Write: ".*", Read: ".*"}
	s.users[u.Name] = u
	return s
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("warren: server closed")

// Serve accepts connections on l until Shutdown. It always returns an error.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.announceLocked("amqp", l.Addr())
	s.mu.Unlock()
	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", zap.Error(err), zap.Duration("delay", delay))
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, nc)
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// ListenerInfo is one listening socket of the node, as RabbitMQ lists them
// in /api/overview: protocol is amqp, amqp/ssl, http, https, prometheus or
// clustering.
type ListenerInfo struct {
	Protocol string
	Addr     net.Addr
}

// AnnounceListener records a listener that Serve does not own (HTTP, TLS)
// so that /api/overview lists it. Announce an AMQP-over-TLS listener before
// serving it: Serve keeps the first protocol announced for an address.
func (s *Server) AnnounceListener(protocol string, addr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.announceLocked(protocol, addr)
}

// Lock must be held.
func (s *Server) announceLocked(protocol string, addr net.Addr) {
	for _, l := range s.announced {
		if l.Addr.String() == addr.String() {
			return
		}
	}
	s.announced = append(s.announced, ListenerInfo{Protocol: protocol, Addr: addr})
}

// Listeners lists the node's listeners in the order they were announced.
func (s *Server) Listeners() []ListenerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.announced)
}

// NodeName is the node's name (Config.NodeName).
func (s *Server) NodeName() string { return s.cfg.NodeName }

func (s *Server) nodeName() string { return s.cfg.NodeName }

// Addr returns the address of the first listener, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) == 0 {
		return nil
	}
	return s.listeners[0].Addr()
}

// Shutdown stops accepting, sends connection.close 320 to every client and
// waits for the connections to end or ctx to expire (then closes them hard).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.stopWatch)
	}
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.forceClose(amqp.Errorf(amqp.ConnectionForced, "broker forced connection closure with reason 'shutdown'"))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, c := range conns {
			c.nc.Close()
		}
		<-done
	}
	s.mu.Lock()
	vhosts := make([]*Vhost, 0, len(s.vhosts))
	for _, v := range s.vhosts {
		vhosts = append(vhosts, v)
	}
	s.mu.Unlock()
	for _, v := range vhosts {
		v.close()
	}
	s.closeBudget()
	s.removeStreamsTemp()
	if s.store != nil {
		s.store.Flush()
	}
	return ctx.Err()
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Vhost returns the named vhost or nil.
func (s *Server) Vhost(name string) *Vhost {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.vhosts[name]
}

// ConnectionCount returns the number of open client connections.
func (s *Server) ConnectionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// RabbitVersion is the RabbitMQ version Warren presents to clients and
// tools (connection.start, management API): the behaviour it matches.
const RabbitVersion = "3.10.8"
