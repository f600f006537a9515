package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Outbound buffer bounds: above highWater, consumers of this connection get
// no more deliveries until the writer has drained it below lowWater.
const (
	outHighWater = 1 << 20
	outLowWater  = 256 << 10
	// spareCap: a write buffer that grew larger than this is not kept.
	spareCap = 4 << 20
)

// connState is the connection state machine's state.
type connState uint8

const (
	stateHandshake connState = iota
	stateOpen
	stateClosing // we sent connection.close and await close-ok
	stateClosed
)

func (s connState) String() string {
	switch s {
	case stateHandshake:
		return "handshake"
	case stateOpen:
		return "open"
	case stateClosing:
		return "closing"
	}
	return "closed"
}

type conn struct {
	srv    *Server
	nc     net.Conn
	log    *zap.Logger
	br     *bufio.Reader
	fr     *amqp.FrameReader
	remote net.Addr
	tls    *tls.ConnectionState // nil on a plain TCP connection
	// names interns the exchange names and routing keys of published
	// messages; only the reader goroutine uses it.
	names queue.Names

	// Set during the handshake, then read-only.
	user       *User
	vhost      *Vhost
	frameMax   uint32
	channelMax uint16
	heartbeat  time.Duration
	// hbWriter is heartbeat for the writer goroutine, set once at tune-ok.
	hbWriter atomic.Int64
	// flowWaited: a publish just waited for flow control (flowgate.go), so
	// the reader's heartbeat deadline is stale; only the reader uses it.
	flowWaited bool
	// flowAt is when a publish last waited for flow control (unix ns);
	// flowing, that one waits now.
	flowAt      atomic.Int64
	flowing     atomic.Bool
	clientProps amqp.Table
	// applying marks the in-process sessions that apply the cluster's
	// metadata log: their topology changes are local (meta.go).
	applying bool
	// local marks an in-process client's connection (DialLocal): its login
	// is trusted, as RabbitMQ's direct connections are.
	local bool
	// home, on an applying session, is the node that proposed the command
	// being applied: a queue it declares lives there. generated says that
	// node generated the queue's amq.gen- name.
	home      string
	generated bool
	// group and members: the Raft group of a replicated queue it declares
	// (replica.go).
	group       uint64
	members     []string
	capCancel   bool // consumer_cancel_notify
	capAuthFail bool // authentication_failure_close
	capBlocked  bool // connection.blocked
	name        string

	// Owned by the reader goroutine.
	state    connState
	channels map[uint16]*channel
	// freed remembers the last few channel ids closed and freed, so that a
	// late close or close-ok for one of them is told from a frame on a
	// channel never opened (reader goroutine only).
	freed  [4]uint16
	freedN int
	// exclusive queues owned by this connection; guarded by srv vhost lock for
	// registration, read by the reader at teardown.
	exclusive []*Queue
	excMu     sync.Mutex

	// Outbound buffer, guarded by outMu.
	outMu   sync.Mutex
	out     []byte
	waiting []*queue.Queue // queues to kick once the buffer drains
	closed  bool           // writer gone: drop further output
	outLen  atomic.Int64
	outKick chan struct{}

	info      atomic.Pointer[ConnectionInfo]
	nchannels atomic.Int32
	chanSnap  atomic.Pointer[[]*channel] // the open channels, for listings

	stopWrite chan struct{} // closed by the reader when it exits
	writeDone chan struct{}
	forced    chan *amqp.Error // server-initiated close (shutdown, management)
	// timeoutKick: the consumer-timeout sweep marked channels to close.
	timeoutKick chan struct{}
	// rmu guards blocked and woken: the sweep wakes the reader only while
	// it waits for input between frames (consumer_timeout.go).
	rmu            sync.Mutex
	blocked, woken bool
}

func newConn(s *Server, nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	c := &conn{
		srv:         s,
		nc:          nc,
		remote:      nc.RemoteAddr(),
		log:         s.log.With(zap.Stringer("remote", nc.RemoteAddr())),
		br:          bufio.NewReaderSize(nc, 64<<10),
		channels:    map[uint16]*channel{},
		outKick:     make(chan struct{}, 1),
		stopWrite:   make(chan struct{}),
		writeDone:   make(chan struct{}),
		forced:      make(chan *amqp.Error, 1),
		timeoutKick: make(chan struct{}, 1),
		frameMax:    s.cfg.FrameMax,
	}
	c.name = fmt.Sprintf("%s -> %s", nc.RemoteAddr(), nc.LocalAddr())
	// Until tune-ok, RabbitMQ reads with its initial_frame_max (default
	// 4096, the spec's frame-min-size, 4.2.3): a bigger start-ok is dropped
	// (rabbit_reader.erl start_connection; observed on 3.10: payload 4096
	// accepted, 4097 refused). Tune-ok raises it to the negotiated frame_max.
	c.fr = amqp.NewFrameReader(c.br, amqp.FrameMinSize)
	return c
}

