package server

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/warren-mq/warren/amqp"
)

// User is a broker user. PasswordHash follows RabbitMQ's
// rabbit_password_hashing_sha256: base64(salt ++ SHA-256(salt ++ password))
// with a 4-byte salt, so imported definitions keep working.
type User struct {
	Name         string
	PasswordHash string
	Tags         []string
	// Permissions by vhost.
	Permissions map[string]Permission
	// Limits: max-connections, max-channels (absent: none).
	Limits map[string]int64
}

// Permission holds the configure, write and read regexps of one user on one vhost.
type Permission struct {
	Configure, Write, Read string
}

// NewUser returns a user with a freshly salted hash of password.
func NewUser(name, password string, tags ...string) *User {
	return &User{Name: name, PasswordHash: HashPassword(password), Tags: tags, Permissions: map[string]Permission{}}
}

// HashPassword returns RabbitMQ's SHA-256 password hash with a random salt.
func HashPassword(password string) string {
	salt := make([]byte, 4)
	rand.Read(salt)
	return hashWithSalt(salt, password)
}

func hashWithSalt(salt []byte, password string) string {
	h := sha256.New()
	h.Write(salt)
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(append(slices.Clip(salt), h.Sum(nil)...))
}

// CheckPassword reports whether password matches the user's hash.
func (u *User) CheckPassword(password string) bool {
	raw, err := base64.StdEncoding.DecodeString(u.PasswordHash)
	if err != nil || len(raw) < 4 {
		return false
	}
	want := hashWithSalt(raw[:4], password)
	return subtle.ConstantTimeCompare([]byte(want), []byte(u.PasswordHash)) == 1
}

// parseSASL extracts the user name and password from a PLAIN or AMQPLAIN
// response; ok is false for an unknown mechanism or a malformed response.
func parseSASL(mechanism, response string) (user, pass string, ok bool) {
	switch mechanism {
	case "PLAIN":
		// authzid NUL authcid NUL passwd (RFC 4616)
		parts := bytes.SplitN([]byte(response), []byte{0}, 3)
		if len(parts) != 3 {
			return "", "", false
		}
		return string(parts[1]), string(parts[2]), true
	case "AMQPLAIN":
		t, err := amqp.DecodeTableBody([]byte(response))
		if err != nil {
			// Some clients include the table's length prefix.
			if t, err = amqp.DecodeTable([]byte(response)); err != nil {
				return "", "", false
			}
		}
		u, ok1 := t["LOGIN"].(string)
		p, ok2 := t["PASSWORD"].(string)
		return u, p, ok1 && ok2
	}
	return "", "", false
}

// authenticate checks credentials and the loopback restriction.
func (s *Server) authenticate(user, pass string, remote net.Addr) (*User, bool) {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil || !u.CheckPassword(pass) {
		return nil, false
	}
	if slices.Contains(s.cfg.LoopbackUsers, user) && !s.isLoopback(remote) {
		return nil, false
	}
	return u, true
}

// authenticateExternal logs in the user named by a verified client
// certificate; the loopback restriction still applies.
func (s *Server) authenticateExternal(user string, remote net.Addr) (*User, bool) {
	s.mu.Lock()
	u := s.users[user]
	s.mu.Unlock()
	if u == nil || slices.Contains(s.cfg.LoopbackUsers, user) && !s.isLoopback(remote) {
		return nil, false
	}
	return u, true
}

// isLoopback reports whether a is in one of the loopback networks.
func (s *Server) isLoopback(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		for _, n := range s.cfg.LoopbackNetworks {
			if n.Contains(a.IP) {
				return true
			}
		}
		return false
	case *net.UnixAddr:
		return true
	}
	return false
}

// failureTracker counts failed logins per source address, for the rate
// limit on guessing passwords.
type failureTracker struct {
	mu    sync.Mutex
	bySrc map[string]*failures
}

type failures struct {
	n      int
	since  time.Time
	warned bool
}

func sourceOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	return a.String()
}

// blocked reports whether src has used up its failed logins in the current
// window, and whether this is the first refusal of that window (to log).
func (t *failureTracker) blocked(src string, limit int, window time.Duration) (bool, bool) {
	if limit < 0 {
		return false, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.bySrc[src]
	if f == nil {
		return false, false
	}
	if time.Since(f.since) > window {
		delete(t.bySrc, src)
		return false, false
	}
	if f.n < limit {
		return false, false
	}
	first := !f.warned
	f.warned = true
	return true, first
}

// failed records a failed login from src.
func (t *failureTracker) failed(src string, window time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bySrc == nil || len(t.bySrc) > 100000 {
		t.bySrc = map[string]*failures{} // bounded: forget everyone rather than grow
	}
	f := t.bySrc[src]
	if f == nil || time.Since(f.since) > window {
		f = &failures{since: time.Now()}
		t.bySrc[src] = f
	}
	f.n++
}
