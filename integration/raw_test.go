package integration

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// rawConn is a hand-driven AMQP client for what libraries will not send.
type rawConn struct {
	t  testing.TB
	b  *broker
	nc net.Conn
	fr *amqp.FrameReader
}

func dialRaw(t testing.TB, b *broker) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", b.addr)
	require.NoError(t, err)
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, b: b, nc: nc, fr: amqp.NewFrameReader(bufio.NewReader(nc), 1<<20)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	_, err := r.nc.Write(b)
	require.NoError(r.t, err)
}

func (r *rawConn) send(ch uint16, m amqp.Method) { r.write(amqp.AppendMethodFrame(nil, ch, m)) }

// next reads the next non-heartbeat method.
func (r *rawConn) next() amqp.Method {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		require.NoError(r.t, err)
		if f.Type == amqp.FrameHeartbeat {
			continue
		}
		require.Equal(r.t, uint8(amqp.FrameMethod), f.Type)
		m, err := amqp.DecodeMethod(f.Payload)
		require.NoError(r.t, err)
		return m
	}
}

// plain is the PLAIN response for the broker's user with password pass.
func (r *rawConn) plain(pass string) string { return "\x00" + r.b.user + "\x00" + pass }

// open performs the handshake with the given tune-ok, into the test's vhost.
func (r *rawConn) open(tune amqp.ConnectionTuneOk) *amqp.ConnectionStart {
	r.t.Helper()
	r.write(amqp.ProtocolHeader)
	start := r.next().(*amqp.ConnectionStart)
	r.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: r.plain(r.b.pass), Locale: "en_US",
		ClientProperties: amqp.Table{"capabilities": amqp.Table{"consumer_cancel_notify": true}}})
	r.next() // tune
	r.send(0, &tune)
	r.send(0, &amqp.ConnectionOpen{VirtualHost: r.b.vhost})
	_, ok := r.next().(*amqp.ConnectionOpenOk)
	require.True(r.t, ok)
	return start
}

func (r *rawConn) openDefault() {
	r.open(amqp.ConnectionTuneOk{ChannelMax: 2047, FrameMax: 131072})
}

// dialChannel dials, opens the connection and opens channel 1.
func dialChannel(t testing.TB, b *broker) *rawConn {
	t.Helper()
	r := dialRaw(t, b)
	r.openDefault()
	r.send(1, &amqp.ChannelOpen{})
	_, ok := r.next().(*amqp.ChannelOpenOk)
	require.True(t, ok)
	return r
}

// expectClose reads until a connection.close and returns it.
func (r *rawConn) expectClose() *amqp.ConnectionClose {
	r.t.Helper()
	for {
		m := r.next()
		if c, ok := m.(*amqp.ConnectionClose); ok {
			return c
		}
	}
}

// expectEnd asserts the server closes the socket, after at most a
// connection.close with code (and whatever frames came before it).
func (r *rawConn) expectEnd(code uint16) {
	r.t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			var ne net.Error
			require.False(r.t, errors.As(err, &ne) && ne.Timeout(), "socket still open")
			return
		}
		if f.Type != amqp.FrameMethod || f.Channel != 0 {
			continue
		}
		m, err := amqp.DecodeMethod(f.Payload)
		require.NoError(r.t, err)
		if c, ok := m.(*amqp.ConnectionClose); ok {
			require.Equal(r.t, code, c.ReplyCode, c.ReplyText)
			r.send(0, &amqp.ConnectionCloseOk{})
			r.expectEOF()
			return
		}
	}
}

// expectEOF asserts the server closes the socket.
func (r *rawConn) expectEOF() {
	r.t.Helper()
	_, err := io.Copy(io.Discard, r.nc)
	var ne net.Error
	require.False(r.t, errors.As(err, &ne) && ne.Timeout(), "socket still open")
}

// stillServes checks that a normal client works.
func stillServes(t *testing.T, b *broker) {
	t.Helper()
	_, ch := b.channel(t)
	q, err := ch.QueueDeclare("", false, false, true, false, nil)
	require.NoError(t, err)
	publish(t, ch, "", q.Name, body("ok"))
	eventually(t, func() bool { return getBody(t, ch, q.Name) == "ok" }, "normal client works")
}

