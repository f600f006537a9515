package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Errors returned by Send and Request.
var (
	// ErrUnreachable: no connection to the peer is up right now.
	ErrUnreachable = errors.New("transport: peer unreachable")
	// ErrBackpressure: the peer's outbound buffer is over Config.MaxQueueBytes.
	ErrBackpressure = errors.New("transport: peer outbound buffer full")
	// ErrConnLost: the connection closed while a request waited for its answer.
	ErrConnLost = errors.New("transport: connection lost")
	// ErrClosed: the transport is closed.
	ErrClosed = errors.New("transport: closed")
)

// RemoteError is a request's failure as the remote handler reported it.
type RemoteError struct{ Text string }

func (e *RemoteError) Error() string { return "transport: remote: " + e.Text }

// Handler handles one inbound frame of a registered kind. It runs on the
// connection's reader goroutine, so it must not block: long work is handed off
// and answered later. payload belongs to the handler. reply is nil for a
// one-way frame; for a request it must be called exactly once, from any
// goroutine, with the answer or an error (sent as KindError).
type Handler func(from uint64, payload []byte, reply func([]byte, error))

// Config configures a Transport. The zero value of every field but NodeID
// has a default.
type Config struct {
	// NodeID is this node's ID; never 0.
	NodeID uint64
	// TLS, when set, wraps every connection in TLS, dialed and accepted with
	// the same config (so it holds a certificate, RootCAs/ClientCAs and
	// ClientAuth for mutual TLS).
	TLS *tls.Config
	// Logger; zap.NewNop() when nil.
	Logger *zap.Logger
	// MaxFrameSize bounds a frame's payload (64 MiB).
	MaxFrameSize uint32
	// MaxQueueBytes bounds a peer's unsent bytes (64 MiB).
	MaxQueueBytes int
	// DialTimeout (2 s), MinBackoff (20 ms) and MaxBackoff (2 s) shape dialing.
	DialTimeout, MinBackoff, MaxBackoff time.Duration
	// IdleTimeout closes a connection that received nothing for this long;
	// a ping goes out after a third of it without writes (10 s).
	IdleTimeout time.Duration
	// Dial replaces net.Dialer for tests; TLS still applies.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Advertise is the address other nodes dial for this one, sent in the
	// hello so that a lower-ID node that does not know this node yet can
	// learn where to dial it (see Knock).
	Advertise string
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.MaxFrameSize == 0 {
		c.MaxFrameSize = 64 << 20
	}
	if c.MaxQueueBytes == 0 {
		c.MaxQueueBytes = 64 << 20
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 2 * time.Second
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = 20 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 2 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 10 * time.Second
	}
}

// helloMagic opens every handshake: "WRNR" and protocol version 1.
const helloMagic uint64 = 0x57524e52_00000001

// Transport keeps exactly one connection per peer node and multiplexes typed
// frames over it. Of two nodes the one with the lower ID dials; the other
// only accepts, so two nodes never hold two connections. See doc.go.
type Transport struct {
	cfg  Config
	log  *zap.Logger
	ctx  context.Context // canceled by Close; stops dial loops
	stop context.CancelFunc
	wg   sync.WaitGroup
	reqs atomic.Uint64 // last request ID

	mu        sync.Mutex
	closed    bool                  // Lock must be held.
	peers     map[uint64]*peer      // Lock must be held.
	handlers  map[Kind]Handler      // Lock must be held.
	listeners map[net.Listener]bool // Lock must be held.
	down      func(peer uint64)     // Lock must be held.
}

// New returns a Transport; call Serve to accept and AddPeer to dial.
func New(cfg Config) *Transport {
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		cfg:       cfg,
		log:       cfg.Logger.With(zap.Uint64("node", cfg.NodeID)),
		ctx:       ctx,
		stop:      cancel,
		peers:     make(map[uint64]*peer),
		handlers:  make(map[Kind]Handler),
		listeners: make(map[net.Listener]bool),
	}
}

// MaxFrameSize returns the largest frame payload this transport sends and
// accepts.
func (t *Transport) MaxFrameSize() uint32 { return t.cfg.MaxFrameSize }

// NodeID returns this node's ID.
func (t *Transport) NodeID() uint64 { return t.cfg.NodeID }

