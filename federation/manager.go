package federation

import (
	"cmp"
	"regexp"
	"strings"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/shovel"
)

// Options configure a Manager: Runs reports whether this node runs the
// links (a cluster runs them all on its metadata leader), as the shovels'.
type Options = shovel.Options

// Manager keeps one link per federated exchange or queue and upstream,
// while this node runs federation. It is the broker's
// "federation-upstream" component (and, through setComponent,
// "federation-upstream-set"); it learns of policies, exchanges and
// bindings through server.WatchTopology.
type Manager struct {
	srv  *server.Server
	log  *zap.Logger
	opts Options

	mu     sync.Mutex
	links  map[key]*link
	suffix map[key]string // the active internal exchange suffix of an exchange link
	closed bool

	kick chan struct{} // 1-slot: something changed, reconcile
	stop chan struct{} // closed by Close
	wg   sync.WaitGroup
}

// New makes the federation manager of srv and registers its components;
// register it before srv.Restore so that stored upstreams are known, and
// Start it once the broker serves.
func New(srv *server.Server, o Options) *Manager {
	o = o.WithDefaults()
	m := &Manager{srv: srv, log: o.Logger, opts: o, links: map[key]*link{}, suffix: map[key]string{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	srv.RegisterComponent(UpstreamComponent, m)
	srv.RegisterComponent(SetComponent, setComponent{m})
	srv.WatchTopology(func(string) { m.poke() })
	return m
}

func (m *Manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Validate checks an upstream (server.Component).
func (m *Manager) Validate(vhost, name string, value any) error { return ValidateUpstream(name, value) }

// Changed reconciles the links after an upstream changed (server.Component).
func (m *Manager) Changed(server.Parameter, bool) { m.poke() }

// setComponent is the "federation-upstream-set" component.
type setComponent struct{ m *Manager }

func (c setComponent) Validate(vhost, name string, value any) error { return ValidateSet(name, value) }
func (c setComponent) Changed(server.Parameter, bool)               { c.m.poke() }

// Start runs the links (on a cluster: while this node leads).
func (m *Manager) Start() {
	// Reconcile on a change, and when this node starts or stops running
	// the links.
	m.wg.Go(func() { m.opts.Watch(m.stop, m.kick, m.reconcile) })
}

// Close stops every link and waits for them.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.stop)
	m.mu.Unlock()
	m.wg.Wait()
	m.mu.Lock()
	var ls []*link
	for k, l := range m.links {
		l.pause() // they run again after the restart
		ls = append(ls, l)
		delete(m.links, k)
	}
	m.mu.Unlock()
	for _, l := range ls {
		<-l.done
	}
}

func (m *Manager) activeSuffix(k key) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.suffix[k]; s != "" {
		return s
	}
	return "A"
}

func (m *Manager) setActiveSuffix(k key, s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.suffix[k] = s
}

// want is one link the topology asks for.
type want struct {
	up  *Upstream
	tgt target
}

// reconcile starts, updates and stops links to match the policies,
// upstreams and topology.
func (m *Manager) reconcile(active bool) {
	desired := map[key]want{}
	if active {
		for _, vhost := range m.srv.VhostNames() {
			m.desiredIn(vhost, desired)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	for k, l := range m.links {
		if w, ok := desired[k]; !ok || !l.up.equal(w.up) {
			if !active || ok {
				l.pause() // another node runs it now, or a new link replaces it
			} else {
				l.cancel() // its exchange, queue, policy or upstream went
			}
			delete(m.links, k)
			if ok {
				// Replaced: the new link starts once this one ended.
				nl := newLink(m, k, w.up, w.tgt)
				m.links[k] = nl
				go nl.run(l.done)
			}
		}
	}
	for k, w := range desired {
		if l := m.links[k]; l != nil {
			l.setTarget(w.tgt)
			continue
		}
		l := newLink(m, k, w.up, w.tgt)
		m.links[k] = l
		go l.run(nil)
	}
}

// fedPolicy reports whether a policy definition federates.
func fedPolicy(def map[string]any) bool {
	for _, k := range []string{"federation-upstream", "federation-upstream-set", "federation-upstream-pattern"} {
		if _, ok := def[k].(string); ok {
			return true
		}
	}
	return false
}

// desiredIn adds the links vhost asks for.
func (m *Manager) desiredIn(vhost string, out map[key]want) {
	pols := map[string]map[string]any{}
	for _, p := range m.srv.Policies(vhost) {
		if fedPolicy(p.Definition) {
			pols[p.Name] = p.Definition
		}
	}
	if len(pols) == 0 {
		return
	}
	params := map[string]map[string]any{}
	var names []string
	for _, p := range m.srv.ParametersOf(UpstreamComponent, vhost) {
		if v, ok := p.Value.(map[string]any); ok {
			params[p.Name] = v
			names = append(names, p.Name)
		}
	}
	sets := map[string][]any{}
	for _, p := range m.srv.ParametersOf(SetComponent, vhost) {
		if v, ok := p.Value.([]any); ok {
			sets[p.Name] = v
		}
	}
	upstreams := func(def map[string]any) []*Upstream {
		var elems []map[string]any
		if n, ok := def["federation-upstream"].(string); ok {
			elems = append(elems, map[string]any{"upstream": n})
		} else if s, ok := def["federation-upstream-set"].(string); ok {
			if s == "all" {
				for _, n := range names {
					elems = append(elems, map[string]any{"upstream": n})
				}
			} else {
				for _, e := range sets[s] {
					if em, ok := e.(map[string]any); ok {
						elems = append(elems, em)
					}
				}
			}
		} else if pat, ok := def["federation-upstream-pattern"].(string); ok {
			if re, err := regexp.Compile(pat); err == nil {
				for _, n := range names {
					if re.MatchString(n) {
						elems = append(elems, map[string]any{"upstream": n})
					}
				}
			}
		}
		var out []*Upstream
		for _, e := range elems {
			n, _ := e["upstream"].(string)
			if u, ok := params[n]; ok {
				out = append(out, upstreamOf(n, u, e))
			}
		}
		return out
	}
	var bindings map[string][]server.BindingInfo // by source, read once
	for _, x := range m.srv.Exchanges(vhost) {
		def := pols[x.Policy]
		// The plugin federates neither the default exchange nor internal
		// ones (its own upstream exchanges among them).
		if def == nil || x.Name == "" || x.Internal {
			continue
		}
		if bindings == nil {
			bindings = map[string][]server.BindingInfo{}
			for _, b := range m.srv.Bindings(vhost) {
				bindings[b.Source] = append(bindings[b.Source], b)
			}
		}
		tgt := target{policy: x.Policy, xType: x.Type, durable: x.Durable,
			autoDelete: x.AutoDelete, internal: x.Internal, args: amqp.Table(x.Arguments), bindings: bindings[x.Name]}
		for _, u := range upstreams(def) {
			out[key{vhost, "exchange", x.Name, u.Name}] = want{u, tgt}
		}
	}
	for _, q := range m.srv.Queues(vhost) {
		if q.Policy == nil || !fedPolicy(q.Policy.Definition) || q.Exclusive {
			continue
		}
		if _, internal := q.Arguments["x-internal-purpose"]; internal {
			continue
		}
		tgt := target{policy: q.Policy.Name, queueArgs: amqp.Table(q.Arguments)}
		for _, u := range upstreams(q.Policy.Definition) {
			out[key{vhost, "queue", q.Name, u.Name}] = want{u, tgt}
		}
	}
}

// Restart starts the link with this id in vhost over, as the management
// API's restart does; false when there is no such link.
func (m *Manager) Restart(vhost, id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, l := range m.links {
		if k.vhost != vhost || l.id() != id {
			continue
		}
		l.pause()
		nl := newLink(m, k, l.up, l.target())
		m.links[k] = nl
		go nl.run(l.done)
		return true
	}
	return false
}

// Status lists this node's links in vhost ("" for all), by vhost, kind,
// name and upstream, as /api/federation-links shows them.
func (m *Manager) Status(vhost string) []Status {
	return shovel.Collect(&m.mu, m.links, func(k key) bool { return vhost == "" || k.vhost == vhost }, (*link).status,
		func(a, b Status) int {
			return cmp.Or(strings.Compare(a.Vhost, b.Vhost), strings.Compare(a.Type, b.Type),
				strings.Compare(a.Exchange+a.Queue, b.Exchange+b.Queue), strings.Compare(a.Upstream, b.Upstream))
		})
}