// send appends frames built by fn to the outbound buffer and wakes the writer.
func (c *conn) send(fn func([]byte) []byte) {
	c.outMu.Lock()
	if c.closed {
		c.outMu.Unlock()
		return
	}
	c.out = fn(c.out)
	c.outLen.Store(int64(len(c.out)))
	c.outMu.Unlock()
	c.kickWriter()
}

func (c *conn) kickWriter() {
	select {
	case c.outKick <- struct{}{}:
	default:
	}
}

// sendMethod queues one method frame.
func (c *conn) sendMethod(ch uint16, m amqp.Method) {
	c.send(func(b []byte) []byte { return amqp.AppendMethodFrame(b, ch, m) })
}

// full reports whether the outbound buffer is over its high-water mark; if
// so, q is kicked once it drains.
func (c *conn) full(q *queue.Queue) bool {
	if c.outLen.Load() < outHighWater {
		return false
	}
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if len(c.out) < outHighWater || c.closed {
		return c.closed
	}
	for _, w := range c.waiting {
		if w == q {
			return true
		}
	}
	c.waiting = append(c.waiting, q)
	return true
}

// writeLoop owns writes to the socket.
func (c *conn) writeLoop() {
	defer close(c.writeDone)
	var spare []byte
	var hb *time.Ticker
	var hbC <-chan time.Time
	var interval time.Duration
	lastWrite := time.Now()
	for {
		if hb == nil && c.hbWriter.Load() > 0 {
			interval = time.Duration(c.hbWriter.Load())
			hb = time.NewTicker(interval / 2)
			defer hb.Stop()
			hbC = hb.C
		}
		stopping := false
		select {
		case <-c.outKick:
		case <-hbC:
		case <-c.stopWrite:
			stopping = true
		}
		c.outMu.Lock()
		buf := c.out
		c.out = spare[:0]
		c.outLen.Store(0)
		waiting := c.waiting
		c.waiting = nil
		if stopping {
			c.closed = true
		}
		c.outMu.Unlock()
		if len(buf) == 0 && !stopping && hb != nil && time.Since(lastWrite) >= interval/2 {
			buf = amqp.AppendHeartbeat(buf)
		}
		if len(buf) > 0 {
			c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
			if _, err := c.nc.Write(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					c.log.Warn("closing a connection that stopped reading its socket", zap.Duration("write_timeout", c.srv.cfg.WriteTimeout), zap.Int("pending_bytes", len(buf)))
				}
				c.outMu.Lock()
				c.closed = true
				c.outMu.Unlock()
				c.nc.Close() // unblocks the reader
				for _, q := range waiting {
					q.Kick()
				}
				<-c.stopWrite
				return
			}
			lastWrite = time.Now()
		}
		if cap(buf) <= spareCap {
			spare = buf[:0]
		} else {
			spare = nil
		}
		for _, q := range waiting {
			q.Kick()
		}
		if stopping {
			return
		}
	}
}

// draining reports whether the outbound buffer is full: the consumers on
// this connection are held back by the client's reading, not by their
// credit (see queue.Draining). A client that stopped reading altogether is
// closed after the write timeout.
func (c *conn) draining() bool { return c.outLen.Load() >= outHighWater }

// serve runs the connection: handshake, then the reader loop; on exit it
// tears down channels and exclusive queues.
func (c *conn) serve() {
	defer c.srv.removeConn(c)
	go c.writeLoop()
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("connection panic", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			c.sendMethod(0, &amqp.ConnectionClose{ReplyCode: amqp.InternalError, ReplyText: "INTERNAL_ERROR"})
		}
		c.teardown()
		close(c.stopWrite)
		<-c.writeDone
		if c.state == stateClosed {
			c.linger()
		}
		c.nc.Close()
	}()
	if err := c.handshake(); err != nil {
		c.log.Debug("handshake failed", zap.Error(err))
		return
	}
	c.state = stateOpen
	err := c.readLoop()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		c.log.Debug("connection closed", zap.Error(err))
	}
}