// Handle registers h for frames of kind k (k >= FirstUserKind), replacing any
// earlier handler.
func (t *Transport) Handle(k Kind, h Handler) {
	if k < FirstUserKind {
		panic(fmt.Sprintf("transport: kind %d is reserved", k))
	}
	t.mu.Lock()
	t.handlers[k] = h
	t.mu.Unlock()
}

// OnPeerDown registers f, called (on a transport goroutine, without locks)
// whenever a peer's connection goes down.
func (t *Transport) OnPeerDown(f func(peer uint64)) {
	t.mu.Lock()
	t.down = f
	t.mu.Unlock()
}

// AddPeer records a peer's address. If this node's ID is the lower one, a
// goroutine starts dialing it (with backoff) and keeps the connection up.
// Calling AddPeer again with a new address takes effect at the next dial.
func (t *Transport) AddPeer(id uint64, addr string) {
	if id == t.cfg.NodeID {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	p := t.peerLocked(id)
	p.mu.Lock()
	p.addr = addr
	start := t.cfg.NodeID < id && !p.dialing
	p.dialing = p.dialing || start
	p.mu.Unlock()
	if start {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.dialLoop(p)
		}()
	}
}

// knows reports whether the peer's address is known (it is being dialed).
func (t *Transport) knows(id uint64) bool {
	t.mu.Lock()
	p := t.peers[id]
	t.mu.Unlock()
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr != "" && !p.removed
}

// RemovePeer forgets a peer and closes its connection.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	p.removed = true
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		c.close(ErrUnreachable)
	}
	p.kickDial()
}

// peerLocked returns the peer record for id, creating it.
// t.mu must be held.
func (t *Transport) peerLocked(id uint64) *peer {
	p := t.peers[id]
	if p == nil {
		p = &peer{id: id, redial: make(chan struct{}, 1)}
		t.peers[id] = p
	}
	return p
}

func (t *Transport) peer(id uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peers[id]
}

// Connected reports whether a connection to the peer is up.
func (t *Transport) Connected(id uint64) bool {
	p := t.peer(id)
	return p != nil && p.current() != nil
}

// Send queues a one-way frame for a peer. Frames queued before the writer
// wakes go out in one write. It fails fast with ErrUnreachable when no
// connection is up, and with ErrBackpressure when the peer is too far behind.
func (t *Transport) Send(to uint64, k Kind, payload []byte) error {
	c, err := t.connTo(to)
	if err != nil {
		return err
	}
	return c.enqueue(k, 0, 0, payload)
}

// Queued is how many bytes wait to be written to peer to (0 when no
// connection is up): senders that can wait use it to slow down before
// Send fails with ErrBackpressure.
func (t *Transport) Queued(to uint64) int {
	c, err := t.connTo(to)
	if err != nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out)
}

// Request sends a request frame and waits for the peer's answer, ctx, or the
// loss of the connection.
func (t *Transport) Request(ctx context.Context, to uint64, k Kind, payload []byte) ([]byte, error) {
	c, err := t.connTo(to)
	if err != nil {
		return nil, err
	}
	id := t.reqs.Add(1)
	ch := make(chan response, 1)
	if !c.addPending(id, ch) {
		return nil, ErrConnLost
	}
	if err := c.enqueue(k, FlagRequest, id, payload); err != nil {
		c.removePending(id)
		return nil, err
	}
	select {
	case r := <-ch:
		return r.payload, r.err
	case <-ctx.Done():
		c.removePending(id)
		return nil, ctx.Err()
	}
}

func (t *Transport) connTo(to uint64) (*conn, error) {
	t.mu.Lock()
	closed, p := t.closed, t.peers[to]
	t.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if p == nil {
		return nil, fmt.Errorf("%w: node %d unknown", ErrUnreachable, to)
	}
	c := p.current()
	if c == nil {
		return nil, fmt.Errorf("%w: node %d", ErrUnreachable, to)
	}
	return c, nil
}

// Serve accepts peer connections on l until Close; it returns nil after
// Close, or the listener's error.
func (t *Transport) Serve(l net.Listener) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	t.listeners[l] = true
	t.wg.Add(1)
	t.mu.Unlock()
	defer t.wg.Done()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff) // accept backoff, as net/http does
				continue
			}
			return fmt.Errorf("transport: accept: %w", err)
		}
		backoff = 0
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.accepted(nc)
		}()
	}
}

