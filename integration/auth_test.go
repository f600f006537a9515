package integration

import (
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	amqpw "github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// dialFrom connects to addr from a given local address (e.g. 127.0.0.2).
func dialFrom(local string) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
		return d.Dial(network, addr)
	}
}

func TestFailedLoginsAreRateLimitedPerSourceAndLogged(t *testing.T) {
	warrenOnly(t, "rate-limits failed logins per source, a Warren feature (server.Config) with its log")
	core, logs := observer.New(zapcore.InfoLevel)
	b := startBroker(t, server.Config{Logger: zap.New(core), AuthFailureLimit: 3, AuthFailureWindow: 500 * time.Millisecond})
	b.PutUser("app", server.HashPassword("right-password"), nil)
	require.NoError(t, b.SetPermission("app", "/", server.Permission{Configure: ".*", Write: ".*", Read: ".*"}))
	dial := func(pass, from string) error {
		c, err := amqp.DialConfig("amqp://app:"+pass+"@"+b.addr+"/", amqp.Config{Dial: dialFrom(from)})
		if err == nil {
			c.Close()
		}
		return err
	}
	for range 3 {
		amqpErr(t, dial("guessed-wrong", "127.0.0.1"), 403)
	}
	// The limit is reached: even the right password is refused, with a
	// reason for clients that take one (amqp091-go reports its own text).
	amqpErr(t, dial("right-password", "127.0.0.1"), 403)
	r := dialRaw(t, b)
	r.write(amqpw.ProtocolHeader)
	r.next() // start
	r.send(0, &amqpw.ConnectionStartOk{Mechanism: "PLAIN", Response: "\x00app\x00right-password", Locale: "en_US",
		ClientProperties: amqpw.Table{"capabilities": amqpw.Table{"authentication_failure_close": true}}})
	cl, ok := r.next().(*amqpw.ConnectionClose)
	require.True(t, ok)
	require.Equal(t, uint16(403), cl.ReplyCode)
	require.Equal(t, "ACCESS_REFUSED - too many failed logins from 127.0.0.1; try again later", cl.ReplyText)
	// Another source is not affected.
	require.NoError(t, dial("right-password", "127.0.0.2"))
	// After the window, logins work again.
	time.Sleep(600 * time.Millisecond)
	require.NoError(t, dial("right-password", "127.0.0.1"))

	// Logged: each refusal with its source, the limit once; never a password.
	require.GreaterOrEqual(t, logs.FilterMessage("login refused").Len(), 3)
	require.Equal(t, 1, logs.FilterMessageSnippet("too many failed logins").Len())
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			line += " " + f.Key + "=" + f.String
		}
		require.False(t, strings.Contains(line, "password") && strings.Contains(line, "right-password") || strings.Contains(line, "guessed-wrong"),
			"a password in the log: %s", line)
	}
}

func TestGuestOnlyFromLoopbackNetworks(t *testing.T) {
	warrenOnly(t, "configures the loopback networks guest may come from (server.Config)")
	_, only1, _ := net.ParseCIDR("127.0.0.1/32")
	b := startBroker(t, server.Config{LoopbackNetworks: []*net.IPNet{only1}})
	c, err := amqp.DialConfig(b.url, amqp.Config{Dial: dialFrom("127.0.0.1")})
	require.NoError(t, err)
	c.Close()
	// 127.0.0.2 is outside the loopback networks configured here: remote.
	_, err = amqp.DialConfig(b.url, amqp.Config{Dial: dialFrom("127.0.0.2")})
	amqpErr(t, err, 403)
	// Other users may come from anywhere.
	b.PutUser("remote-ok", server.HashPassword("pw"), nil)
	require.NoError(t, b.SetPermission("remote-ok", "/", server.Permission{Configure: ".*", Write: ".*", Read: ".*"}))
	c, err = amqp.DialConfig("amqp://remote-ok:pw@"+b.addr+"/", amqp.Config{Dial: dialFrom("127.0.0.2")})
	require.NoError(t, err)
	c.Close()
}