// linger discards what the client still sends until it closes its side
// (bounded in time), as RabbitMQ waits for the client to close the socket
// after close-ok: closing first would race the client's own shutdown and,
// with unread input, reset the connection before close-ok arrives.
func (c *conn) linger() {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		tc.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, io.LimitReader(tc, 64<<20))
	}
}

// forceClose asks the connection to close with e (from another goroutine).
func (c *conn) forceClose(e *amqp.Error) {
	select {
	case c.forced <- e:
	default:
	}
	// Wake the reader: a short deadline makes its blocked read return.
	c.nc.SetReadDeadline(time.Now())
}

var errClosed = errors.New("connection closed")

// readLoop reads frames until the connection ends.
func (c *conn) readLoop() error {
	var deadlineSet time.Time
	var frames uint32
	for {
		select {
		case e := <-c.forced:
			c.closeWith(e)
			return c.awaitCloseOk()
		case <-c.timeoutKick:
			c.closeTimedOut()
		default:
		}
		frames++
		if frames%1024 == 0 && c.heartbeat > 0 && c.br.Buffered() > 0 {
			// A client that keeps the buffer full never lets the branch
			// below run; its frames still prove it alive, and a reader
			// slowed by flow control must not time out on an old deadline
			// when it next refills the buffer mid-frame.
			if now := time.Now(); now.Sub(deadlineSet) > c.heartbeat/4 {
				c.nc.SetReadDeadline(now.Add(c.heartbeat * 2))
				deadlineSet = now
			}
		}
		if c.br.Buffered() == 0 {
			// About to block on the socket: send coalesced confirms and
			// refresh the heartbeat deadline (only here, to keep time.Now
			// off the per-frame path).
			c.flushConfirms()
			if c.heartbeat > 0 {
				if now := time.Now(); now.Sub(deadlineSet) > c.heartbeat/4 {
					c.nc.SetReadDeadline(now.Add(c.heartbeat * 2))
					deadlineSet = now
					if len(c.forced) > 0 || len(c.timeoutKick) > 0 {
						continue // a wake-up deadline was just overwritten
					}
				}
			} else if deadlineSet.IsZero() {
				c.nc.SetReadDeadline(time.Time{})
				deadlineSet = time.Now()
			}
			if c.waitInput(deadlineSet) {
				continue // channels to close for a consumer timeout
			}
		}
		f, err := c.fr.ReadFrame()
		if err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) {
				c.closeWith(ae)
				return c.awaitCloseOk()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				select {
				case e := <-c.forced:
					c.closeWith(e)
					return c.awaitCloseOk()
				case <-c.timeoutKick:
					c.closeTimedOut()
					deadlineSet = time.Time{}
					continue
				default:
				}
				if c.heartbeat > 0 {
					return fmt.Errorf("missed heartbeats from client, timeout: %ds", int(c.heartbeat.Seconds()))
				}
				deadlineSet = time.Time{}
				continue
			}
			return err
		}
		if err := c.handleFrame(f); err != nil {
			var ae *amqp.Error
			if errors.As(err, &ae) {
				c.closeWith(ae)
				return c.awaitCloseOk()
			}
			if err == errClosed {
				return nil
			}
			return err
		}
		if c.flowWaited {
			// The client was not read while its publish waited: its
			// heartbeats are in the buffer, not missed.
			c.flowWaited = false
			if c.heartbeat > 0 {
				now := time.Now()
				c.nc.SetReadDeadline(now.Add(c.heartbeat * 2))
				deadlineSet = now
			}
		}
	}
}

// closeWith sends connection.close with a hard error.
func (c *conn) closeWith(e *amqp.Error) {
	c.log.Debug("closing connection", zap.Uint16("code", e.Code), zap.String("text", e.Text))
	c.state = stateClosing
	c.sendMethod(0, &amqp.ConnectionClose{ReplyCode: e.Code, ReplyText: e.Text, ClassID: e.ClassID, MethodID: e.MethodID})
}

// awaitCloseOk discards frames until close-ok, a close, or a short timeout.
func (c *conn) awaitCloseOk() error {
	c.releaseChannels()
	c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			continue
		}
		cls, mid, _ := amqp.MethodIDs(f.Payload)
		if cls == amqp.ClassConnection && (mid == 51 || mid == 50) {
			if mid == 50 {
				c.sendMethod(0, &amqp.ConnectionCloseOk{})
			}
			c.state = stateClosed
			return nil
		}
	}
}