// Close stops dialing and accepting, closes every connection, fails every
// waiting request and returns once all transport goroutines have exited.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	t.stop()
	var conns []*conn
	for l := range t.listeners {
		l.Close() // the accept loop sees ctx canceled; its error means nothing
	}
	for _, p := range t.peers {
		if c := p.current(); c != nil {
			conns = append(conns, c)
		}
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.close(ErrClosed)
	}
	t.wg.Wait()
	return nil
}

// peer is what the transport knows of one remote node.
type peer struct {
	id     uint64
	redial chan struct{} // 1-slot kick: retry dialing now

	mu      sync.Mutex
	addr    string // Lock must be held.
	dialing bool   // a dialLoop runs for this peer. Lock must be held.
	removed bool   // Lock must be held.
	conn    *conn  // the live connection, or nil. Lock must be held.
}

func (p *peer) current() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn
}

func (p *peer) kickDial() {
	select {
	case p.redial <- struct{}{}:
	default:
	}
}

// dialLoop owns the connection to a peer with a higher ID: it dials, runs the
// connection until it fails, and dials again with jittered exponential
// backoff, until Close or RemovePeer.
func (t *Transport) dialLoop(p *peer) {
	backoff := t.cfg.MinBackoff
	for t.ctx.Err() == nil {
		p.mu.Lock()
		addr, removed := p.addr, p.removed
		p.mu.Unlock()
		if removed {
			return
		}
		nc, err := t.dial(addr)
		if err == nil {
			var remote uint64
			remote, _, err = t.handshake(nc)
			if err == nil && remote != p.id {
				err = fmt.Errorf("transport: dialed node %d at %s, answered by node %d", p.id, addr, remote)
			}
			if err != nil {
				nc.Close()
			}
		}
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if ce := t.log.Check(zap.DebugLevel, "dial failed"); ce != nil {
				ce.Write(zap.Uint64("peer", p.id), zap.String("addr", addr), zap.Error(err))
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			backoff = min(2*backoff, t.cfg.MaxBackoff)
			timer := time.NewTimer(wait)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			case <-p.redial:
				timer.Stop()
			}
			continue
		}
		backoff = t.cfg.MinBackoff
		t.run(p, nc)
	}
}

func (t *Transport) dial(addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	var nc net.Conn
	var err error
	if t.cfg.Dial != nil {
		nc, err = t.cfg.Dial(ctx, addr)
	} else {
		var d net.Dialer
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, err)
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true) // already the default; an error here changes nothing
	}
	if t.cfg.TLS != nil {
		cfg := t.cfg.TLS
		if cfg.ServerName == "" {
			// Verify the peer's certificate against the name it is dialed by.
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("transport: tls handshake with %s: %w", addr, err)
		}
		nc = tc
	}
	return nc, nil
}

// accepted runs an inbound connection: handshake, then the connection.
func (t *Transport) accepted(nc net.Conn) {
	if t.cfg.TLS != nil {
		tc := tls.Server(nc, t.cfg.TLS)
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			t.log.Debug("tls handshake failed", zap.Stringer("remote", nc.RemoteAddr()), zap.Error(err))
			nc.Close()
			return
		}
		nc = tc
	}
	remote, addr, err := t.handshake(nc)
	if err == nil && remote >= t.cfg.NodeID {
		// A knock from a higher node: learn where it is and dial it (the
		// lower ID dials), unless it is already known.
		if addr != "" && !t.knows(remote) {
			t.AddPeer(remote, addr)
		}
		nc.Close()
		return
	}
	if err != nil {
		t.log.Debug("handshake failed", zap.Stringer("remote", nc.RemoteAddr()), zap.Error(err))
		nc.Close()
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		nc.Close()
		return
	}
	p := t.peerLocked(remote)
	t.mu.Unlock()
	t.run(p, nc)
}

// maxHello bounds a hello's payload: magic, node ID, and an advertised
// address of at most 255 bytes behind its length byte.
const maxHello = 16 + 1 + 255

