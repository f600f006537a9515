// Package integration drives Warren with real clients: amqp091-go in-process
// against a broker on 127.0.0.1:0, and a raw-frame client for what no
// library will send.
//
// The tests that state RabbitMQ's behaviour also run against an external
// broker (make test-oracle runs them against RabbitMQ 3.10.8): with
// WARREN_TEST_AMQP_URL (and WARREN_TEST_API_URL for its management API)
// set, startBroker and startAPI target that broker instead of an in-process
// Warren. Each test then works in a vhost of its own, made for it and
// deleted after it, and suffixes the users and vhosts it creates (name), so
// that it does not depend on a fresh broker. Tests that need Warren itself
// (its configuration, its methods, its binary, its own features) skip there
// with warrenOnly.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

// The external broker under test, when set (see the package comment).
var (
	externalAMQP = os.Getenv("WARREN_TEST_AMQP_URL")
	externalAPI  = strings.TrimSuffix(os.Getenv("WARREN_TEST_API_URL"), "/")
)

func external() bool { return externalAMQP != "" }

// warrenOnly skips a test when the broker under test is not an in-process
// Warren, saying why it needs Warren. make test-oracle counts these skips by
// their "Warren-only:" prefix.
func warrenOnly(t testing.TB, why string) {
	t.Helper()
	if external() {
		t.Skip("Warren-only: " + why)
	}
}

// warrenOnlyElsewhere names the Warren-only tests in files this package's
// helpers do not own (they call startBroker first thing, which skips them).
var warrenOnlyElsewhere = map[string]string{}

type broker struct {
	*server.Server        // nil against an external broker
	url            string // the test's vhost as its user
	addr           string // host:port
	vhost          string // "/" in-process; a vhost of the test's own on an external broker
	user, pass     string
	sfx            string // name's suffix, unique to the test
	apiBase        string // the management API, started on first use in-process
}

// startBroker runs a broker on a free loopback port until the test ends, or
// returns the external broker with a fresh vhost for the test. cfg must be
// the zero Config (a Logger aside) unless the test called warrenOnly.
func startBroker(t testing.TB, cfg server.Config) *broker {
	t.Helper()
	if external() {
		if why := warrenOnlyElsewhere[t.Name()]; why != "" {
			warrenOnly(t, why)
		}
		plain := cfg
		plain.Logger = nil
		if !reflect.ValueOf(plain).IsZero() {
			t.Fatal("a test that configures Warren must call warrenOnly first")
		}
		return startExternal(t)
	}
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
	return localBroker(t, s, l.Addr().String())
}

// localBroker describes an in-process Warren serving on addr.
func localBroker(t testing.TB, s *server.Server, addr string) *broker {
	return &broker{Server: s, addr: addr, url: "amqp://guest:guest@" + addr + "/", vhost: "/",
		user: "guest", pass: "guest", sfx: suffix(t)}
}

// suffix is a short random token: names made with it cannot collide with
// another test's, or with what an earlier run left on a shared broker.
func suffix(t testing.TB) string {
	const abc = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 6)
	_, err := rand.Read(b)
	require.NoError(t, err)
	for i := range b {
		b[i] = abc[int(b[i])%len(abc)]
	}
	return string(b)
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9]+`)

// startExternal makes a vhost for the test on the external broker, gives
// the URL's user every permission in it, and deletes it (with everything
// in it) and the users and vhosts the test named with b.name afterwards.
func startExternal(t testing.TB) *broker {
	t.Helper()
	if externalAPI == "" {
		t.Fatal("WARREN_TEST_AMQP_URL needs WARREN_TEST_API_URL: the tests make their vhosts and users through it")
	}
	u, err := url.Parse(externalAMQP)
	require.NoError(t, err)
	pass, _ := u.User.Password()
	b := &broker{addr: u.Host, user: u.User.Username(), pass: pass, sfx: suffix(t), apiBase: externalAPI}
	b.vhost = b.name(unsafeName.ReplaceAllString(t.Name(), "-"))
	vpath := url.PathEscape(b.vhost)
	b.adminDo(t, 201, http.MethodPut, "/api/vhosts/"+vpath, nil)
	t.Cleanup(func() { b.sweep(t) })
	// RabbitMQ gives the vhost's creator every permission already (204).
	c := &apiClient{t: t, base: b.apiBase, user: b.user, pass: b.pass}
	r := c.do(http.MethodPut, "/api/permissions/"+vpath+"/"+url.PathEscape(b.user), map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	require.Contains(t, []int{201, 204}, r.status, string(r.raw))
	b.url = (&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host, Path: "/" + b.vhost}).String()
	return b
}

// name suffixes a user or vhost name with the test's token.
func (b *broker) name(base string) string { return base + "-" + b.sfx }

// sweep deletes the users and vhosts named with the test's token.
func (b *broker) sweep(t testing.TB) {
	for _, kind := range []string{"users", "vhosts"} {
		raw := b.adminDo(t, 200, http.MethodGet, "/api/"+kind, nil)
		var l []struct {
			Name string `json:"name"`
		}
		require.NoError(t, json.Unmarshal(raw, &l))
		for _, o := range l {
			if strings.HasSuffix(o.Name, "-"+b.sfx) {
				b.adminDo(t, 204, http.MethodDelete, "/api/"+kind+"/"+url.PathEscape(o.Name), nil)
			}
		}
	}
}

// adminDo is one management call as the broker's user, outside any test
// assertion helper (it also serves cleanups); it fails t on another status.
func (b *broker) adminDo(t testing.TB, status int, method, path string, body any) []byte {
	t.Helper()
	c := &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass}
	return c.expect(status, method, path, body).raw
}

// vurl is the AMQP URL of vhost as user.
func (b *broker) vurl(user, pass, vhost string) string {
	return (&url.URL{Scheme: "amqp", User: url.UserPassword(user, pass), Host: b.addr, Path: "/" + vhost}).String()
}

// api is the base URL of the broker's management API.
func (b *broker) api(t testing.TB) string {
	if b.apiBase == "" {
		hs := httptest.NewServer(mgmt.NewHandler(b.Server))
		t.Cleanup(hs.Close)
		b.apiBase = hs.URL
	}
	return b.apiBase
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

// eventually polls cond until true or waitLimit passes.
func eventually(t testing.TB, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, waitLimit(), 5*time.Millisecond, msg)
}

// waitLimit is how long eventually waits: RabbitMQ's management figures
// lag by its statistics interval (5 s), so an external broker gets longer.
func waitLimit() time.Duration {
	if external() {
		return 20 * time.Second
	}
	return 5 * time.Second
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
