// Command warren is the Warren AMQP 0-9-1 broker.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/yaml.v3"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/cluster"
	"github.com/warren-mq/warren/cluster/multiraft"
	"github.com/warren-mq/warren/federation"
	"github.com/warren-mq/warren/mgmt"
	"github.com/warren-mq/warren/shovel"
	"github.com/warren-mq/warren/store"
)

// flags are every server setting; each also comes from its environment
// variable or from the --config file (command line > environment > file).
var flags = []cli.Flag{
	&cli.StringFlag{Name: "config", EnvVars: []string{"WARREN_CONFIG"}, Usage: "YAML file with any of these settings, by flag name (e.g. data-dir: /var/lib/warren)"},
	altsrc.NewStringFlag(&cli.StringFlag{Name: "amqp-listen", Value: ":5672", EnvVars: []string{"WARREN_AMQP_LISTEN"}, Usage: "AMQP listen address"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "http-listen", Value: ":15672", EnvVars: []string{"WARREN_HTTP_LISTEN"}, Usage: "HTTP (management) listen address; empty disables"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "data-dir", Value: "./data", EnvVars: []string{"WARREN_DATA_DIR"}, Usage: "data directory"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"WARREN_LOG_LEVEL"}, Usage: "debug, info, warn or error"}),
	altsrc.NewFloat64Flag(&cli.Float64Flag{Name: "vm-memory-high-watermark", Value: 0.4, EnvVars: []string{"WARREN_VM_MEMORY_HIGH_WATERMARK"}, Usage: "memory alarm above this fraction of RAM (0 disables)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "disk-free-limit", Value: "50MB", EnvVars: []string{"WARREN_DISK_FREE_LIMIT"}, Usage: "disk alarm below this much free space in the data directory (e.g. 50MB, 1GB; 0 disables)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "heap-limit", Value: "128MB", EnvVars: []string{"WARREN_HEAP_LIMIT"}, Usage: "soft limit for the Go heap (the GC works harder near it; it rises with a live heap that outgrows it; GOMEMLIMIT wins when set; 0 disables)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "prometheus-listen", Value: ":15692", EnvVars: []string{"WARREN_PROMETHEUS_LISTEN"}, Usage: "Prometheus metrics listen address (/metrics, /metrics/per-object), as rabbitmq_prometheus; empty disables"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "amqps-listen", EnvVars: []string{"WARREN_AMQPS_LISTEN"}, Usage: "AMQP over TLS listen address (e.g. :5671); needs --tls-cert and --tls-key; empty disables"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "https-listen", EnvVars: []string{"WARREN_HTTPS_LISTEN"}, Usage: "HTTPS (management) listen address (e.g. :15671), with the same certificate; empty disables"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"WARREN_TLS_CERT"}, Usage: "PEM certificate chain for the TLS listeners"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-key", EnvVars: []string{"WARREN_TLS_KEY"}, Usage: "PEM private key for the TLS listeners"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "tls-ca", EnvVars: []string{"WARREN_TLS_CA"}, Usage: "PEM CA bundle for client certificates (verified when given; EXTERNAL logs in by their CN)"}),
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "tls-fail-if-no-peer-cert", EnvVars: []string{"WARREN_TLS_FAIL_IF_NO_PEER_CERT"}, Usage: "refuse TLS clients without a certificate (needs --tls-ca)"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "frame-max", Value: 131072, EnvVars: []string{"WARREN_FRAME_MAX"}, Usage: "largest frame the server accepts and proposes, in bytes (4096 and up)"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "channel-max", Value: 2047, EnvVars: []string{"WARREN_CHANNEL_MAX"}, Usage: "highest channel number per connection (1-65535)"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "heartbeat", Value: 60, EnvVars: []string{"WARREN_HEARTBEAT"}, Usage: "heartbeat interval the server proposes, in seconds (clients may ask for less)"}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "handshake-timeout", Value: 10 * time.Second, EnvVars: []string{"WARREN_HANDSHAKE_TIMEOUT"}, Usage: "time a client has from connecting to connection.open"}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "write-timeout", Value: 30 * time.Second, EnvVars: []string{"WARREN_WRITE_TIMEOUT"}, Usage: "close a connection that takes none of its pending output for this long (a client that stopped reading)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "max-message-size", Value: "128MB", EnvVars: []string{"WARREN_MAX_MESSAGE_SIZE"}, Usage: "largest message body accepted (larger: channel error 406)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "default-user", Value: "guest", EnvVars: []string{"WARREN_DEFAULT_USER"}, Usage: "the administrator created on first start (full permissions on /)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "default-pass", Value: "guest", EnvVars: []string{"WARREN_DEFAULT_PASS"}, Usage: "its password"}),
	altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "loopback-users", Value: cli.NewStringSlice("guest"), EnvVars: []string{"WARREN_LOOPBACK_USERS"}, Usage: "users who may connect from loopback addresses only (repeat, or comma-separated in the environment; none: no such restriction)"}),
	altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "loopback-networks", Value: cli.NewStringSlice("127.0.0.0/8", "::1/128"), EnvVars: []string{"WARREN_LOOPBACK_NETWORKS"}, Usage: "addresses (CIDR) that count as loopback for --loopback-users"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "auth-failure-limit", Value: 10, EnvVars: []string{"WARREN_AUTH_FAILURE_LIMIT"}, Usage: "failed logins one address may make per --auth-failure-window before its logins are refused until the window passes (-1: no limit)"}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "auth-failure-window", Value: time.Minute, EnvVars: []string{"WARREN_AUTH_FAILURE_WINDOW"}, Usage: "the window of --auth-failure-limit"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "memory-budget", Value: "auto", EnvVars: []string{"WARREN_MEMORY_BUDGET"}, Usage: "bytes of ready messages all queues together keep in memory, the rest paged to disk (auto: 1/16 of the memory high watermark, at most half of --heap-limit)"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "queue-memory-window", Value: 20000, EnvVars: []string{"WARREN_QUEUE_MEMORY_WINDOW"}, Usage: "ready messages a queue keeps in memory; the rest wait on disk"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "consumer-timeout", Value: "30m", EnvVars: []string{"WARREN_CONSUMER_TIMEOUT"}, Usage: "close a channel whose delivery waits longer than this for its ack (RabbitMQ's consumer_timeout); 0 or false: off"}),
	altsrc.NewIntFlag(&cli.IntFlag{Name: "delayed-memory-window", Value: 10000, EnvVars: []string{"WARREN_DELAYED_MEMORY_WINDOW"}, Usage: "pending messages a delayed-message exchange keeps in memory; the rest wait on disk"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "node-name", Value: defaultNodeName(), EnvVars: []string{"WARREN_NODE_NAME"}, Usage: "this node's name, name@host as RabbitMQ's (distinct for every node of a cluster)"}),
	altsrc.NewStringFlag(&cli.StringFlag{Name: "cluster-listen", EnvVars: []string{"WARREN_CLUSTER_LISTEN"}, Usage: "inter-node listen address (e.g. :25672); with --cluster-seeds, makes this node part of a cluster"}),
	altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: "cluster-seeds", EnvVars: []string{"WARREN_CLUSTER_SEEDS"}, Usage: "host:port of the cluster's founding nodes' --cluster-listen, the same list on every node (repeat, or comma-separated); may include this node; DNS names allowed"}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "quorum-replace-after", Value: 15 * time.Minute, EnvVars: []string{"WARREN_QUORUM_REPLACE_AFTER"}, Usage: "replace a quorum queue's member whose node has been unreachable this long by a node outside its group (0: never)"}),
	altsrc.NewDurationFlag(&cli.DurationFlag{Name: "cluster-tick", Value: 100 * time.Millisecond, EnvVars: []string{"WARREN_CLUSTER_TICK"}, Usage: "Raft tick; a leader is suspected lost after 10 ticks without word from it"}),
	altsrc.NewBoolFlag(&cli.BoolFlag{Name: "pprof", EnvVars: []string{"WARREN_PPROF"}, Usage: "serve Go's /debug/pprof/ on the HTTP listener (for profiling)"}),
}