func TestServerPropertiesAndMechanisms(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	start := r.open(amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096})
	require.Equal(t, uint8(0), start.VersionMajor)
	require.Equal(t, uint8(9), start.VersionMinor)
	require.Equal(t, "PLAIN AMQPLAIN", start.Mechanisms)
	require.Equal(t, "en_US", start.Locales)
	for _, k := range []string{"product", "version", "platform"} {
		require.Contains(t, start.ServerProperties, k)
	}
	caps := start.ServerProperties["capabilities"].(amqp.Table)
	for _, k := range []string{"publisher_confirms", "exchange_exchange_bindings", "basic.nack", "consumer_cancel_notify",
		"connection.blocked", "consumer_priorities", "authentication_failure_close", "per_consumer_qos", "direct_reply_to"} {
		require.Equal(t, true, caps[k], k)
	}
}

func TestWrongProtocolHeader(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, hdr := range []string{"AMQP\x01\x01\x00\x0a", "AMQP\x00\x00\x0a\x00", "GET / HTTP/1.1\r\n\r\n"} {
		r := dialRaw(t, b)
		r.write([]byte(hdr))
		got := make([]byte, 8)
		_, err := io.ReadFull(r.nc, got)
		require.NoError(t, err)
		require.Equal(t, "AMQP\x00\x00\x09\x01", string(got))
		r.expectEOF()
	}
	stillServes(t, b)
}

func TestHostileFrames(t *testing.T) {
	warrenOnly(t, "sets a 300 ms handshake timeout (RabbitMQ's is 10 s) for the silent and truncated clients")
	b := startBroker(t, server.Config{HandshakeTimeout: 300 * time.Millisecond})
	// A 4 GiB frame before login, a bad frame end, garbage, truncation + silence.
	for name, payload := range map[string][]byte{
		"4GiB frame":    append(append([]byte{}, amqp.ProtocolHeader...), 1, 0, 0, 0xff, 0xff, 0xff, 0xff),
		"bad frame end": append(append([]byte{}, amqp.ProtocolHeader...), 8, 0, 0, 0, 0, 0, 0, 0x00),
		"garbage":       append(append([]byte{}, amqp.ProtocolHeader...), []byte(strings.Repeat("\xde\xad", 300))...),
		"truncated":     append(append([]byte{}, amqp.ProtocolHeader...), 1, 0, 0, 0, 0, 0, 50, 0, 10),
		"silence":       nil,
	} {
		r := dialRaw(t, b)
		r.write(payload)
		r.nc.SetDeadline(time.Now().Add(5 * time.Second))
		r.expectEOF()
		_ = name
	}
	stillServes(t, b)
}

func TestFrameErrorsAfterOpen(t *testing.T) {
	b := startBroker(t, server.Config{})

	r := dialRaw(t, b)
	r.open(amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096})
	r.send(1, &amqp.ChannelOpen{})
	r.next()
	big := amqp.AppendFrameHeader(nil, amqp.FrameBody, 1, 5000)
	r.write(append(big, make([]byte, 5001)...))
	require.Equal(t, uint16(amqp.FrameError), r.expectClose().ReplyCode)

	r = dialRaw(t, b)
	r.openDefault()
	r.send(5, &amqp.QueueDeclare{Queue: "x"})
	c := r.expectClose()
	require.Equal(t, uint16(amqp.ChannelError), c.ReplyCode)
	require.Equal(t, "CHANNEL_ERROR - expected 'channel.open'", c.ReplyText)

	r = dialRaw(t, b)
	r.openDefault()
	r.send(1, &amqp.ChannelOpen{})
	r.next()
	r.write(amqp.AppendContent(nil, 1, amqp.AppendContentHeader(nil, 1, &amqp.Properties{}), []byte("x"), 4096))
	require.Equal(t, uint16(amqp.UnexpectedFrame), r.expectClose().ReplyCode)

	r = dialRaw(t, b)
	r.openDefault()
	r.send(1, &amqp.ChannelOpen{})
	r.next()
	r.send(1, &amqp.ChannelOpen{})
	require.Equal(t, uint16(amqp.ChannelError), r.expectClose().ReplyCode)

	// An unknown method ends the connection: RabbitMQ's connection process
	// exits without a connection.close; one sent first must say 503.
	r = dialRaw(t, b)
	r.openDefault()
	r.write(amqp.AppendFrameHeader(nil, amqp.FrameMethod, 0, 4))
	r.write([]byte{0, 99, 0, 1, amqp.FrameEnd})
	r.expectEnd(amqp.CommandInvalid)

	stillServes(t, b)
}

