package server

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/store"
)

// Policies, as RabbitMQ has them: per vhost, a name, an unanchored regexp
// on object names, what they apply to, a priority and a definition. Of the
// matching policies only the highest-priority one applies (definitions are
// not merged), and a change applies at once to existing objects.

// Policy is one policy.
type Policy struct {
	Name       string         `json:"name"`
	Vhost      string         `json:"vhost"`
	Pattern    string         `json:"pattern"`
	ApplyTo    string         `json:"apply-to"`
	Priority   int            `json:"priority"`
	Definition map[string]any `json:"definition"`

	re *regexp.Regexp
}

func (p *Policy) appliesTo(kind, name string) bool {
	return (p.ApplyTo == "all" || p.ApplyTo == kind) && p.re.MatchString(name)
}

// PolicyError is a policy that failed validation.
type PolicyError struct{ Reason string }

func (e *PolicyError) Error() string { return "Validation failed\n\n" + e.Reason + "\n" }

// policyKeys are the definition keys Warren applies, with their checks.
var policyKeys = map[string]func(v any) (any, bool){
	"message-ttl":             nonNegInt,
	"expires":                 positiveInt,
	"max-length":              nonNegInt,
	"max-length-bytes":        nonNegInt,
	"delivery-limit":          nonNegInt,
	"consumer-timeout":        policyTimeout, // consumer_timeout.go
	"overflow":                oneOf("drop-head", "reject-publish", "reject-publish-dlx"),
	"dead-letter-exchange":    str,
	"dead-letter-routing-key": str,
	"alternate-exchange":      str,
	"queue-mode":              oneOf("default", "lazy"),                       // accepted; Warren pages every queue
	"queue-leader-locator":    oneOf("client-local", "balanced"),              // locator.go
	"queue-master-locator":    oneOf("client-local", "min-masters", "random"), // locator.go

	// A stream's (stream.go).
	"max-age":                       streamAge,
	"stream-max-segment-size-bytes": nonNegInt,
	// rabbitmq_federation's keys, checked by checkFederationPolicy (federation.go).
	"federation-upstream":         anyValue,
	"federation-upstream-set":     anyValue,
	"federation-upstream-pattern": anyValue,
}

func policyInt(v any) (int64, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	case float64:
		return int64(n), n == float64(int64(n))
	}
	return amqp.Int(v)
}

func nonNegInt(v any) (any, bool) {
	n, ok := policyInt(v)
	return n, ok && n >= 0
}

func positiveInt(v any) (any, bool) {
	n, ok := policyInt(v)
	return n, ok && n >= 1
}

func anyValue(v any) (any, bool) { return v, true }

func str(v any) (any, bool) {
	s, ok := v.(string)
	return s, ok
}

func oneOf(vals ...string) func(any) (any, bool) {
	return func(v any) (any, bool) {
		s, ok := v.(string)
		for _, x := range vals {
			if ok && s == x {
				return s, true
			}
		}
		return nil, false
	}
}

// normalize validates p and converts its definition's values (numbers to
// int64), with RabbitMQ's "Validation failed" reasons.
func (p *Policy) normalize() error {
	if p.Name == "" {
		return &PolicyError{"policy name must not be empty"}
	}
	if p.ApplyTo == "" {
		p.ApplyTo = "all"
	}
	switch p.ApplyTo {
	case "all", "queues", "exchanges":
	default:
		return &PolicyError{fmt.Sprintf("apply-to '%s' unrecognised; should be 'queues', 'exchanges' or 'all'", p.ApplyTo)}
	}
	re, err := regexp.Compile(p.Pattern)
	if err != nil {
		return &PolicyError{fmt.Sprintf("<<\"%s\">> is not a valid regular expression: %v", p.Pattern, err)}
	}
	p.re = re
	if len(p.Definition) == 0 {
		return &PolicyError{"no policy provided"}
	}
	def := make(map[string]any, len(p.Definition))
	var bad []string
	for k, v := range p.Definition {
		check, known := policyKeys[k]
		if !known {
			bad = append(bad, fmt.Sprintf("{<<\"%s\">>,%v} are not recognised policy settings", k, v))
			continue
		}
		nv, ok := check(v)
		if !ok {
			bad = append(bad, fmt.Sprintf("<<\"%s\">> has an invalid value %v", k, v))
			continue
		}
		def[k] = nv
	}
	bad = append(bad, checkFederationPolicy(p.Definition)...)
	if len(bad) > 0 {
		sort.Strings(bad)
		return &PolicyError{strings.Join(bad, "\n")}
	}
	p.Definition = def
	return nil
}