func main() {
	app := &cli.App{
		Name:   "warren",
		Usage:  "an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged",
		Flags:  flags,
		Before: loadConfig,
		Action: run,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "warren:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	// Catch signals first: one that arrives while the broker starts must
	// still shut it down cleanly, not kill it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	level, err := zapcore.ParseLevel(c.String("log-level"))
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	zc := zap.NewProductionConfig()
	zc.Level = zap.NewAtomicLevelAt(level)
	zc.Encoding = "console"
	zc.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	log, err := zc.Build()
	if err != nil {
		return err
	}
	defer log.Sync()
	// Every setting is checked before anything touches the data directory.
	cfg, err := serverConfig(c)
	if err != nil {
		return err
	}

	var heapLimit uint64
	if os.Getenv("GOMEMLIMIT") == "" {
		limit, err := parseBytes(c.String("heap-limit"))
		if err != nil {
			return fmt.Errorf("--heap-limit: %w", err)
		}
		if limit > 0 {
			debug.SetMemoryLimit(int64(limit))
			go governHeap(limit)
		}
		heapLimit = limit
	}
	var tlsCfg *tls.Config
	if c.String("amqps-listen") != "" || c.String("https-listen") != "" {
		if tlsCfg, err = server.TLSConfig(c.String("tls-cert"), c.String("tls-key"), c.String("tls-ca"), c.Bool("tls-fail-if-no-peer-cert")); err != nil {
			return err
		}
	}
	dataDir := c.String("data-dir")
	st, err := store.Open(filepath.Join(dataDir, "store"), log.Named("store"))
	if err != nil {
		return err
	}
	defer st.Close()
	diskLimit, err := parseBytes(c.String("disk-free-limit"))
	if err != nil {
		return fmt.Errorf("--disk-free-limit: %w", err)
	}
	memLimit := uint64(c.Float64("vm-memory-high-watermark") * float64(server.TotalMemory()))
	cfg.Logger, cfg.Store, cfg.MemoryLimit, cfg.DiskFreeLimit, cfg.DataDir = log, st, memLimit, diskLimit, dataDir
	if cfg.MemoryBudget, err = memoryBudget(c.String("memory-budget"), memLimit, heapLimit); err != nil {
		return err
	}
	var node *cluster.Node // set once the cluster starts, before shovels do
	srv := server.New(cfg)
	// Registered before Restore: the stored shovels are known from the start.
	shovels := shovel.New(srv, shovel.Options{Logger: log.Named("shovel"), Runs: func() bool { return metaLeader(node) }})
	links := federation.New(srv, federation.Options{Logger: log.Named("federation"), Runs: func() bool { return metaLeader(node) }})
	start := time.Now()
	if err := srv.Restore(); err != nil {
		return fmt.Errorf("restoring from %s: %w", dataDir, err)
	}
	log.Info("restored", zap.Duration("took", time.Since(start)))
	l, err := net.Listen("tcp", c.String("amqp-listen"))
	if err != nil {
		return fmt.Errorf("--amqp-listen: %w", err)
	}
	node, err = startCluster(c, srv, log, dataDir, l.Addr().String())
	if err != nil {
		l.Close()
		return err
	}
	if node != nil {
		defer node.Close()
	}
	errc := make(chan error, 5)
	srv.AnnounceListener("amqp", l.Addr())
	go func() { errc <- srv.Serve(l) }()
	log.Info("AMQP listening", zap.Stringer("addr", l.Addr()))
	if addr := c.String("amqps-listen"); addr != "" {
		tl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--amqps-listen: %w", err)
		}
		srv.AnnounceListener("amqp/ssl", tl.Addr())
		go func() { errc <- srv.Serve(tls.NewListener(tl, tlsCfg)) }()
		log.Info("AMQPS listening", zap.Stringer("addr", tl.Addr()))
	}

	shovels.Start()
	defer shovels.Close()
	links.Start()
	defer links.Close()

	var h http.Handler = mgmt.NewClusterHandler(srv, mgmtCluster(node))
	if c.Bool("pprof") {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		h = mux
	}
	var httpServers []*http.Server
	for _, l := range []struct {
		flag     string
		tls      *tls.Config
		handler  http.Handler
		protocol string // as RabbitMQ names it in /api/overview's listeners
	}{{"http-listen", nil, h, "http"}, {"https-listen", tlsCfg, h, "https"}, {"prometheus-listen", nil, mgmt.MetricsMux(srv), "prometheus"}} {
		addr := c.String(l.flag)
		if addr == "" {
			continue
		}
		hl, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("--%s: %w", l.flag, err)
		}
		srv.AnnounceListener(l.protocol, hl.Addr())
		if l.tls != nil {
			hl = tls.NewListener(hl, l.tls)
		}
		hs := &http.Server{Handler: l.handler, ReadHeaderTimeout: 10 * time.Second}
		httpServers = append(httpServers, hs)
		go func() { errc <- hs.Serve(hl) }()
		log.Info(strings.ToUpper(strings.TrimSuffix(l.flag, "-listen"))+" listening", zap.Stringer("addr", hl.Addr()))
	}

	select {
	case s := <-sig:
		log.Info("shutting down", zap.Stringer("signal", s))
	case err := <-errc:
		if !errors.Is(err, server.ErrServerClosed) && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, hs := range httpServers {
		hs.Shutdown(ctx)
	}
	shovels.Close() // first: their unacked messages go back to their queues
	links.Close()
	srv.Shutdown(ctx)
	log.Info("stopped")
	return nil
}

