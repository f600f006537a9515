package server

import (
	"regexp"
	"slices"
	"sync"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Permission checks, as RabbitMQ makes them: configure/write/read regexps
// per user and vhost, matched unanchored against a resource's name (as
// Erlang's re:run does: "^inv" allows "invoices"). A channel
// takes its user's permissions when it opens (changed permissions apply to
// new channels) and remembers the names it has already allowed.

type permKind uint8

const (
	permConfigure permKind = iota
	permWrite
	permRead
)

// checker is a channel's compiled view of its user's permissions on its vhost.
type checker struct {
	gen          uint64 // the Server's permGen it was made at
	user, vhost  string
	impersonator bool              // may publish with another user_id
	re           [3]*regexp.Regexp // nil: everything allowed (".*")
	ok           [3]map[string]struct{}
}

var regexpCache sync.Map // pattern -> *regexp.Regexp (or error)

// compilePermission compiles p, cached: patterns repeat across users and channels.
func compilePermission(p string) (*regexp.Regexp, error) {
	if v, ok := regexpCache.Load(p); ok {
		if re, ok := v.(*regexp.Regexp); ok {
			return re, nil
		}
		return nil, v.(error)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		regexpCache.Store(p, err)
		return nil, err
	}
	regexpCache.Store(p, re)
	return re, nil
}

// newChecker snapshots user's permissions on vhost.
func (s *Server) newChecker(u *User, vhost string) *checker {
	s.mu.Lock()
	p := u.Permissions[vhost]
	c := &checker{gen: s.permGen.Load(), user: u.Name, vhost: vhost, impersonator: slices.Contains(u.Tags, "impersonator")}
	s.mu.Unlock()
	for i, pat := range []string{p.Configure, p.Write, p.Read} {
		if pat == ".*" {
			continue
		}
		re, err := compilePermission(pat)
		if err != nil {
			re = regexp.MustCompile(`^\b$`) // an invalid stored pattern allows nothing
		}
		c.re[i] = re
		c.ok[i] = map[string]struct{}{}
	}
	return c
}

// check returns 403 ACCESS_REFUSED unless the user may do kind on the
// named queue or exchange.
func (c *checker) check(kind permKind, resource, name string) error {
	re := c.re[kind]
	if re == nil {
		return nil
	}
	if _, ok := c.ok[kind][name]; ok {
		return nil
	}
	if !re.MatchString(name) {
		return amqp.Errorf(amqp.AccessRefused, "access to %s '%s' in vhost '%s' refused for user '%s'", resource, name, c.vhost, c.user)
	}
	if len(c.ok[kind]) < 1024 {
		c.ok[kind][name] = struct{}{}
	}
	return nil
}

// perms is the channel's checker, made on first use and again after a
// change of permissions: RabbitMQ applies a change to open channels too.
func (ch *channel) perms() *checker {
	if ch.checker == nil || ch.checker.gen != ch.conn.srv.permGen.Load() {
		ch.checker = ch.conn.srv.newChecker(ch.conn.user, ch.vhost().Name)
	}
	return ch.checker
}

func (ch *channel) mayQueue(kind permKind, name string) error {
	return ch.perms().check(kind, "queue", name)
}

func (ch *channel) mayExchange(kind permKind, name string) error {
	if name == "" {
		name = "amq.default"
	}
	return ch.perms().check(kind, "exchange", name)
}

// MayRead reports whether user may read (get, consume, browse) queue on
// vhost, with the AMQP refusal as the error.
func (s *Server) MayRead(user, vhost, queue string) error {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil {
		return ErrAccessRefused
	}
	return s.newChecker(u, vhost).check(permRead, "queue", queue)
}

// Peek browses a queue without taking messages (see queue.Queue.Peek).
func (s *Server) Peek(vhost, name string, offset, n int) ([]queue.Entry, int, bool) {
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		q := v.queues[name]
		v.mu.RUnlock()
		if q != nil {
			es, total := q.Peek(offset, n)
			return es, total, true
		}
	}
	return nil, 0, false
}