func TestChannelMaxEnforced(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	r.open(amqp.ConnectionTuneOk{ChannelMax: 2, FrameMax: 4096})
	r.send(1, &amqp.ChannelOpen{})
	r.next()
	r.send(2, &amqp.ChannelOpen{})
	r.next()
	r.send(3, &amqp.ChannelOpen{})
	require.Equal(t, uint16(amqp.NotAllowed), r.expectClose().ReplyCode)
}

func TestTuneRefusals(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, tune := range []amqp.ConnectionTuneOk{
		{ChannelMax: 0, FrameMax: 4096},
		{ChannelMax: 10, FrameMax: 1024},
		{ChannelMax: 10, FrameMax: 1 << 24},
		{ChannelMax: 4000, FrameMax: 4096},
	} {
		r := dialRaw(t, b)
		r.write(amqp.ProtocolHeader)
		r.next()
		r.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: r.plain(b.pass), Locale: "en_US"})
		r.next()
		r.send(0, &tune)
		r.send(0, &amqp.ConnectionOpen{VirtualHost: b.vhost})
		r.expectEOF()
	}
}

func TestLoginFailures(t *testing.T) {
	b := startBroker(t, server.Config{})
	_, err := amqp091.Dial(b.vurl(b.user, "wrong", b.vhost))
	require.ErrorIs(t, err, amqp091.ErrCredentials)

	// A client that announces authentication_failure_close gets a 403 close.
	r := dialRaw(t, b)
	r.write(amqp.ProtocolHeader)
	r.next()
	r.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: r.plain("bad"), Locale: "en_US",
		ClientProperties: amqp.Table{"capabilities": amqp.Table{"authentication_failure_close": true}}})
	c403 := r.expectClose()
	require.Equal(t, uint16(amqp.AccessRefused), c403.ReplyCode)
	require.True(t, strings.HasPrefix(c403.ReplyText, "ACCESS_REFUSED - Login was refused"), c403.ReplyText)

	_, err = amqp091.Dial(b.vurl(b.user, b.pass, b.name("nope")))
	require.Error(t, err)

	// AMQPLAIN works too.
	c, err := amqp091.DialConfig(b.url, amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: b.user, Password: b.pass}}})
	require.NoError(t, err)
	c.Close()

	// Without the capability the socket just closes.
	r = dialRaw(t, b)
	r.write(amqp.ProtocolHeader)
	r.next()
	r.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: r.plain("bad"), Locale: "en_US"})
	r.expectEOF()
}

func TestUnknownVhost(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	r.write(amqp.ProtocolHeader)
	r.next()
	r.send(0, &amqp.ConnectionStartOk{Mechanism: "PLAIN", Response: r.plain(b.pass), Locale: "en_US"})
	r.next()
	r.send(0, &amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096})
	r.send(0, &amqp.ConnectionOpen{VirtualHost: ""})
	c := r.expectClose()
	require.Equal(t, uint16(amqp.NotAllowed), c.ReplyCode)
	require.Contains(t, c.ReplyText, "vhost")
}

func TestHeartbeatsBothWays(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	r.open(amqp.ConnectionTuneOk{ChannelMax: 10, FrameMax: 4096, Heartbeat: 1})
	// The server sends heartbeats on an idle connection.
	r.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	f, err := r.fr.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, uint8(amqp.FrameHeartbeat), f.Type)
	// A silent client is dropped after about two intervals.
	start := time.Now()
	r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	r.expectEOF()
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestServerGeneratedConsumerTag(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialChannel(t, b)
	r.send(1, &amqp.QueueDeclare{Queue: "", Exclusive: true})
	r.next()
	r.send(1, &amqp.BasicConsume{Queue: ""})
	ok := r.next().(*amqp.BasicConsumeOk)
	require.True(t, strings.HasPrefix(ok.ConsumerTag, "amq.ctag-"), ok.ConsumerTag)
}

func TestNotImplementedFlags(t *testing.T) {
	b := startBroker(t, server.Config{})
	for _, m := range []amqp.Method{
		&amqp.ChannelFlow{Active: false},
		&amqp.BasicPublish{Exchange: "", RoutingKey: "x", Immediate: true},
	} {
		r := dialRaw(t, b)
		r.openDefault()
		r.send(1, &amqp.ChannelOpen{})
		r.next()
		r.send(1, m)
		if m.HasContent() { // RabbitMQ looks at a publish once its content is in
			r.write(amqp.AppendContent(nil, 1, amqp.AppendContentHeader(nil, 1, &amqp.Properties{}), []byte("x"), 4096))
		}
		c := r.expectClose()
		require.Equal(t, uint16(amqp.NotImplemented), c.ReplyCode, m.Name())
	}
}

