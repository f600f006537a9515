package shovel

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// within fails the test if ch gives nothing in a long while (a hang, not
// a measure of speed).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s", what)
		var zero T
		return zero
	}
}

func TestWatchFollowsRunsAndKicks(t *testing.T) {
	var runs atomic.Bool
	calls := make(chan bool, 64)
	stop, kick, done := make(chan struct{}), make(chan struct{}, 1), make(chan struct{})
	o := Options{Runs: runs.Load, Check: time.Millisecond}.WithDefaults()
	require.NotNil(t, o.Logger)
	go func() {
		defer close(done)
		o.Watch(stop, kick, func(active bool) { calls <- active })
	}()
	require.False(t, within(t, calls, "first call"), "asked at once")
	runs.Store(true)
	require.True(t, within(t, calls, "call after Runs changed"))
	kick <- struct{}{}
	require.True(t, within(t, calls, "call after a kick"))
	runs.Store(false)
	require.False(t, within(t, calls, "call after Runs changed back"))
	close(stop)
	within(t, done, "return after stop")
	// Ticks alone, with Runs unchanged, call nothing.
	require.Empty(t, calls)
}

func TestWatchWithoutRunsIsActive(t *testing.T) {
	calls := make(chan bool, 1)
	stop, done := make(chan struct{}), make(chan struct{})
	o := Options{}.WithDefaults()
	require.Equal(t, time.Second, o.Check)
	go func() {
		defer close(done)
		o.Watch(stop, nil, func(active bool) { calls <- active })
	}()
	require.True(t, within(t, calls, "first call"))
	close(stop)
	within(t, done, "return after stop")
}

func TestRunWaitsForTheTaskItReplaces(t *testing.T) {
	prev := make(chan struct{})
	attempts := make(chan int, 8)
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(context.Background(), prev, func() (bool, time.Duration) {
			n++
			attempts <- n
			return n < 3, 0
		})
	}()
	require.Empty(t, attempts)
	close(prev)
	for i := 1; i <= 3; i++ {
		require.Equal(t, i, within(t, attempts, "attempt"))
	}
	within(t, done, "return once attempt says no")
	require.Empty(t, attempts)
}

func TestRunEndsWithItsContext(t *testing.T) {
	// Canceled while the task it replaces still runs: no attempt at all.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Run(ctx, make(chan struct{}), func() (bool, time.Duration) {
		t.Error("attempt called after cancel")
		return false, 0
	})

	// Canceled while waiting to try again.
	ctx, cancel = context.WithCancel(context.Background())
	attempts := make(chan struct{}, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, nil, func() (bool, time.Duration) {
			attempts <- struct{}{}
			return true, time.Hour
		})
	}()
	within(t, attempts, "first attempt")
	cancel()
	within(t, done, "return after cancel")
	require.Empty(t, attempts)
}

func TestCollectFiltersAndSorts(t *testing.T) {
	var mu sync.Mutex
	tasks := map[key]string{{"a", "x"}: "a/x", {"b", "y"}: "b/y", {"a", "w"}: "a/w", {"c", "z"}: "c/z"}
	got := Collect(&mu, tasks, func(k key) bool { return k.vhost != "b" }, strings.ToUpper, strings.Compare)
	require.Equal(t, []string{"A/W", "A/X", "C/Z"}, got)
	require.True(t, mu.TryLock(), "mu is released")
	mu.Unlock()
	require.Empty(t, Collect(&mu, map[key]string{}, func(key) bool { return true }, strings.ToUpper, strings.Compare))
}

// DialFirst tries the URIs from next on, around, and says what each did.
func TestDialFirstTriesEachURIFromNext(t *testing.T) {
	var eps []*Endpoint
	for _, u := range []string{"amqp://guest:guest@127.0.0.1:1", "amqp://guest:guest@127.0.0.1:2", "amqp://guest:guest@127.0.0.1:3"} {
		e, err := ParseURI(u)
		require.NoError(t, err)
		eps = append(eps, e)
	}
	_, _, err := DialFirst(context.Background(), nil, eps, 1, "/", nil)
	require.Error(t, err)
	msg := err.Error()
	i2, i3, i1 := strings.Index(msg, "127.0.0.1:2"), strings.Index(msg, "127.0.0.1:3"), strings.Index(msg, "127.0.0.1:1")
	require.True(t, i2 >= 0 && i3 > i2 && i1 > i3, "tried 2, 3, then 1: %s", msg)
	require.NotContains(t, msg, "guest", "credentials stay out of the error")

	_, _, err = DialFirst(context.Background(), nil, nil, 0, "/", nil)
	require.Error(t, err)
}