// startCluster joins or forms the cluster that --cluster-listen and
// --cluster-seeds describe; without them the node is alone (nil).
func startCluster(c *cli.Context, srv *server.Server, log *zap.Logger, dataDir, amqpAddr string) (*cluster.Node, error) {
	listen, seedList := c.String("cluster-listen"), c.StringSlice("cluster-seeds")
	if listen == "" && len(seedList) == 0 {
		return nil, nil
	}
	if listen == "" || len(seedList) == 0 {
		return nil, fmt.Errorf("--cluster-listen and --cluster-seeds go together")
	}
	seeds, err := cluster.ParseSeeds(seedList)
	if err != nil {
		return nil, fmt.Errorf("--cluster-seeds: %w", err)
	}
	cl, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("--cluster-listen: %w", err)
	}
	srv.AnnounceListener("clustering", cl.Addr())
	tlsCfg, err := clusterTLS(c)
	if err != nil {
		cl.Close()
		return nil, err
	}
	node := cluster.New(cluster.Config{
		NodeName: c.String("node-name"), Listener: cl, Seeds: seeds, Dir: filepath.Join(dataDir, "cluster"),
		Logger: log, Broker: srv, AMQP: amqpAddr, HTTP: c.String("http-listen"), TickInterval: c.Duration("cluster-tick"),
		TLS: tlsCfg,
	})
	srv.SetMetaLog(node)
	srv.SetPeers(node)
	srv.SetQueueGroups(queueGroups{node})
	if err := node.Start(); err != nil {
		return nil, err
	}
	srv.StartReplicas()
	log.Info("CLUSTER listening", zap.Stringer("addr", cl.Addr()), zap.String("node", c.String("node-name")))
	return node, nil
}

