package server

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The gate lets publishers through under its high marks, holds them above
// either (count or bytes), and opens only once both fall under the low
// marks.
func TestFlowGate(t *testing.T) {
	var f flowGate
	require.Nil(t, f.throttle())
	for range flowHighCount - 1 {
		f.take(16)
	}
	require.Nil(t, f.throttle(), "under the high marks")
	f.take(16)
	w := f.throttle()
	require.NotNil(t, w, "at the high count mark")
	require.Equal(t, w, f.throttle(), "one gate for every waiter")

	for range flowHighCount - flowLowCount {
		f.settle(16)
	}
	select {
	case <-w:
		t.Fatal("opened at the low mark, not under it")
	default:
	}
	f.settle(16)
	select {
	case <-w:
	case <-time.After(time.Second):
		t.Fatal("not opened under the low marks")
	}
	require.Nil(t, f.throttle())

	// Bytes: a few large publishes close it too.
	var g flowGate
	g.take(flowHighBytes)
	w = g.throttle()
	require.NotNil(t, w, "over the high bytes mark")
	g.take(100)
	g.settle(100)
	select {
	case <-w:
		t.Fatal("opened while over the low bytes mark")
	default:
	}
	g.settle(flowHighBytes)
	select {
	case <-w:
	case <-time.After(time.Second):
		t.Fatal("not opened once the bytes were answered")
	}
	require.Zero(t, g.bytes.Load())
	require.Zero(t, g.count.Load())
}

// Publishers racing with answers are never left waiting on a gate that
// nobody will open.
func TestFlowGateRace(t *testing.T) {
	var f flowGate
	done := make(chan struct{})
	answers := make(chan int64, 4*flowHighCount)
	go func() {
		defer close(done)
		for size := range answers {
			f.settle(size)
		}
	}()
	for i := range 20 * flowHighCount {
		size := int64(i % 1000)
		f.take(size)
		answers <- size
		if w := f.throttle(); w != nil {
			select {
			case <-w:
			case <-time.After(5 * time.Second):
				t.Fatalf("publish %d left waiting: count %d bytes %d", i, f.count.Load(), f.bytes.Load())
			}
		}
	}
	close(answers)
	<-done
	require.Zero(t, f.count.Load())
}
