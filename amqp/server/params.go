package server

import (
	"crypto/rand"
	"encoding/base64"
	"maps"
	"slices"

	"github.com/warren-mq/warren/store"
)

// Global parameters are RabbitMQ's cluster-wide key/value settings
// (/api/global-parameters, "global_parameters" in definitions):
// internal_cluster_id, set once on the first start, and cluster_name, which
// names the broker in /api/overview when set. Any other name is kept as
// given, as RabbitMQ does.

// GlobalParameter is one named global value.
type GlobalParameter struct {
	Name  string `json:"name"`
	Value any    `json:"value"`
}

// newClusterID is RabbitMQ's form: a prefix and 16 random bytes in URL-safe
// base64.
func newClusterID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return "rabbitmq-cluster-id-" + base64.RawURLEncoding.EncodeToString(b[:])
}

// putGlobalParameter stores a global parameter; created is false when it
// replaced one.
func (s *Server) putGlobalParameter(name string, value any) (created bool) {
	s.mu.Lock()
	_, existed := s.globals[name]
	s.globals[name] = value
	s.mu.Unlock()
	s.persist(store.KindGlobal, name, GlobalParameter{Name: name, Value: value})
	return !existed
}

// deleteGlobalParameter removes a global parameter.
func (s *Server) deleteGlobalParameter(name string) error {
	s.mu.Lock()
	_, ok := s.globals[name]
	delete(s.globals, name)
	s.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if s.store != nil {
		s.store.DeleteDef(store.KindGlobal, name)
		s.store.Flush()
	}
	return nil
}

// GlobalParameters lists the global parameters by name.
func (s *Server) GlobalParameters() []GlobalParameter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GlobalParameter, 0, len(s.globals))
	for _, n := range slices.Sorted(maps.Keys(s.globals)) {
		out = append(out, GlobalParameter{Name: n, Value: s.globals[n]})
	}
	return out
}

// GlobalParameter returns one global parameter's value.
func (s *Server) GlobalParameter(name string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.globals[name]
	return v, ok
}

// ClusterName is the cluster_name global parameter when it is a string, or
// "" when it is not set.
func (s *Server) ClusterName() string {
	v, _ := s.GlobalParameter("cluster_name")
	name, _ := v.(string)
	return name
}

// restoreGlobals loads the stored global parameters; on a first start it
// stores the internal_cluster_id New made.
func (s *Server) restoreGlobals() error {
	ps, err := loadRecords[GlobalParameter](s.store, store.KindGlobal)
	if err != nil {
		return err
	}
	s.mu.Lock()
	stored := false
	for _, p := range ps {
		s.globals[p.Name] = p.Value
		stored = stored || p.Name == "internal_cluster_id"
	}
	id := s.globals["internal_cluster_id"]
	s.mu.Unlock()
	if !stored {
		s.persist(store.KindGlobal, "internal_cluster_id", GlobalParameter{Name: "internal_cluster_id", Value: id})
	}
	return nil
}