// handshake exchanges hello frames and returns the remote node ID and the
// address it advertises ("" when it sent none).
func (t *Transport) handshake(nc net.Conn) (uint64, string, error) {
	deadline := time.Now().Add(t.cfg.DialTimeout)
	_ = nc.SetDeadline(deadline) // a failed deadline shows up as a failed read or write
	defer nc.SetDeadline(time.Time{})
	hello := make([]byte, 16, maxHello)
	binary.BigEndian.PutUint64(hello[0:8], helloMagic)
	binary.BigEndian.PutUint64(hello[8:16], t.cfg.NodeID)
	if a := t.cfg.Advertise; a != "" && len(a) <= 255 {
		hello = append(append(hello, byte(len(a))), a...)
	}
	if _, err := nc.Write(AppendFrame(nil, KindHello, 0, 0, hello)); err != nil {
		return 0, "", fmt.Errorf("transport: write hello: %w", err)
	}
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(nc, hb[:]); err != nil {
		return 0, "", fmt.Errorf("transport: read hello: %w", err)
	}
	h, err := DecodeHeader(hb[:], maxHello)
	if err != nil {
		return 0, "", err
	}
	if h.Kind != KindHello || h.Length < 16 {
		return 0, "", errors.New("transport: bad hello")
	}
	body := make([]byte, h.Length)
	if _, err := io.ReadFull(nc, body); err != nil {
		return 0, "", fmt.Errorf("transport: read hello: %w", err)
	}
	if binary.BigEndian.Uint64(body) != helloMagic {
		return 0, "", errors.New("transport: bad hello")
	}
	id := binary.BigEndian.Uint64(body[8:16])
	if id == 0 || id == t.cfg.NodeID {
		return 0, "", fmt.Errorf("transport: bad remote node ID %d", id)
	}
	var addr string
	if rest := body[16:]; len(rest) > 0 {
		if len(rest) != 1+int(rest[0]) {
			return 0, "", errors.New("transport: bad hello")
		}
		addr = string(rest[1:])
	}
	return id, addr, nil
}

// Knock tells the node at addr where this node is, for a node whose ID is
// lower than this one's (it does the dialing between the two) that may not
// know this node yet: a node joining a cluster knocks on the seeds. It
// opens a connection, exchanges hellos and closes; the other node then
// dials this one.
func (t *Transport) Knock(ctx context.Context, addr string) error {
	nc, err := t.dial(addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, _, err = t.handshake(nc)
	return err
}

// run attaches nc as the peer's connection (closing any older one), runs its
// writer on this goroutine and its reader on another, and returns after both
// have stopped and the connection is detached.
func (t *Transport) run(p *peer, nc net.Conn) {
	c := newConn(t, p.id, nc)
	p.mu.Lock()
	old := p.conn
	p.conn = c
	p.mu.Unlock()
	if old != nil {
		old.close(errors.New("transport: replaced by a new connection"))
	}
	// Close may have run between the handshake and the attach.
	if t.ctx.Err() != nil {
		c.close(ErrClosed)
	}
	t.log.Debug("peer connected", zap.Uint64("peer", p.id), zap.Stringer("remote", nc.RemoteAddr()))
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop()
	}()
	c.writeLoop()
	<-readerDone
	p.mu.Lock()
	if p.conn == c {
		p.conn = nil
	}
	p.mu.Unlock()
	t.log.Debug("peer disconnected", zap.Uint64("peer", p.id), zap.Error(c.err()))
	t.mu.Lock()
	down := t.down
	t.mu.Unlock()
	if down != nil {
		down(p.id)
	}
}

type response struct {
	payload []byte
	err     error
}

// conn is one live connection to a peer: a reader goroutine that dispatches
// frames inline, and a writer goroutine that drains the outbound buffer with
// one write per wake-up.
type conn struct {
	t    *Transport
	peer uint64
	nc   net.Conn
	kick chan struct{} // 1-slot: the outbound buffer has data
	done chan struct{} // closed by close

	mu       sync.Mutex
	out      []byte                   // frames not yet written. Lock must be held.
	spare    []byte                   // the writer's other buffer. Lock must be held.
	pending  map[uint64]chan response // requests awaiting answers. Lock must be held.
	closeErr error                    // set once by close. Lock must be held.
}

func newConn(t *Transport, peer uint64, nc net.Conn) *conn {
	return &conn{
		t:       t,
		peer:    peer,
		nc:      nc,
		kick:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pending: make(map[uint64]chan response),
	}
}

func (c *conn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeErr
}

// close shuts the connection once and fails its waiting requests.
func (c *conn) close(err error) {
	c.mu.Lock()
	if c.closeErr != nil {
		c.mu.Unlock()
		return
	}
	c.closeErr = err
	pending := c.pending
	c.pending = nil
	c.out = nil
	c.mu.Unlock()
	close(c.done)
	c.nc.Close() // unblocks the reader; its error is the one we are handling
	for _, ch := range pending {
		ch <- response{err: fmt.Errorf("%w: %w", ErrConnLost, err)}
	}
}