func TestUpdateSecret(t *testing.T) {
	b := startBroker(t, server.Config{})
	c := b.dial(t)
	require.NoError(t, c.UpdateSecret("new-secret", "rotation"))
	_, err := c.Channel()
	require.NoError(t, err, "the connection carries on")
}

func TestShutdownClosesConnections(t *testing.T) {
	warrenOnly(t, "shuts the broker down with Server.Shutdown")
	b := startBroker(t, server.Config{})
	c := b.dial(t)
	closed := c.NotifyClose(make(chan *amqp091.Error, 1))
	go b.Shutdown(t.Context())
	select {
	case e := <-closed:
		require.NotNil(t, e)
		require.Equal(t, 320, e.Code)
		require.Contains(t, e.Reason, "CONNECTION_FORCED")
	case <-timeout():
		t.Fatal("no connection.close on shutdown")
	}
}

// A channel that deletes a queue it consumes from gets queue.delete-ok
// before the basic.cancel for its consumer, as from RabbitMQ (amqplib's
// suite depends on it).
func TestDeleteOkBeforeCancelNotification(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialRaw(t, b)
	r.openDefault()
	r.send(1, &amqp.ChannelOpen{})
	r.next()
	r.send(1, &amqp.QueueDeclare{Queue: "doomed"})
	r.next()
	r.send(1, &amqp.BasicConsume{Queue: "doomed", ConsumerTag: "c1"})
	r.next()
	r.send(1, &amqp.QueueDelete{Queue: "doomed"})
	_, ok := r.next().(*amqp.QueueDeleteOk)
	require.True(t, ok, "delete-ok first")
	c, ok := r.next().(*amqp.BasicCancel)
	require.True(t, ok, "then the cancel notification")
	require.Equal(t, "c1", c.ConsumerTag)
}

// TestCrossedChannelClose: the client sends its own channel.close after
// ours crossed it (amqp091-go does when Channel.Close races a channel
// error): it gets a close-ok, its close-ok for ours ends the channel, and
// the channel id is reusable. A close-ok for a channel that is not open, or
// a channel.close on a channel already closed, is a connection error 504,
// as from RabbitMQ.
func TestCrossedChannelClose(t *testing.T) {
	b := startBroker(t, server.Config{})
	r := dialChannel(t, b)
	r.send(1, &amqp.ExchangeDeclare{Exchange: "nope", Passive: true})
	cl, ok := r.next().(*amqp.ChannelClose)
	require.True(t, ok)
	require.Equal(t, uint16(amqp.NotFound), cl.ReplyCode)
	r.send(1, &amqp.ChannelClose{ReplyCode: 200, ReplyText: "Goodbye"})
	r.send(1, &amqp.ChannelCloseOk{})
	_, ok = r.next().(*amqp.ChannelCloseOk)
	require.True(t, ok, "crossed channel.close answered with close-ok")
	r.send(1, &amqp.ChannelOpen{})
	_, ok = r.next().(*amqp.ChannelOpenOk)
	require.True(t, ok, "channel id reusable, connection still open")
	r.send(1, &amqp.QueueDeclare{Queue: "crossed"})
	_, ok = r.next().(*amqp.QueueDeclareOk)
	require.True(t, ok)

	for name, stray := range map[string]func(r *rawConn){
		"close-ok on a channel never opened": func(r *rawConn) { r.send(3, &amqp.ChannelCloseOk{}) },
		"close after close-ok": func(r *rawConn) {
			r.send(1, &amqp.ExchangeDeclare{Exchange: "nope", Passive: true})
			_, ok := r.next().(*amqp.ChannelClose)
			require.True(t, ok)
			r.send(1, &amqp.ChannelCloseOk{})
			r.send(1, &amqp.ChannelClose{ReplyCode: 200, ReplyText: "Goodbye"})
		},
	} {
		r := dialChannel(t, b)
		stray(r)
		if name == "close after close-ok" && !external() {
			// RabbitMQ answers 504; Warren answers close-ok, lenient with
			// the race amqp091-go's Channel.Close runs into
			// (TestChannelExceptionWithCloseIssue43 of its own suite).
			_, ok := r.next().(*amqp.ChannelCloseOk)
			require.True(t, ok, name)
			continue
		}
		c := r.expectClose()
		require.Equal(t, uint16(amqp.ChannelError), c.ReplyCode, name)
		require.Equal(t, "CHANNEL_ERROR - expected 'channel.open'", c.ReplyText, name)
	}
	stillServes(t, b)
}
