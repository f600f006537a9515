package server

import (
	"fmt"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/store"
)

// Limits as RabbitMQ has them: per vhost max-connections and max-queues,
// per user max-connections and max-channels. A negative value (or none)
// means no limit; 0 allows nothing.

// VhostLimitNames and UserLimitNames are the limits each may have.
var (
	VhostLimitNames = []string{"max-connections", "max-queues"}
	UserLimitNames  = []string{"max-connections", "max-channels"}
)

func validLimit(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// limitOf reads a limit, -1 when unset.
func limitOf(m map[string]int64, name string) int64 {
	if v, ok := m[name]; ok {
		return v
	}
	return -1
}

// setVhostLimit sets (value >= 0) or clears (value < 0) a vhost limit.
func (s *Server) setVhostLimit(vhost, name string, value int64) error {
	if !validLimit(VhostLimitNames, name) {
		return fmt.Errorf("unknown vhost limit %q (max-connections, max-queues)", name)
	}
	s.mu.Lock()
	v := s.vhosts[vhost]
	if v == nil {
		s.mu.Unlock()
		return ErrNotFound
	}
	m := cloneLimits(v.limitMap())
	if value < 0 {
		delete(m, name)
	} else {
		m[name] = value
	}
	v.limits.Store(&m)
	rec := v.recordLocked()
	s.mu.Unlock()
	s.persist(store.KindVhost, vhost, rec)
	return nil
}

// VhostLimits returns a vhost's limits.
func (s *Server) VhostLimits(vhost string) (map[string]int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.vhosts[vhost]
	if v == nil {
		return nil, false
	}
	return cloneLimits(v.limitMap()), true
}

func (v *Vhost) limitMap() map[string]int64 {
	if p := v.limits.Load(); p != nil {
		return *p
	}
	return nil
}

// setUserLimit sets (value >= 0) or clears (value < 0) a user limit.
func (s *Server) setUserLimit(user, name string, value int64) error {
	if !validLimit(UserLimitNames, name) {
		return fmt.Errorf("unknown user limit %q (max-connections, max-channels)", name)
	}
	s.mu.Lock()
	u := s.users[user]
	if u == nil {
		s.mu.Unlock()
		return ErrNotFound
	}
	if u.Limits == nil {
		u.Limits = map[string]int64{}
	}
	if value < 0 {
		delete(u.Limits, name)
	} else {
		u.Limits[name] = value
	}
	rec := userRecordOf(u)
	s.mu.Unlock()
	s.persist(store.KindUser, user, rec)
	return nil
}

func cloneLimits(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkConnectionLimits refuses connection.open past the vhost's or the
// user's max-connections, with RabbitMQ's texts.
func (s *Server) checkConnectionLimits(c *conn, u *User, v *Vhost) *amqp.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vl, ul := limitOf(v.limitMap(), "max-connections"), limitOf(u.Limits, "max-connections")
	if vl < 0 && ul < 0 {
		return nil
	}
	var nv, nu int64
	for other := range s.conns {
		info := other.info.Load()
		if other == c || info == nil {
			continue
		}
		if info.Vhost == v.Name {
			nv++
		}
		if info.User == u.Name {
			nu++
		}
	}
	if vl >= 0 && nv >= vl {
		return amqp.Errorf(amqp.NotAllowed, "access to vhost '%s' refused for user '%s': connection limit (%d) is reached", v.Name, u.Name, vl)
	}
	if ul >= 0 && nu >= ul {
		return amqp.Errorf(amqp.NotAllowed, "connection refused for user '%s': user connection limit (%d) is reached", u.Name, ul)
	}
	return nil
}

// checkChannelLimit refuses channel.open past the user's max-channels.
func (s *Server) checkChannelLimit(u *User) *amqp.Error {
	s.mu.Lock()
	limit := limitOf(u.Limits, "max-channels")
	if limit < 0 {
		s.mu.Unlock()
		return nil
	}
	var n int64
	for other := range s.conns {
		if info := other.info.Load(); info != nil && info.User == u.Name {
			n += int64(other.nchannels.Load())
		}
	}
	s.mu.Unlock()
	if n >= limit {
		return amqp.Errorf(amqp.NotAllowed, "number of channels opened for user '%s' has reached the maximum allowed user limit of (%d)", u.Name, limit)
	}
	return nil
}

// checkQueueLimit refuses a new queue past the vhost's max-queues. v.mu held.
func (v *Vhost) checkQueueLimitLocked(name string) *amqp.Error {
	limit := limitOf(v.limitMap(), "max-queues")
	if limit >= 0 && int64(len(v.queues)) >= limit {
		return amqp.Errorf(amqp.PreconditionFailed, "cannot declare queue '%s': queue limit in vhost '%s' (%d) is reached", name, v.Name, limit)
	}
	return nil
}
