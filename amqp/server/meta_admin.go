package server

import (
	"fmt"
	"regexp"
)

// The administrative changes the management API makes. On a single node
// each is applied at once; in a cluster each is validated here, proposed
// through the metadata log and applied on every node (meta.go), and the
// error says when the cluster could not commit it (ErrNoQuorum).

// AddVhost creates a vhost; created is false when it existed.
func (s *Server) AddVhost(name string) (created bool, err error) {
	if s.meta == nil {
		return s.addVhost(name), nil
	}
	return s.proposeAdmin(metaCmd{Op: "vhost.add", Name: name})
}

// DeleteVhost deletes a vhost with everything in it, closing its
// connections.
func (s *Server) DeleteVhost(name string) error {
	if s.meta == nil {
		return s.deleteVhost(name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "vhost.delete", Name: name})
	return err
}

// PutUser creates or replaces a user with a password hash in RabbitMQ's
// format and tags; created is false when it replaced one.
func (s *Server) PutUser(name, passwordHash string, tags []string) (created bool, err error) {
	if s.meta == nil {
		return s.putUser(name, passwordHash, tags), nil
	}
	return s.proposeAdmin(metaCmd{Op: "user.put", Name: name, Hash: passwordHash, Tags: tags})
}

// DeleteUser deletes a user and closes its connections.
func (s *Server) DeleteUser(name string) error {
	if s.meta == nil {
		return s.deleteUser(name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "user.delete", Name: name})
	return err
}

// SetPermission sets a user's configure/write/read regexps on a vhost.
func (s *Server) SetPermission(user, vhost string, p Permission) error {
	if s.meta == nil {
		return s.setPermission(user, vhost, p)
	}
	for _, re := range []string{p.Configure, p.Write, p.Read} {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("invalid regexp %q: %w", re, err)
		}
	}
	_, err := s.proposeAdmin(metaCmd{Op: "permission.set", User: user, Vhost: vhost, Permission: &p})
	return err
}

// ClearPermission removes a user's permissions on a vhost.
func (s *Server) ClearPermission(user, vhost string) error {
	if s.meta == nil {
		return s.clearPermission(user, vhost)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "permission.clear", User: user, Vhost: vhost})
	return err
}

// PutPolicy validates and stores a policy, applying it at once; created is
// false when it replaced one.
func (s *Server) PutPolicy(p Policy) (created bool, err error) {
	if s.meta == nil {
		return s.putPolicy(p)
	}
	check := p
	if err := check.normalize(); err != nil {
		return false, err
	}
	return s.proposeAdmin(metaCmd{Op: "policy.put", Policy: &p})
}

// DeletePolicy removes a policy; objects fall back to the next match.
func (s *Server) DeletePolicy(vhost, name string) error {
	if s.meta == nil {
		return s.deletePolicy(vhost, name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "policy.delete", Vhost: vhost, Name: name})
	return err
}

// SetVhostLimit sets (value >= 0) or clears (value < 0) a vhost limit.
func (s *Server) SetVhostLimit(vhost, name string, value int64) error {
	if s.meta == nil {
		return s.setVhostLimit(vhost, name, value)
	}
	if !validLimit(VhostLimitNames, name) {
		return fmt.Errorf("unknown vhost limit %q (max-connections, max-queues)", name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "limit.vhost", Vhost: vhost, Name: name, Limit: value})
	return err
}

// SetUserLimit sets (value >= 0) or clears (value < 0) a user limit.
func (s *Server) SetUserLimit(user, name string, value int64) error {
	if s.meta == nil {
		return s.setUserLimit(user, name, value)
	}
	if !validLimit(UserLimitNames, name) {
		return fmt.Errorf("unknown user limit %q (max-connections, max-channels)", name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "limit.user", User: user, Name: name, Limit: value})
	return err
}

// PutGlobalParameter stores a global parameter; created is false when it
// replaced one.
func (s *Server) PutGlobalParameter(name string, value any) (created bool, err error) {
	if s.meta == nil {
		return s.putGlobalParameter(name, value), nil
	}
	return s.proposeAdmin(metaCmd{Op: "global.put", Name: name, Value: value})
}

// DeleteGlobalParameter removes a global parameter.
func (s *Server) DeleteGlobalParameter(name string) error {
	if s.meta == nil {
		return s.deleteGlobalParameter(name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "global.delete", Name: name})
	return err
}

// SetTracing turns firehose tracing of vhost on or off; it is stored with
// the vhost and survives restarts.
func (s *Server) SetTracing(vhost string, on bool) error {
	if s.meta == nil {
		return s.setTracing(vhost, on)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "tracing", Vhost: vhost, On: on})
	return err
}
