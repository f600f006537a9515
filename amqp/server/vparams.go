package server

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/warren-mq/warren/store"
)

// Vhost-scoped runtime parameters of components other than vhost-limits
// (RabbitMQ's /api/parameters/{component}/{vhost}/{name}, "parameters" in
// definitions). The broker only keeps them: a component registered with
// RegisterComponent validates each value and hears of every change, as a
// RabbitMQ plugin registers its rabbit_runtime_parameter. A component no
// one registered is refused, as RabbitMQ refuses one whose plugin is not
// enabled. Values are stored as given (JSON) and replicated through the
// metadata log in a cluster; every node notifies its component.

// Parameter is one vhost runtime parameter.
type Parameter struct {
	Component string `json:"component"`
	Vhost     string `json:"vhost"`
	Name      string `json:"name"`
	Value     any    `json:"value"`
}

// Component is what a registered runtime-parameter component does.
type Component interface {
	// Validate checks a value before it is stored; the error's text is
	// what the management API answers after "Validation failed".
	Validate(vhost, name string, value any) error
	// Changed is called after a parameter was stored (deleted false) or
	// removed (deleted true), on every node, with no lock of the server's
	// held. It must not block for long.
	Changed(p Parameter, deleted bool)
}

// vparams holds the vhost runtime parameters and the components.
type vparams struct {
	mu         sync.Mutex
	byKey      map[string]Parameter // paramKey
	components map[string]Component
}

// paramKey is the map and store key: component, vhost and name joined by
// NUL, which none of them can hold usefully.
func paramKey(component, vhost, name string) string {
	return component + "\x00" + vhost + "\x00" + name
}

// RegisterComponent makes component's parameters accepted and hands c their
// changes. Register before Restore to hear of the stored ones then too;
// ParametersOf lists them at any time.
func (s *Server) RegisterComponent(component string, c Component) {
	s.vparams.mu.Lock()
	defer s.vparams.mu.Unlock()
	if s.vparams.components == nil {
		s.vparams.components = map[string]Component{}
	}
	s.vparams.components[component] = c
}

// ComponentOf returns the registered component, or nil.
func (s *Server) ComponentOf(component string) Component {
	s.vparams.mu.Lock()
	defer s.vparams.mu.Unlock()
	return s.vparams.components[component]
}

// ErrUnknownComponent refuses a parameter of a component no one registered.
type ErrUnknownComponent struct{ Component string }

func (e *ErrUnknownComponent) Error() string {
	return "component " + e.Component + " not found"
}

// PutParameter validates and stores a vhost runtime parameter; created is
// false when it replaced one.
func (s *Server) PutParameter(p Parameter) (created bool, err error) {
	c := s.ComponentOf(p.Component)
	if c == nil {
		return false, &ErrUnknownComponent{p.Component}
	}
	if s.Vhost(p.Vhost) == nil {
		return false, fmt.Errorf("vhost %q: %w", p.Vhost, ErrNotFound)
	}
	if err := c.Validate(p.Vhost, p.Name, p.Value); err != nil {
		return false, err
	}
	if s.meta == nil {
		return s.putParameter(p), nil
	}
	return s.proposeAdmin(metaCmd{Op: "param.put", Vhost: p.Vhost, Name: p.Name, User: p.Component, Value: p.Value})
}

// DeleteParameter removes a vhost runtime parameter (ErrNotFound when
// there is none).
func (s *Server) DeleteParameter(component, vhost, name string) error {
	if s.meta == nil {
		return s.deleteParameter(component, vhost, name)
	}
	_, err := s.proposeAdmin(metaCmd{Op: "param.delete", Vhost: vhost, Name: name, User: component})
	return err
}

// ParametersOf lists the parameters of component ("" for all) in vhost (""
// for all), by component, vhost and name.
func (s *Server) ParametersOf(component, vhost string) []Parameter {
	s.vparams.mu.Lock()
	out := make([]Parameter, 0, len(s.vparams.byKey))
	for _, p := range s.vparams.byKey {
		if (component == "" || p.Component == component) && (vhost == "" || p.Vhost == vhost) {
			out = append(out, p)
		}
	}
	s.vparams.mu.Unlock()
	slices.SortFunc(out, func(a, b Parameter) int {
		return cmp.Or(strings.Compare(a.Component, b.Component), strings.Compare(a.Vhost, b.Vhost), strings.Compare(a.Name, b.Name))
	})
	return out
}

// putParameter stores a parameter on this node and tells its component.
func (s *Server) putParameter(p Parameter) (created bool) {
	k := paramKey(p.Component, p.Vhost, p.Name)
	s.vparams.mu.Lock()
	if s.vparams.byKey == nil {
		s.vparams.byKey = map[string]Parameter{}
	}
	_, existed := s.vparams.byKey[k]
	s.vparams.byKey[k] = p
	c := s.vparams.components[p.Component]
	s.vparams.mu.Unlock()
	s.persist(store.KindParam, k, p)
	if c != nil {
		c.Changed(p, false)
	}
	return !existed
}

// deleteParameter removes a parameter on this node and tells its component.
func (s *Server) deleteParameter(component, vhost, name string) error {
	k := paramKey(component, vhost, name)
	s.vparams.mu.Lock()
	p, ok := s.vparams.byKey[k]
	delete(s.vparams.byKey, k)
	c := s.vparams.components[component]
	s.vparams.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if s.store != nil {
		s.store.DeleteDef(store.KindParam, k)
		s.store.Flush()
	}
	if c != nil {
		c.Changed(p, true)
	}
	return nil
}

// dropVhostParameters removes the parameters of a deleted vhost.
func (s *Server) dropVhostParameters(vhost string) {
	for _, p := range s.ParametersOf("", vhost) {
		s.deleteParameter(p.Component, p.Vhost, p.Name) // ErrNotFound: already gone
	}
}

// restoreParameters loads the stored parameters; values keep their JSON
// numbers as json.Number, as the management API reads them.
func (s *Server) restoreParameters() error {
	var ps []Parameter
	err := s.store.Defs(store.KindParam, func(name string, raw []byte) error {
		var p Parameter
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(&p); err != nil {
			return fmt.Errorf("parameter %q: %w", name, err)
		}
		ps = append(ps, p)
		return nil
	})
	if err != nil {
		return err
	}
	for _, p := range ps {
		s.vparams.mu.Lock()
		if s.vparams.byKey == nil {
			s.vparams.byKey = map[string]Parameter{}
		}
		s.vparams.byKey[paramKey(p.Component, p.Vhost, p.Name)] = p
		c := s.vparams.components[p.Component]
		s.vparams.mu.Unlock()
		if c != nil {
			c.Changed(p, false)
		}
	}
	return nil
}

// applyParameter applies a replicated param.put or param.delete (meta.go);
// the component travels in the command's User field.
func (s *Server) applyParameter(c *metaCmd) metaResult {
	if c.Op == "param.delete" {
		return resultOf(false, s.deleteParameter(c.User, c.Vhost, c.Name))
	}
	if s.Vhost(c.Vhost) == nil {
		return resultOf(false, fmt.Errorf("vhost %q: %w", c.Vhost, ErrNotFound))
	}
	return resultOf(s.putParameter(Parameter{Component: c.User, Vhost: c.Vhost, Name: c.Name, Value: c.Value}), nil)
}
