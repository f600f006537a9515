package server

import (
	"fmt"
	"net"
	"sync/atomic"
)

// In-process AMQP clients (shovels) reach the broker through DialLocal as a
// network client would, speaking AMQP over an in-memory pipe: RabbitMQ's
// "amqp://" URI without a host, a direct connection to the local node.

// internalUser is RabbitMQ's name for the broker's own trusted user (as in
// the management API's user_who_performed_action for definitions import).
const internalUser = "rmq-internal"

// internalUserOf is the internal user with every permission on vhost.
func internalUserOf(vhost string) *User {
	return &User{Name: internalUser, Permissions: map[string]Permission{vhost: {".*", ".*", ".*"}}}
}

// localUser is who a local connection logs in as: the internal user for an
// empty name, otherwise that user, without a password, as RabbitMQ's
// direct connections trust the node they run in.
func (s *Server) localUser(name string) (*User, bool) {
	if name == "" || name == internalUser {
		return &User{Name: internalUser}, true // permissions set at connection.open
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[name]
	return u, u != nil
}

// localConns numbers local connections, for their names.
var localConns atomic.Uint64

// DialLocal returns the client end of a new AMQP connection to this broker,
// served like an accepted socket. Its login is trusted: an empty user name
// (or rmq-internal) is the internal user, with every permission on the
// vhost it opens; another name is that user, whose password is not
// checked. It fails with ErrServerClosed after Shutdown.
func (s *Server) DialLocal() (net.Conn, error) {
	client, server := net.Pipe()
	c := newConn(s, server)
	c.local = true
	// Unique, as connection names are (every pipe's address is "pipe").
	c.name = fmt.Sprintf("direct %d", localConns.Add(1))
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		client.Close()
		server.Close()
		return nil, ErrServerClosed
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		c.serve()
	}()
	return client, nil
}