// winner is the policy that applies to an object: the highest priority,
// then the first name. v.mu must be held.
func (v *Vhost) policyFor(kind, name string) *Policy {
	var best *Policy
	for _, p := range v.policies {
		if !p.appliesTo(kind, name) {
			continue
		}
		if best == nil || p.Priority > best.Priority || p.Priority == best.Priority && p.Name < best.Name {
			best = p
		}
	}
	return best
}

func policyDef(p *Policy) map[string]any {
	if p == nil {
		return nil
	}
	return p.Definition
}

// exchangeAE is the alternate exchange in effect: the exchange's own
// argument wins over a policy's.
func exchangeAE(x *Exchange) string {
	if ae, ok := x.Args["alternate-exchange"].(string); ok {
		return ae
	}
	if x.policy != nil {
		if ae, ok := x.policy.Definition["alternate-exchange"].(string); ok {
			return ae
		}
	}
	return ""
}

// applyPolicies re-evaluates every queue and exchange of the vhost. Queue
// changes run outside the vhost lock (trimming may dead-letter).
func (v *Vhost) applyPolicies() {
	type change struct {
		q *Queue
		p *Policy
	}
	var changes []change
	v.mu.Lock()
	for _, x := range v.exchanges {
		if x.Name == "" {
			continue
		}
		x.policy = v.policyFor("exchanges", x.Name)
		x.AE = exchangeAE(x)
	}
	for _, q := range v.queues {
		p := v.policyFor("queues", q.Name)
		if p != q.policy.Load() {
			q.policy.Store(p)
			changes = append(changes, change{q, p})
		}
	}
	v.topologyChanged()
	v.mu.Unlock()
	for _, c := range changes {
		c.q.SetPolicy(policyDef(c.p))
	}
}

// putPolicy validates and stores a policy, applying it at once; created is
// false when it replaced one.
func (s *Server) putPolicy(p Policy) (created bool, err error) {
	if err := p.normalize(); err != nil {
		return false, err
	}
	s.mu.Lock()
	v := s.vhosts[p.Vhost]
	s.mu.Unlock()
	if v == nil {
		return false, fmt.Errorf("vhost %q: %w", p.Vhost, ErrNotFound)
	}
	v.mu.Lock()
	if v.policies == nil {
		v.policies = map[string]*Policy{}
	}
	_, existed := v.policies[p.Name]
	v.policies[p.Name] = &p
	v.mu.Unlock()
	s.persist(store.KindPolicy, policyKey(p.Vhost, p.Name), p)
	v.applyPolicies()
	return !existed, nil
}

// deletePolicy removes a policy; objects fall back to the next match.
func (s *Server) deletePolicy(vhost, name string) error {
	s.mu.Lock()
	v := s.vhosts[vhost]
	s.mu.Unlock()
	if v == nil {
		return ErrNotFound
	}
	v.mu.Lock()
	_, ok := v.policies[name]
	delete(v.policies, name)
	v.mu.Unlock()
	if !ok {
		return ErrNotFound
	}
	if s.store != nil {
		s.store.DeleteDef(store.KindPolicy, policyKey(vhost, name))
		s.store.Flush()
	}
	v.applyPolicies()
	return nil
}

// Policies lists the policies of vhost ("" for all), by vhost and name.
func (s *Server) Policies(vhost string) []Policy {
	var out []Policy
	for _, v := range s.vhostList(vhost) {
		v.mu.RLock()
		for _, p := range v.policies {
			out = append(out, *p)
		}
		v.mu.RUnlock()
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Vhost != out[j].Vhost {
			return out[i].Vhost < out[j].Vhost
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func policyKey(vhost, name string) string { return vhost + "\x00" + name }

// restorePolicies loads stored policies into their vhosts (before queues
// and exchanges are rebuilt, which then pick them up).
func (s *Server) restorePolicies() error {
	ps, err := loadRecords[Policy](s.store, store.KindPolicy)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range ps {
		v := s.vhosts[p.Vhost]
		if v == nil {
			continue
		}
		if err := p.normalize(); err != nil {
			return fmt.Errorf("stored policy %q: %w", p.Name, err)
		}
		if v.policies == nil {
			v.policies = map[string]*Policy{}
		}
		v.policies[p.Name] = &p
	}
	return nil
}

// queuePolicy is the definition for a queue being created. v.mu held.
func (v *Vhost) queuePolicy(name string) (*Policy, map[string]any) {
	p := v.policyFor("queues", name)
	return p, policyDef(p)
}
