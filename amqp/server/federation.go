package server

import (
	"fmt"
	"sync"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/exchange"
)

// What the broker itself does for federation (package federation runs the
// links): the x-federation-upstream exchange type, the policy keys, and a
// way for the links to hear that a vhost's topology changed.

// FederationUpstreamType is the exchange type a RabbitMQ downstream declares
// on its upstream (rabbitmq_federation's rabbit_federation_upstream_exchange):
// a fanout that drops a message which already made x-max-hops hops or
// already visited the downstream (x-downstream-name, x-downstream-vhost),
// so that federation loops end.
const FederationUpstreamType = "x-federation-upstream"

// Federation argument and header names (rabbit_federation.hrl).
const (
	fedMaxHopsArg         = "x-max-hops"
	fedDownstreamNameArg  = "x-downstream-name"
	fedDownstreamVhostArg = "x-downstream-vhost"
	// FederationHeader lists the hops a federated message made, the last
	// first: tables of uri, exchange or queue, redelivered, cluster-name
	// and vhost.
	FederationHeader = "x-received-from"
)

// validateUpstreamArgs checks x-max-hops as the plugin's validate/1 does:
// present and a long (64-bit signed, 'l').
func validateUpstreamArgs(args amqp.Table) error {
	v, ok := args[fedMaxHopsArg]
	if !ok {
		return amqp.Errorf(amqp.PreconditionFailed, "Argument %s missing", fedMaxHopsArg)
	}
	if _, ok := v.(int64); !ok {
		return amqp.Errorf(amqp.PreconditionFailed, "Argument %s must be of type long", fedMaxHopsArg)
	}
	return nil
}

// matcherOf is the matcher of an exchange kind (an x-delayed-message
// exchange's delayed type already substituted), with the arguments the
// federation upstream type reads.
func matcherOf(kind string, args amqp.Table) (exchange.Matcher[dest], bool) {
	if kind != FederationUpstreamType {
		return exchange.NewMatcher[dest](kind)
	}
	fan, _ := exchange.NewMatcher[dest](exchange.Fanout)
	m := &upstreamMatcher{Matcher: fan}
	m.maxHops, _ = args[fedMaxHopsArg].(int64)
	m.name, _ = args[fedDownstreamNameArg].(string)
	m.vhost, _ = args[fedDownstreamVhostArg].(string)
	return m, true
}

// upstreamMatcher routes an x-federation-upstream exchange.
type upstreamMatcher struct {
	exchange.Matcher[dest] // fanout
	maxHops                int64
	name, vhost            string // the downstream's; "" when not given
}

func (m *upstreamMatcher) Match(key string, headers amqp.Table, fn func(dest)) {
	if !ShouldForward(headers, m.maxHops, m.name, m.vhost) {
		return
	}
	m.Matcher.Match(key, headers, fn)
}

// ShouldForward is the plugin's should_forward: a message goes on to the
// downstream cluster name (in vhost) unless its x-received-from already
// lists maxHops hops or a hop from that cluster and vhost.
func ShouldForward(headers amqp.Table, maxHops int64, name, vhost string) bool {
	hops, ok := headers[FederationHeader].([]any)
	if !ok {
		return true
	}
	if int64(len(hops)) >= maxHops {
		return false
	}
	for _, h := range hops {
		t, ok := h.(amqp.Table)
		if !ok {
			continue
		}
		if t["cluster-name"] == name && t["vhost"] == vhost {
			return false
		}
	}
	return true
}

// federationPolicyKeys are the policy keys of rabbitmq_federation, of
// which a policy may hold one.
var federationPolicyKeys = []string{"federation-upstream", "federation-upstream-set", "federation-upstream-pattern"}

// checkFederationPolicy applies the plugin's validate_policy to a policy
// definition, with its texts.
func checkFederationPolicy(def map[string]any) []string {
	var bad []string
	n := 0
	for _, k := range federationPolicyKeys {
		v, ok := def[k]
		if !ok {
			continue
		}
		n++
		if _, isStr := v.(string); !isStr {
			what := map[string]string{"federation-upstream": "name", "federation-upstream-set": "set name", "federation-upstream-pattern": "pattern name"}[k]
			bad = append(bad, fmt.Sprintf("%v is not a valid federation upstream %s", v, what))
		}
	}
	if n > 1 {
		bad = append(bad, "cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together")
	}
	return bad
}

// EffectiveClusterName is the name this broker gives itself to other
// brokers (the cluster_name server property, federation's x-received-from
// and x-downstream-name): the cluster_name global parameter, else the node
// name, as RabbitMQ's cluster name defaults to its first node's name.
func (s *Server) EffectiveClusterName() string {
	if n := s.ClusterName(); n != "" {
		return n
	}
	if n := s.NodeName(); n != "" {
		return n
	}
	return "warren"
}

// topologyWatchers are told that a vhost's exchanges, queues, bindings or
// policies changed.
type topologyWatchers struct {
	mu  sync.Mutex // a leaf
	fns []func(vhost string)
}

// WatchTopology makes fn hear of every change to a vhost's exchanges,
// queues, bindings and policies, on this node (in a cluster every node
// applies every change). fn is called with the vhost's lock held: it must
// only note the vhost and return (a kick), never call into the server.
func (s *Server) WatchTopology(fn func(vhost string)) {
	s.watchers.mu.Lock()
	defer s.watchers.mu.Unlock()
	s.watchers.fns = append(s.watchers.fns, fn)
}

// topologyChanged tells the watchers. Any lock may be held.
func (v *Vhost) topologyChanged() {
	if v.srv == nil {
		return
	}
	w := &v.srv.watchers
	w.mu.Lock()
	fns := w.fns
	w.mu.Unlock()
	for _, fn := range fns {
		fn(v.Name)
	}
}
