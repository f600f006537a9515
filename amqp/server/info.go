package server

import (
	"crypto/tls"
	"net"
	"strings"
	"time"

	"github.com/warren-mq/warren/amqp"
)

// ConnectionInfo describes one open client connection, for the management API.
type ConnectionInfo struct {
	Name             string
	User             string
	Vhost            string
	PeerHost         string
	PeerPort         int
	Host             string
	Port             int
	ClientProperties amqp.Table
	Channels         int
	ConnectedAt      time.Time
	FrameMax         uint32
	ChannelMax       uint16
	Heartbeat        time.Duration
	SSL              bool   // TLS connection
	SSLProtocol      string // e.g. "tlsv1.3"
	PeerCertSubject  string // verified client certificate, if any
	// Flow: a publish on it waits or waited for flow control in the last
	// second (RabbitMQ's connection state "flow").
	Flow bool
}

// connInfo is set once, after connection.open-ok; Channels is filled in
// when listed.
func (c *conn) publishInfo() {
	info := &ConnectionInfo{
		Name: c.name, User: c.user.Name, Vhost: c.vhost.Name, ClientProperties: c.clientProps,
		ConnectedAt: time.Now(), FrameMax: c.frameMax, ChannelMax: c.channelMax, Heartbeat: c.heartbeat,
	}
	if c.tls != nil {
		info.SSL = true
		info.SSLProtocol = map[uint16]string{tls.VersionTLS12: "tlsv1.2", tls.VersionTLS13: "tlsv1.3"}[c.tls.Version]
		if len(c.tls.PeerCertificates) > 0 {
			info.PeerCertSubject = c.tls.PeerCertificates[0].Subject.String()
		}
	}
	if a, ok := c.remote.(*net.TCPAddr); ok {
		info.PeerHost, info.PeerPort = a.IP.String(), a.Port
	}
	if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
		info.Host, info.Port = a.IP.String(), a.Port
	}
	c.info.Store(info)
}

// Connections lists the open connections that completed the handshake.
func (s *Server) Connections() []ConnectionInfo {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]ConnectionInfo, 0, len(conns))
	for _, c := range conns {
		if info := c.info.Load(); info != nil {
			i := *info
			i.Channels = int(c.nchannels.Load())
			i.Flow = c.flowing.Load() || time.Now().UnixNano()-c.flowAt.Load() < int64(time.Second)
			out = append(out, i)
		}
	}
	return out
}

// CloseConnection closes the named connection with 320 CONNECTION_FORCED and
// the given reason, as the management API's DELETE does. It reports whether
// the connection was found.
func (s *Server) CloseConnection(name, reason string) bool {
	s.mu.Lock()
	found := s.connsWhereLocked(func(i *ConnectionInfo) bool { return i.Name == name })
	s.mu.Unlock()
	if len(found) == 0 {
		return false
	}
	target := found[0]
	if strings.TrimSpace(reason) == "" {
		reason = "Closed via management plugin"
	}
	target.forceClose(amqp.Errorf(amqp.ConnectionForced, "%s", reason))
	return true
}

// Authenticate checks a user's password (for the HTTP API) and returns the
// user's tags.
func (s *Server) Authenticate(user, pass string) (tags []string, ok bool) {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil || !u.CheckPassword(pass) {
		return nil, false
	}
	return u.Tags, true
}
