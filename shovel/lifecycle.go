package shovel

import (
	"context"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The life of a shovel's worker and of a federation link is the same, and
// package federation takes it from here: a manager runs its tasks while
// this node runs them (Options, Watch), each task runs sessions one after
// another until it is stopped (Run), and the manager lists their statuses
// for the management API (Collect).

// Options configure a Manager, and package federation's.
type Options struct {
	Logger *zap.Logger
	// Runs reports whether this node runs the shovels (or the federation
	// links). A cluster runs them all on one node, the leader of its
	// metadata group; nil means always (a single node).
	Runs func() bool
	// Check is how often Runs is asked (default 1s).
	Check time.Duration
}

// WithDefaults fills in what o leaves unset.
func (o Options) WithDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Check <= 0 {
		o.Check = time.Second
	}
	return o
}

// Watch calls fn with whether this node runs the tasks, at once and then
// each time kick fires (nil: never) or Runs changes its answer (asked every
// Check), until stop is closed. It is a manager's goroutine.
func (o Options) Watch(stop, kick <-chan struct{}, fn func(active bool)) {
	t := time.NewTicker(o.Check)
	defer t.Stop()
	runs := func() bool { return o.Runs == nil || o.Runs() }
	active := runs()
	for {
		fn(active)
		for again := false; !again; {
			select {
			case <-stop:
				return
			case <-kick:
				again = true
			case <-t.C:
			}
			if now := runs(); now != active {
				active, again = now, true
			}
		}
	}
}

// Run is the loop of a task's goroutine: once prev (the task it replaces,
// nil for none) has ended, it calls attempt, which runs one session and
// says whether to try again and after how long, until attempt says no or
// ctx is done.
func Run(ctx context.Context, prev <-chan struct{}, attempt func() (again bool, wait time.Duration)) {
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
			return
		}
	}
	for {
		again, wait := attempt()
		if !again {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Collect lists status(t) for each task t of tasks whose key keep accepts,
// sorted by order. mu guards tasks and is held only while they are copied
// out, so that no task's own lock is ever taken under its manager's.
func Collect[K comparable, T, S any](mu *sync.Mutex, tasks map[K]T, keep func(K) bool, status func(T) S, order func(a, b S) int) []S {
	mu.Lock()
	ts := make([]T, 0, len(tasks))
	for k, t := range tasks {
		if keep(k) {
			ts = append(ts, t)
		}
	}
	mu.Unlock()
	out := make([]S, 0, len(ts))
	for _, t := range ts {
		out = append(out, status(t))
	}
	slices.SortFunc(out, order)
	return out
}