func (c *conn) enqueue(k Kind, flags uint8, id uint64, payload []byte) error {
	if uint64(len(payload)) > uint64(c.t.cfg.MaxFrameSize) {
		return fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(payload))
	}
	c.mu.Lock()
	if c.closeErr != nil {
		c.mu.Unlock()
		return fmt.Errorf("%w: node %d", ErrUnreachable, c.peer)
	}
	if len(c.out)+len(payload) > c.t.cfg.MaxQueueBytes {
		c.mu.Unlock()
		return fmt.Errorf("%w: node %d", ErrBackpressure, c.peer)
	}
	c.out = AppendFrame(c.out, k, flags, id, payload)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

func (c *conn) addPending(id uint64, ch chan response) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return false
	}
	c.pending[id] = ch
	return true
}

func (c *conn) removePending(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

func (c *conn) takePending(id uint64) chan response {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := c.pending[id]
	delete(c.pending, id)
	return ch
}

// writeLoop is the only writer of the socket. Everything queued since the
// last wake-up goes out in one Write; an idle connection sends a ping.
func (c *conn) writeLoop() {
	pingEvery := c.t.cfg.IdleTimeout / 3
	ping := time.NewTimer(pingEvery)
	defer ping.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-ping.C:
			if err := c.enqueue(KindPing, 0, 0, nil); err != nil {
				return
			}
			continue
		case <-c.kick:
		}
		c.mu.Lock()
		buf := c.out
		c.out, c.spare = c.spare[:0], nil
		if len(buf) == 0 {
			c.spare = buf
		}
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		_ = c.nc.SetWriteDeadline(time.Now().Add(c.t.cfg.IdleTimeout)) // failure surfaces in Write
		if _, err := c.nc.Write(buf); err != nil {
			c.close(fmt.Errorf("transport: write: %w", err))
			return
		}
		c.mu.Lock()
		if c.closeErr == nil && cap(buf) <= 4<<20 { // keep a modest buffer for reuse
			c.spare = buf[:0]
		}
		c.mu.Unlock()
		if !ping.Stop() {
			select {
			case <-ping.C:
			default:
			}
		}
		ping.Reset(pingEvery)
	}
}

// readLoop reads frames until the connection fails and dispatches each one
// inline: answers to pending requests, or the registered handler.
func (c *conn) readLoop() {
	r := bufio.NewReaderSize(c.nc, 64<<10)
	var hdr [HeaderSize]byte
	for {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.t.cfg.IdleTimeout)) // failure surfaces in Read
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			c.close(fmt.Errorf("transport: read: %w", err))
			return
		}
		h, err := DecodeHeader(hdr[:], c.t.cfg.MaxFrameSize)
		if err != nil {
			c.close(err)
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r, payload); err != nil {
			c.close(fmt.Errorf("transport: read: %w", err))
			return
		}
		c.dispatch(h, payload)
	}
}

func (c *conn) dispatch(h Header, payload []byte) {
	switch h.Kind {
	case KindPing, KindHello:
		return
	case KindResponse, KindError:
		ch := c.takePending(h.ID)
		if ch == nil {
			return // the requester gave up
		}
		if h.Kind == KindError {
			ch <- response{err: &RemoteError{Text: string(payload)}}
		} else {
			ch <- response{payload: payload}
		}
		return
	}
	c.t.mu.Lock()
	handler := c.t.handlers[h.Kind]
	c.t.mu.Unlock()
	var reply func([]byte, error)
	if h.Flags&FlagRequest != 0 {
		id := h.ID
		var once atomic.Bool
		reply = func(resp []byte, err error) {
			if !once.CompareAndSwap(false, true) {
				return
			}
			var qerr error
			if err != nil {
				qerr = c.enqueue(KindError, 0, id, []byte(err.Error()))
			} else {
				qerr = c.enqueue(KindResponse, 0, id, resp)
			}
			if qerr != nil {
				c.t.log.Debug("reply not sent", zap.Uint64("peer", c.peer), zap.Error(qerr))
			}
		}
	}
	if handler == nil {
		if reply != nil {
			reply(nil, fmt.Errorf("no handler for frame kind %d", h.Kind))
		}
		return
	}
	handler(c.peer, payload, reply)
}
