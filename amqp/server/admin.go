package server

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/store"
)

// Vhosts, users and permissions: the narrow API through which definitions
// change (the management API calls it), persisted in the store like
// exchanges and queues.

type vhostRecord struct {
	Name    string           `json:"name"`
	Limits  map[string]int64 `json:"limits,omitempty"`
	Tracing bool             `json:"tracing,omitempty"`
}

// recordLocked is the vhost's stored form. Server lock held.
func (v *Vhost) recordLocked() vhostRecord {
	return vhostRecord{Name: v.Name, Limits: cloneLimits(v.limitMap()), Tracing: v.trace.Load() != nil}
}

type userRecord struct {
	Name         string                `json:"name"`
	PasswordHash string                `json:"password_hash"`
	Tags         []string              `json:"tags"`
	Permissions  map[string]Permission `json:"permissions"`
	Limits       map[string]int64      `json:"limits,omitempty"`
}

// ErrNotFound is returned for a missing user or vhost.
var ErrNotFound = errors.New("not found")

func (s *Server) newVhostLocked(name string) *Vhost {
	v := newVhost(name, s.log)
	v.store = s.store
	v.node = s.cfg.NodeName
	v.srv = s
	v.retired = &s.closedStats
	v.nextQueueID = func() uint64 { return s.lastQueueID.Add(1) }
	v.pageWindow = s.cfg.PageWindow
	v.budget = s.budget
	v.delayWindow = s.cfg.DelayWindow
	if v.delayWindow == 0 {
		v.delayWindow = defaultDelayWindow
	}
	s.vhosts[name] = v
	return v
}

// VhostNames lists the vhosts, sorted.
func (s *Server) VhostNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.vhosts))
	for n := range s.vhosts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// addVhost creates a vhost; created is false when it existed.
func (s *Server) addVhost(name string) (created bool) {
	s.mu.Lock()
	if _, ok := s.vhosts[name]; ok {
		s.mu.Unlock()
		return false
	}
	s.newVhostLocked(name)
	s.mu.Unlock()
	s.persist(store.KindVhost, name, vhostRecord{Name: name})
	return true
}

// deleteVhost deletes a vhost with everything in it, closing its
// connections with 320.
func (s *Server) deleteVhost(name string) error {
	s.mu.Lock()
	v, ok := s.vhosts[name]
	if ok {
		delete(s.vhosts, name)
	}
	conns := s.connsWhereLocked(func(i *ConnectionInfo) bool { return i.Vhost == name })
	s.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	for _, c := range conns {
		c.forceClose(amqp.Errorf(amqp.ConnectionForced, "vhost '%s' is deleted", name))
	}
	if t := v.trace.Swap(nil); t != nil {
		t.close()
	}
	v.mu.Lock()
	qs := make([]*Queue, 0, len(v.queues))
	for _, q := range v.queues {
		qs = append(qs, q)
	}
	for _, x := range v.exchanges {
		if x.Name != "" {
			v.deleteExchangeLocked(x)
		}
	}
	v.mu.Unlock()
	for _, q := range qs {
		v.deleteQueue(q)
	}
	s.dropVhostParameters(name)
	if s.store != nil {
		s.store.DeleteDef(store.KindVhost, name)
		s.store.Flush()
	}
	return nil
}

// putUser creates or replaces a user with a password hash in RabbitMQ's
// format; created is false when the user existed (its permissions stay).
func (s *Server) putUser(name, passwordHash string, tags []string) (created bool) {
	s.mu.Lock()
	u, ok := s.users[name]
	if !ok {
		u = &User{Name: name, Permissions: map[string]Permission{}}
		s.users[name] = u
	}
	u.PasswordHash, u.Tags = passwordHash, slices.Clone(tags)
	s.permGen.Add(1)
	rec := userRecordOf(u)
	s.mu.Unlock()
	s.persist(store.KindUser, name, rec)
	return !ok
}

// deleteUser deletes a user and closes its connections with 320, as
// RabbitMQ does.
func (s *Server) deleteUser(name string) error {
	s.mu.Lock()
	_, ok := s.users[name]
	delete(s.users, name)
	conns := s.connsWhereLocked(func(i *ConnectionInfo) bool { return i.User == name })
	s.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	for _, c := range conns {
		c.forceClose(amqp.Errorf(amqp.ConnectionForced, "user '%s' is deleted", name))
	}
	if s.store != nil {
		s.store.DeleteDef(store.KindUser, name)
		s.store.Flush()
	}
	return nil
}