func (c *conn) handleFrame(f amqp.Frame) error {
	switch f.Type {
	case amqp.FrameHeartbeat:
		if f.Channel != 0 {
			return amqp.Errorf(amqp.CommandInvalid, "heartbeat frame on channel %d", f.Channel)
		}
		return nil
	case amqp.FrameMethod, amqp.FrameHeader, amqp.FrameBody:
	default:
		return amqp.Errorf(amqp.FrameError, "unknown frame type %d", f.Type)
	}
	if f.Channel == 0 {
		if f.Type != amqp.FrameMethod {
			return amqp.Errorf(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
		}
		return c.handleConnectionMethod(f.Payload)
	}
	ch := c.channels[f.Channel]
	if ch == nil {
		if f.Type != amqp.FrameMethod {
			return amqp.Errorf(amqp.UnexpectedFrame, "expected method frame, got non method frame instead")
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return err
		}
		switch m.(type) {
		case *amqp.ChannelOpen:
		case *amqp.ChannelCloseOk:
			// Our close and the client's close crossed and the channel is
			// already gone: nothing to do. On a channel never opened it is
			// RabbitMQ's 504, below.
			if c.recentlyFreed(f.Channel) {
				return nil
			}
			return amqp.Errorf(amqp.ChannelError, "expected 'channel.open'").For(m)
		case *amqp.ChannelClose:
			// A client that took our channel.close, answered it, and then
			// sent its own close (amqp091-go does when Channel.Close races
			// the server's close) gets its close-ok, as spec 2.3.7 asks.
			// RabbitMQ answers 504 here; Warren is lenient with this race.
			if c.recentlyFreed(f.Channel) {
				c.sendMethod(f.Channel, &amqp.ChannelCloseOk{})
				return nil
			}
			return amqp.Errorf(amqp.ChannelError, "expected 'channel.open'").For(m)
		default:
			return amqp.Errorf(amqp.ChannelError, "expected 'channel.open'").For(m)
		}
		if f.Channel > c.channelMax {
			return amqp.Errorf(amqp.NotAllowed, "number of channels opened (%d) has reached the negotiated channel_max (%d)", len(c.channels), c.channelMax).For(m)
		}
		if e := c.srv.checkChannelLimit(c.user); e != nil {
			return e.For(m)
		}
		ch = newChannel(c, f.Channel)
		c.channels[f.Channel] = ch
		c.channelsChanged()
		c.sendMethod(f.Channel, &amqp.ChannelOpenOk{})
		return nil
	}
	return ch.handleFrame(f)
}

func (c *conn) handleConnectionMethod(p []byte) error {
	m, err := amqp.DecodeMethod(p)
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *amqp.ConnectionClose:
		c.releaseChannels()
		c.sendMethod(0, &amqp.ConnectionCloseOk{})
		c.state = stateClosed
		return errClosed
	case *amqp.ConnectionCloseOk:
		c.state = stateClosed
		return errClosed
	case *amqp.ConnectionUpdateSecret:
		c.sendMethod(0, &amqp.ConnectionUpdateSecretOk{})
		return nil
	case *amqp.ConnectionBlocked, *amqp.ConnectionUnblocked:
		return nil
	default:
		return amqp.Errorf(amqp.CommandInvalid, "unexpected method %s on channel 0", m.Name()).For(m)
	}
}

// releaseChannels closes every channel: consumers cancelled, unacked
// messages requeued.
func (c *conn) releaseChannels() {
	for id, ch := range c.channels {
		ch.release()
		delete(c.channels, id)
	}
	c.channelsChanged()
}

// teardown releases channels and deletes exclusive queues.
func (c *conn) teardown() {
	c.releaseChannels()
	c.excMu.Lock()
	exc := c.exclusive
	c.exclusive = nil
	c.excMu.Unlock()
	for _, q := range exc {
		c.vhost.deleteQueue(q)
	}
}

// channelsChanged publishes the channel set for other goroutines (reader
// only; channels open and close rarely).
func (c *conn) channelsChanged() {
	snap := make([]*channel, 0, len(c.channels))
	for _, ch := range c.channels {
		snap = append(snap, ch)
	}
	c.chanSnap.Store(&snap)
	c.nchannels.Store(int32(len(snap)))
}

func (c *conn) dropChannel(id uint16) {
	delete(c.channels, id)
	c.freed[c.freedN%len(c.freed)] = id
	c.freedN++
	c.channelsChanged()
}

