package shovel

import (
	"cmp"
	"strings"
	"sync"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp/server"
)

// Component is the runtime-parameter component shovels are stored under.
const Component = "shovel"

type key struct{ vhost, name string }

// Manager keeps one worker per shovel parameter while this node runs
// shovels. It is the broker's "shovel" component (server.Component).
type Manager struct {
	srv  *server.Server
	log  *zap.Logger
	opts Options

	mu      sync.Mutex
	defs    map[key]*Def    // every valid shovel parameter, by vhost and name
	workers map[key]*worker // the ones running here
	started bool            // Start was called
	active  bool            // started, not closed, and this node runs shovels
	closed  bool

	stop chan struct{} // closed by Close: ends the Runs poller
	wg   sync.WaitGroup
}

// New makes the shovel manager of srv and registers it as the "shovel"
// component; register it before srv.Restore so that stored shovels are
// known, and Start it once the broker serves.
func New(srv *server.Server, o Options) *Manager {
	o = o.WithDefaults()
	m := &Manager{srv: srv, log: o.Logger, opts: o, defs: map[key]*Def{}, workers: map[key]*worker{}, stop: make(chan struct{})}
	srv.RegisterComponent(Component, m)
	return m
}

// Start runs the shovels (on a cluster: while this node leads).
func (m *Manager) Start() {
	m.mu.Lock()
	m.started = true
	m.mu.Unlock()
	if m.opts.Runs == nil {
		m.setActive(true)
		return
	}
	m.wg.Go(func() { m.opts.Watch(m.stop, nil, m.setActive) })
}

// Close stops every shovel and waits for them: their unacknowledged
// messages go back to their source queues.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	close(m.stop)
	var ws []*worker
	for k, w := range m.workers {
		w.cancel()
		ws = append(ws, w)
		delete(m.workers, k)
	}
	m.active = false
	m.mu.Unlock()
	m.wg.Wait()
	for _, w := range ws {
		<-w.done
	}
}

func (m *Manager) setActive(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	on = on && m.started && !m.closed
	if on == m.active {
		return
	}
	m.active = on
	if on {
		m.log.Info("running the shovels on this node", zap.Int("shovels", len(m.defs)))
	} else {
		m.log.Info("no longer running the shovels on this node")
	}
	for k := range m.defs {
		m.adjustLocked(k)
	}
	for k := range m.workers {
		m.adjustLocked(k)
	}
}

// Validate checks a shovel definition (server.Component).
func (m *Manager) Validate(vhost, name string, value any) error {
	_, err := Parse(name, value)
	return err
}

// Changed starts, restarts or stops a shovel as its parameter changes
// (server.Component).
func (m *Manager) Changed(p server.Parameter, deleted bool) {
	k := key{p.Vhost, p.Name}
	m.mu.Lock()
	defer m.mu.Unlock()
	if deleted {
		delete(m.defs, k)
	} else if d, err := Parse(p.Name, p.Value); err != nil {
		// Stored by an older version or another node with other rules.
		m.log.Warn("ignoring an invalid shovel", zap.String("vhost", p.Vhost), zap.String("name", p.Name), zap.Error(err))
		delete(m.defs, k)
	} else {
		m.defs[k] = d
	}
	m.adjustLocked(k)
}

// adjustLocked makes shovel k's worker match its definition: the old one
// (if any) stops, and a new one starts once the old one has ended.
//
// Lock must be held.
func (m *Manager) adjustLocked(k key) {
	old := m.workers[k]
	d := m.defs[k]
	if old != nil && (!m.active || d == nil || old.def != d) {
		old.cancel()
		delete(m.workers, k)
	} else if old != nil {
		return // unchanged
	}
	if d == nil || !m.active {
		return
	}
	w := newWorker(m, k, d)
	m.workers[k] = w
	var prev <-chan struct{}
	if old != nil {
		prev = old.done
	}
	go w.run(prev)
}

// Restart stops the shovel's worker and starts a new one, which connects
// at once; false when this node does not run that shovel.
func (m *Manager) Restart(vhost, name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{vhost, name}
	old := m.workers[k]
	if old == nil {
		return false
	}
	old.cancel()
	w := newWorker(m, k, old.def)
	m.workers[k] = w
	go w.run(old.done)
	return true
}

// finished deletes the parameter of a shovel that moved what its
// src-delete-after asked, as RabbitMQ's shovel deletes itself.
func (m *Manager) finished(w *worker) {
	err := m.srv.DeleteParameter(Component, w.key.vhost, w.key.name)
	if err != nil {
		m.log.Warn("deleting a finished shovel failed", zap.String("vhost", w.key.vhost), zap.String("name", w.key.name), zap.Error(err))
	}
}

// Status lists the shovels this node runs in vhost ("" for all), by vhost
// and name, as /api/shovels shows them.
func (m *Manager) Status(vhost string) []Status {
	return Collect(&m.mu, m.workers, func(k key) bool { return vhost == "" || k.vhost == vhost }, (*worker).status,
		func(a, b Status) int {
			return cmp.Or(strings.Compare(a.Vhost, b.Vhost), strings.Compare(a.Name, b.Name))
		})
}