// setPermission sets a user's configure/write/read regexps on a vhost.
func (s *Server) setPermission(user, vhost string, p Permission) error {
	for _, re := range []string{p.Configure, p.Write, p.Read} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("invalid regexp %q: %w", re, err)
		}
	}
	s.mu.Lock()
	u, ok := s.users[user]
	_, vok := s.vhosts[vhost]
	if !ok || !vok {
		s.mu.Unlock()
		return ErrNotFound
	}
	u.Permissions[vhost] = p
	s.permGen.Add(1)
	rec := userRecordOf(u)
	s.mu.Unlock()
	s.persist(store.KindUser, user, rec)
	return nil
}

// clearPermission removes a user's permissions on a vhost.
func (s *Server) clearPermission(user, vhost string) error {
	s.mu.Lock()
	u, ok := s.users[user]
	if !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	if _, ok := u.Permissions[vhost]; !ok {
		s.mu.Unlock()
		return ErrNotFound
	}
	delete(u.Permissions, vhost)
	s.permGen.Add(1)
	rec := userRecordOf(u)
	s.mu.Unlock()
	s.persist(store.KindUser, user, rec)
	return nil
}

// UserInfo returns a copy of a user, or false.
func (s *Server) UserInfo(name string) (User, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[name]
	if !ok {
		return User{}, false
	}
	c := *u
	c.Tags = slices.Clone(u.Tags)
	c.Limits = cloneLimits(u.Limits)
	c.Permissions = make(map[string]Permission, len(u.Permissions))
	for k, v := range u.Permissions {
		c.Permissions[k] = v
	}
	return c, true
}

// connsWhereLocked returns the open (handshaken) connections whose info
// matches. s.mu must be held.
func (s *Server) connsWhereLocked(match func(*ConnectionInfo) bool) []*conn {
	var out []*conn
	for c := range s.conns {
		if info := c.info.Load(); info != nil && match(info) {
			out = append(out, c)
		}
	}
	return out
}

// s.mu must be held.
func userRecordOf(u *User) userRecord {
	perms := make(map[string]Permission, len(u.Permissions))
	for k, v := range u.Permissions {
		perms[k] = v
	}
	return userRecord{Name: u.Name, PasswordHash: u.PasswordHash, Tags: slices.Clone(u.Tags), Permissions: perms, Limits: cloneLimits(u.Limits)}
}

// persist writes a definition and waits until it is on disk.
func (s *Server) persist(kind byte, name string, v any) {
	if s.store == nil {
		return
	}
	if err := s.store.PutDef(kind, name, v); err != nil {
		s.log.Sugar().Errorf("persisting %c %q: %v", kind, name, err)
		return
	}
	s.store.Flush()
}

// restoreAccess loads vhosts and users. On a first start (nothing stored)
// it stores the defaults instead, so that deleting guest sticks.
func (s *Server) restoreAccess() error {
	st := s.store
	vhosts, err := loadRecords[vhostRecord](st, store.KindVhost)
	if err != nil {
		return err
	}
	users, err := loadRecords[userRecord](st, store.KindUser)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if len(vhosts) > 0 {
		keep := map[string]bool{}
		for _, r := range vhosts {
			keep[r.Name] = true
			v, ok := s.vhosts[r.Name]
			if !ok {
				v = s.newVhostLocked(r.Name)
			}
			if r.Limits != nil {
				v.limits.Store(&r.Limits)
			}
			v.setTracingLocked(r.Tracing, s.nodeName())
		}
		for n := range s.vhosts {
			if !keep[n] {
				delete(s.vhosts, n)
			}
		}
	}
	if len(users) > 0 {
		s.users = map[string]*User{}
		for _, r := range users {
			if r.Permissions == nil {
				r.Permissions = map[string]Permission{}
			}
			s.users[r.Name] = &User{Name: r.Name, PasswordHash: r.PasswordHash, Tags: r.Tags, Permissions: r.Permissions, Limits: r.Limits}
		}
	}
	var defaults []func()
	if len(vhosts) == 0 {
		for n := range s.vhosts {
			defaults = append(defaults, func() { st.PutDef(store.KindVhost, n, vhostRecord{Name: n}) })
		}
	}
	if len(users) == 0 {
		for _, u := range s.users {
			rec := userRecordOf(u)
			defaults = append(defaults, func() { st.PutDef(store.KindUser, rec.Name, rec) })
		}
	}
	s.mu.Unlock()
	for _, f := range defaults {
		f()
	}
	st.Flush()
	return nil
}

// Users lists copies of every user, by name.
func (s *Server) Users() []User {
	s.mu.Lock()
	names := make([]string, 0, len(s.users))
	for n := range s.users {
		names = append(names, n)
	}
	s.mu.Unlock()
	sort.Strings(names)
	out := make([]User, 0, len(names))
	for _, n := range names {
		if u, ok := s.UserInfo(n); ok {
			out = append(out, u)
		}
	}
	return out
}