// clusterTLS is mutual TLS between the nodes when --tls-cert, --tls-key and
// --tls-ca are set: each node presents its certificate and verifies the
// other's against the CA (so the certificate needs both server and client
// use, and the names or addresses the nodes are dialed by). Without them
// inter-node traffic is plain TCP.
func clusterTLS(c *cli.Context) (*tls.Config, error) {
	certFile, keyFile, caFile := c.String("tls-cert"), c.String("tls-key"), c.String("tls-ca")
	if certFile == "" || keyFile == "" || caFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cluster TLS: no certificate in %s", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
}

// metaLeader reports whether this node runs the shovels: alone, always; in
// a cluster, while it leads the metadata group (one node runs each shovel).
func metaLeader(n *cluster.Node) bool {
	if n == nil {
		return true
	}
	for _, s := range n.Status() {
		if s.ID == n.ID() {
			return s.Leader
		}
	}
	return false
}

// mgmtCluster hands the management API the cluster, if any (a nil
// *cluster.Node must not become a non-nil interface).
func mgmtCluster(n *cluster.Node) mgmt.Cluster {
	if n == nil {
		return nil
	}
	return n
}

// defaultNodeName is warren@ and this machine's short name, as RabbitMQ's
// rabbit@hostname.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "warren@localhost"
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		h = h[:i]
	}
	return "warren@" + h
}

// parseBytes reads sizes like "50MB", "1GB", "512kB" or a plain byte count.
func parseBytes(s string) (uint64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	mult := uint64(1)
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a size: %q", s)
	}
	return n * mult, nil
}

// loadConfig reads --config: a YAML map of flag names to values. A key
// that is no setting is an error (a typo must not be ignored).
func loadConfig(c *cli.Context) error {
	path := c.String("config")
	if path == "" {
		return nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("--config %s: not YAML: %w", path, err)
	}
	known := map[string]bool{}
	for _, f := range flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	for k := range m {
		if !known[k] || k == "config" {
			return fmt.Errorf("--config %s: unknown setting %q (settings are the flag names: warren --help)", path, k)
		}
	}
	src, err := altsrc.NewYamlSourceFromFile(path)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	return altsrc.ApplyInputSourceValues(c, src, c.App.Flags)
}