// recentlyFreed reports whether channel id was among the last closed.
func (c *conn) recentlyFreed(id uint16) bool {
	for i := range min(c.freedN, len(c.freed)) {
		if c.freed[i] == id {
			return true
		}
	}
	return false
}

func (c *conn) addExclusive(q *Queue) {
	c.excMu.Lock()
	c.exclusive = append(c.exclusive, q)
	c.excMu.Unlock()
}

func (c *conn) removeExclusive(q *Queue) {
	c.excMu.Lock()
	defer c.excMu.Unlock()
	for i, e := range c.exclusive {
		if e == q {
			c.exclusive = append(c.exclusive[:i], c.exclusive[i+1:]...)
			return
		}
	}
}

// flushConfirms sends the publisher confirms that accumulated while the
// reader drained its buffer: one basic.ack with multiple=true per channel.
func (c *conn) flushConfirms() {
	for _, ch := range c.channels {
		ch.flushConfirms()
	}
}

// --- handshake ---

func (c *conn) serverProperties() amqp.Table {
	return amqp.Table{
		"product":      "RabbitMQ",
		"version":      RabbitVersion,
		"platform":     "Warren (Go)",
		"copyright":    "Warren authors",
		"information":  "Warren, an AMQP 0-9-1 broker compatible with RabbitMQ clients",
		"cluster_name": c.srv.EffectiveClusterName(),
		"capabilities": amqp.Table{
			"publisher_confirms":           true,
			"exchange_exchange_bindings":   true,
			"basic.nack":                   true,
			"consumer_cancel_notify":       true,
			"connection.blocked":           true,
			"consumer_priorities":          true,
			"authentication_failure_close": true,
			"per_consumer_qos":             true,
			"direct_reply_to":              true,
		},
	}
}

// readHandshakeMethod reads one method frame on channel 0 during the handshake.
func (c *conn) readHandshakeMethod() (amqp.Method, error) {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			return nil, amqp.Errorf(amqp.UnexpectedFrame, "expected method frame on channel 0 during handshake")
		}
		return amqp.DecodeMethod(f.Payload)
	}
}

var errHandshake = errors.New("handshake refused")

