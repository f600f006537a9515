// Package integration drives Warren with real clients: amqp091-go in-process
// against a broker on 127.0.0.1:0, and a raw-frame client for what no
// library will send.
package integration

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
)

type broker struct {
	*server.Server
	url  string
	addr string
}

// startBroker runs a broker on a free loopback port until the test ends.
func startBroker(t testing.TB, cfg server.Config) *broker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(t, zaptest.Level(zapWarn))
	}
	s := server.New(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
	})
	addr := l.Addr().String()
	return &broker{Server: s, addr: addr, url: "amqp://guest:guest@" + addr + "/"}
}

func (b *broker) dial(t testing.TB) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(b.url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func (b *broker) channel(t testing.TB) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c := b.dial(t)
	ch, err := c.Channel()
	require.NoError(t, err)
	return c, ch
}

// amqpErr asserts err is an *amqp.Error with code.
func amqpErr(t testing.TB, err error, code int) *amqp.Error {
	t.Helper()
	require.Error(t, err)
	ae, ok := err.(*amqp.Error)
	require.True(t, ok, "want *amqp.Error, got %T %v", err, err)
	require.Equal(t, code, ae.Code, ae.Reason)
	return ae
}

// recv waits for one delivery.
func recv(t testing.TB, ds <-chan amqp.Delivery) amqp.Delivery {
	t.Helper()
	select {
	case d, ok := <-ds:
		require.True(t, ok, "delivery channel closed")
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
	}
	return amqp.Delivery{}
}

// none asserts no delivery arrives for a short while.
func none(t testing.TB, ds <-chan amqp.Delivery) {
	t.Helper()
	select {
	case d := <-ds:
		t.Fatalf("unexpected delivery %q", d.Body)
	case <-time.After(100 * time.Millisecond):
	}
}

func publish(t testing.TB, ch *amqp.Channel, ex, key string, p amqp.Publishing) {
	t.Helper()
	require.NoError(t, ch.PublishWithContext(context.Background(), ex, key, false, false, p))
}

func body(s string) amqp.Publishing { return amqp.Publishing{Body: []byte(s)} }

// getBody basic.gets one message and returns its body ("" when empty).
func getBody(t testing.TB, ch *amqp.Channel, q string) string {
	t.Helper()
	d, ok, err := ch.Get(q, true)
	require.NoError(t, err)
	if !ok {
		return ""
	}
	return string(d.Body)
}

// eventually polls cond until true or 5 s pass.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 5*time.Millisecond, msg)
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// closeReason turns amqp091-go's "channel/connection is not open" (the
// channel was closed by the broker before the call went out) into the
// broker's own reason, read from closed (a NotifyClose registered before
// the call that provoked it).
func closeReason(t testing.TB, closed <-chan *amqp.Error, err error) error {
	t.Helper()
	ae, ok := err.(*amqp.Error)
	if !ok || ae.Code != amqp.ChannelError || ae.Reason != "channel/connection is not open" {
		return err
	}
	select {
	case e := <-closed:
		require.NotNil(t, e, "closed without a reason")
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no close reason")
	}
	return err
}

// must returns v, failing the test on err: for the broker's (value, error)
// administration calls.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