// serverConfig reads the protocol and limit settings, refusing values out
// of range with the flag's name.
func serverConfig(c *cli.Context) (server.Config, error) {
	var cfg server.Config
	inRange := func(name string, lo, hi int) (int, error) {
		v := c.Int(name)
		if v < lo || v > hi {
			return 0, fmt.Errorf("--%s %d: must be from %d to %d", name, v, lo, hi)
		}
		return v, nil
	}
	fm, err := inRange("frame-max", 4096, 1<<28)
	if err != nil {
		return cfg, err
	}
	cm, err := inRange("channel-max", 1, 65535)
	if err != nil {
		return cfg, err
	}
	hb, err := inRange("heartbeat", 1, 65535)
	if err != nil {
		return cfg, err
	}
	qw, err := inRange("queue-memory-window", 100, 1<<30)
	if err != nil {
		return cfg, err
	}
	dw, err := inRange("delayed-memory-window", 100, 1<<30)
	if err != nil {
		return cfg, err
	}
	mms, err := parseBytes(c.String("max-message-size"))
	if err != nil || mms == 0 || mms > 512<<20 {
		return cfg, fmt.Errorf("--max-message-size %q: must be a size from 1 byte to 512MB", c.String("max-message-size"))
	}
	if c.Duration("handshake-timeout") <= 0 {
		return cfg, fmt.Errorf("--handshake-timeout must be positive")
	}
	if c.String("default-user") == "" {
		return cfg, fmt.Errorf("--default-user must not be empty")
	}
	cfg.FrameMax, cfg.ChannelMax, cfg.HandshakeTimeout, cfg.MaxMessageSize = uint32(fm), uint16(cm), c.Duration("handshake-timeout"), mms
	cfg.Heartbeat = uint16(hb)
	cfg.NodeName = c.String("node-name")
	if cfg.WriteTimeout = c.Duration("write-timeout"); cfg.WriteTimeout <= 0 {
		return cfg, fmt.Errorf("--write-timeout must be positive")
	}
	cfg.DefaultUser, cfg.DefaultPass = c.String("default-user"), c.String("default-pass")
	// "none" lets every user in from anywhere, as RabbitMQ's
	// loopback_users = none (what its Docker image sets).
	cfg.LoopbackUsers = []string{}
	for _, u := range c.StringSlice("loopback-users") {
		if u = strings.TrimSpace(u); u != "" && u != "none" {
			cfg.LoopbackUsers = append(cfg.LoopbackUsers, u)
		}
	}
	cfg.PageWindow, cfg.DelayWindow = qw, dw
	cfg.QuorumReplaceAfter = c.Duration("quorum-replace-after")
	switch ct := c.String("consumer-timeout"); ct {
	case "0", "false":
		cfg.ConsumerTimeout = -1 // off
	default:
		d, err := time.ParseDuration(ct)
		if err != nil || d < 0 {
			return cfg, fmt.Errorf("--consumer-timeout %q: a duration like 30m, or 0 or false for off", ct)
		}
		cfg.ConsumerTimeout = d
		if d == 0 {
			cfg.ConsumerTimeout = -1 // "0s": off too
		}
	}
	for _, n := range c.StringSlice("loopback-networks") {
		_, ipn, err := net.ParseCIDR(strings.TrimSpace(n))
		if err != nil {
			return cfg, fmt.Errorf("--loopback-networks %q: not a CIDR network like 127.0.0.0/8", n)
		}
		cfg.LoopbackNetworks = append(cfg.LoopbackNetworks, ipn)
	}
	if cfg.LoopbackNetworks == nil {
		cfg.LoopbackNetworks = []*net.IPNet{}
	}
	cfg.AuthFailureLimit, cfg.AuthFailureWindow = c.Int("auth-failure-limit"), c.Duration("auth-failure-window")
	if cfg.AuthFailureLimit == 0 || cfg.AuthFailureWindow <= 0 {
		return cfg, fmt.Errorf("--auth-failure-limit must be positive (or -1 for none) and --auth-failure-window positive")
	}
	return cfg, nil
}

// queueGroups gives the broker the cluster's queue groups
// (server.QueueGroups).
type queueGroups struct{ n *cluster.Node }

func (q queueGroups) StartQueueGroup(id uint64, members []string, join bool, sm multiraft.StateMachine) (server.QueueGroup, error) {
	g, err := q.n.StartQueueGroup(id, members, join, sm)
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (q queueGroups) StopQueueGroup(id uint64) { q.n.StopQueueGroup(id) }