func (c *conn) handshake() error {
	cfg := &c.srv.cfg
	c.nc.SetReadDeadline(time.Now().Add(cfg.HandshakeTimeout))
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(cfg.HandshakeTimeout))
		if err := tc.Handshake(); err != nil {
			c.log.Info("TLS handshake failed", zap.Error(err))
			return errHandshake
		}
		tc.SetWriteDeadline(time.Time{})
		st := tc.ConnectionState()
		c.tls = &st
	}
	var hdr [8]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return err // a short header then silence ends at the handshake deadline
	}
	if !bytes.Equal(hdr[:], amqp.ProtocolHeader) {
		// Spec 4.2.2: answer with the header we support, then close.
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.send(func(b []byte) []byte { return append(b, amqp.ProtocolHeader...) })
		return errHandshake
	}
	mechanisms := "PLAIN AMQPLAIN"
	cn := peerCN(c.tls)
	if cn != "" {
		mechanisms = "EXTERNAL PLAIN AMQPLAIN" // as with rabbitmq_auth_mechanism_ssl
	}
	c.sendMethod(0, &amqp.ConnectionStart{
		VersionMajor: 0, VersionMinor: 9,
		ServerProperties: c.serverProperties(),
		Mechanisms:       mechanisms,
		Locales:          "en_US",
	})
	m, err := c.readHandshakeMethod()
	if err != nil {
		return err
	}
	so, ok := m.(*amqp.ConnectionStartOk)
	if !ok {
		return errHandshake
	}
	c.clientProps = so.ClientProperties
	if caps, ok := so.ClientProperties["capabilities"].(amqp.Table); ok {
		c.capCancel, _ = caps["consumer_cancel_notify"].(bool)
		c.capAuthFail, _ = caps["authentication_failure_close"].(bool)
		c.capBlocked, _ = caps["connection.blocked"].(bool)
	}
	src := sourceOf(c.remote)
	if blocked, first := c.srv.authFails.blocked(src, cfg.AuthFailureLimit, cfg.AuthFailureWindow); blocked {
		if first {
			c.log.Warn("too many failed logins: refusing logins from this address for now",
				zap.String("source", src), zap.Int("limit", cfg.AuthFailureLimit), zap.Duration("window", cfg.AuthFailureWindow))
		}
		return c.refuseLogin(fmt.Sprintf("ACCESS_REFUSED - too many failed logins from %s; try again later", src))
	}
	var u *User
	var user string
	if c.local {
		user, _, _ = parseSASL(so.Mechanism, so.Response)
		u, ok = c.srv.localUser(user)
	} else if so.Mechanism == "EXTERNAL" && cn != "" {
		// The verified client certificate is the credential: its CN names
		// the user (RabbitMQ's ssl_cert_login_from common_name).
		user = cn
		u, ok = c.srv.authenticateExternal(cn, c.remote)
	} else {
		var pass string
		user, pass, ok = parseSASL(so.Mechanism, so.Response)
		if !ok {
			return c.refuseLogin(fmt.Sprintf("ACCESS_REFUSED - Login was refused using authentication mechanism %s. For details see the broker logfile.", so.Mechanism))
		}
		u, ok = c.srv.authenticate(user, pass, c.remote)
	}
	if !ok {
		if !c.local {
			c.srv.authFails.failed(src, cfg.AuthFailureWindow)
		}
		c.log.Info("login refused", zap.String("user", user), zap.String("mechanism", so.Mechanism))
		return c.refuseLogin(fmt.Sprintf("ACCESS_REFUSED - Login was refused using authentication mechanism %s. For details see the broker logfile.", so.Mechanism))
	}
	c.user = u
	c.sendMethod(0, &amqp.ConnectionTune{ChannelMax: cfg.ChannelMax, FrameMax: cfg.FrameMax, Heartbeat: cfg.Heartbeat})
	m, err = c.readHandshakeMethod()
	if err != nil {
		return err
	}
	to, ok := m.(*amqp.ConnectionTuneOk)
	if !ok {
		return errHandshake
	}
	// RabbitMQ refuses these silently (no close before open-ok).
	if to.FrameMax != 0 && (to.FrameMax < amqp.FrameMinSize || to.FrameMax > cfg.FrameMax) ||
		to.ChannelMax == 0 || to.ChannelMax > cfg.ChannelMax {
		c.log.Info("tune-ok refused", zap.Uint32("frame_max", to.FrameMax), zap.Uint16("channel_max", to.ChannelMax))
		return errHandshake
	}
	if to.FrameMax != 0 {
		c.frameMax = to.FrameMax
	}
	c.fr.Max = c.frameMax
	c.channelMax = to.ChannelMax
	c.heartbeat = time.Duration(to.Heartbeat) * time.Second
	c.hbWriter.Store(int64(c.heartbeat))
	c.kickWriter() // start heartbeats

	m, err = c.readHandshakeMethod()
	if err != nil {
		return err
	}
	op, ok := m.(*amqp.ConnectionOpen)
	if !ok {
		return errHandshake
	}
	v := c.srv.Vhost(op.VirtualHost)
	if v == nil {
		c.closeWith(amqp.Errorf(amqp.NotAllowed, "vhost %s not found", op.VirtualHost).For(op))
		c.awaitCloseOk()
		return errHandshake
	}
	if c.local && u.Name == internalUser {
		u = internalUserOf(op.VirtualHost)
		c.user = u
	}
	if _, ok := u.Permissions[op.VirtualHost]; !ok {
		c.closeWith(amqp.Errorf(amqp.NotAllowed, "access to vhost '%s' refused for user '%s'", op.VirtualHost, u.Name).For(op))
		c.awaitCloseOk()
		return errHandshake
	}
	if e := c.srv.checkConnectionLimits(c, u, v); e != nil {
		c.log.Info("connection refused by a limit", zap.String("reason", e.Text))
		c.closeWith(e.For(op))
		c.awaitCloseOk()
		return errHandshake
	}
	c.vhost = v
	c.nc.SetReadDeadline(time.Time{})
	c.publishInfo() // listed before the client can see it open
	c.sendMethod(0, &amqp.ConnectionOpenOk{})
	c.log = c.log.With(zap.String("user", u.Name), zap.String("vhost", v.Name))
	return nil
}

// refuseLogin follows RabbitMQ: a close 403 for clients that announced
// authentication_failure_close, otherwise just closing the socket.
func (c *conn) refuseLogin(text string) error {
	if c.capAuthFail {
		c.sendMethod(0, &amqp.ConnectionClose{ReplyCode: amqp.AccessRefused, ReplyText: text, ClassID: amqp.ClassConnection, MethodID: 11})
	}
	return errHandshake
}
