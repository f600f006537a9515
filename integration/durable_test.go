package integration

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/store"
)

// durableBroker runs a broker on a store in dir; stop shuts both down
// cleanly, as SIGTERM does.
type durableBroker struct {
	*broker
	st   *store.Store
	stop func()
}

func startDurable(t *testing.T, dir string) *durableBroker {
	return startDurableCfg(t, dir, server.Config{})
}

func startDurableCfg(t *testing.T, dir string, cfg server.Config) *durableBroker {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zapWarn))
	st, err := store.Open(dir, log)
	require.NoError(t, err)
	cfg.Logger, cfg.Store = log, st
	s := server.New(cfg)
	require.NoError(t, s.Restore())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { s.Serve(l); close(done) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-done
		require.NoError(t, st.Close())
	}
	t.Cleanup(stop)
	addr := l.Addr().String()
	return &durableBroker{broker: localBroker(t, s, addr), st: st, stop: stop}
}

func TestRestartKeepsDurableDefinitionsAndPersistentMessages(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	b := startDurable(t, dir)
	conn, err := amqp.Dial(b.url)
	require.NoError(t, err)
	ch, _ := conn.Channel()
	require.NoError(t, ch.ExchangeDeclare("dx", "topic", true, false, false, false, amqp.Table{"alternate-exchange": "ae"}))
	require.NoError(t, ch.ExchangeDeclare("tx", "fanout", false, false, false, false, nil))
	_, err = ch.QueueDeclare("dq", true, false, false, false, amqp.Table{"x-max-length": int32(100)})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("tq", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("dq", "a.#", "dx", false, amqp.Table{"k": int8(1)}))
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	props := amqp.Publishing{
		DeliveryMode: amqp.Persistent, ContentType: "text/plain", Priority: 3, MessageId: "id-1",
		Headers: amqp.Table{"i": int32(7), "s": "x", "b": true, "nested": amqp.Table{"f": 1.5}},
	}
	for i := 1; i <= 4; i++ {
		p := props
		p.Body = []byte(fmt.Sprint("persistent-", i))
		require.NoError(t, ch.PublishWithContext(context.Background(), "dx", "a.b", false, false, p))
	}
	require.NoError(t, ch.PublishWithContext(context.Background(), "dx", "a.b", false, false, amqp.Publishing{Body: []byte("transient")}))
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "tq", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("in-transient-queue")}))
	for i := 0; i < 6; i++ {
		require.True(t, (<-confirms).Ack)
	}
	// Deliver (without ack) the first one: it must come back redelivered.
	d, ok, err := ch.Get("dq", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "persistent-1", string(d.Body))
	// Ack the second: it must not come back.
	d2, _, _ := ch.Get("dq", false)
	require.NoError(t, d2.Ack(false))
	conn.Close()
	b.stop()

	b = startDurable(t, dir)
	_, ch = b.channel(t)
	require.NoError(t, ch.ExchangeDeclarePassive("dx", "topic", true, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare("dx", "topic", true, false, false, false, amqp.Table{"alternate-exchange": "ae"}), "same arguments after restart")
	_, err = ch.QueueDeclare("dq", true, false, false, false, amqp.Table{"x-max-length": int64(100)})
	require.NoError(t, err, "x-max-length kept its value")
	var got []amqp.Delivery
	for {
		d, ok, err := ch.Get("dq", true)
		require.NoError(t, err)
		if !ok {
			break
		}
		got = append(got, d)
	}
	require.Len(t, got, 3, "persistent messages survive, the acked one and the transient one do not")
	require.Equal(t, "persistent-1", string(got[0].Body))
	require.True(t, got[0].Redelivered, "delivered before the restart")
	require.Equal(t, "persistent-3", string(got[1].Body))
	require.False(t, got[1].Redelivered, "never delivered")
	require.Equal(t, "persistent-4", string(got[2].Body))
	for _, g := range got {
		require.Equal(t, "text/plain", g.ContentType)
		require.Equal(t, uint8(3), g.Priority)
		require.Equal(t, "id-1", g.MessageId)
		require.Equal(t, int32(7), g.Headers["i"], "header field types as published")
		require.Equal(t, amqp.Table{"f": 1.5}, g.Headers["nested"])
		require.Equal(t, "dx", g.Exchange)
		require.Equal(t, "a.b", g.RoutingKey)
	}
	// The binding survived: new publishes route.
	publish(t, ch, "dx", "a.c", amqp.Publishing{DeliveryMode: 2, Body: []byte("after")})
	eventually(t, func() bool { return getBody(t, ch, "dq") == "after" }, "binding restored")

	conn2 := b.dial(t)
	ch2, _ := conn2.Channel()
	_, err = ch2.QueueDeclarePassive("tq", false, false, false, false, nil)
	amqpErr(t, err, amqp.NotFound)
	ch2, _ = conn2.Channel()
	require.Error(t, ch2.ExchangeDeclarePassive("tx", "fanout", false, false, false, false, nil))
}

func TestRestartAfterDeletesForgets(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	b := startDurable(t, dir)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("gone", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDeclare("gx", "direct", true, false, false, false, nil))
	require.NoError(t, ch.QueueBind("gone", "k", "gx", false, nil))
	publish(t, ch, "gx", "k", amqp.Publishing{DeliveryMode: 2, Body: []byte("x")})
	_, err = ch.QueueDelete("gone", false, false, false)
	require.NoError(t, err)
	require.NoError(t, ch.ExchangeDelete("gx", false, false))
	b.stop()

	b = startDurable(t, dir)
	conn := b.dial(t)
	ch, _ = conn.Channel()
	_, err = ch.QueueDeclarePassive("gone", true, false, false, false, nil)
	amqpErr(t, err, amqp.NotFound)
	ch, _ = conn.Channel()
	amqpErr(t, ch.ExchangeDeclarePassive("gx", "direct", true, false, false, false, nil), amqp.NotFound)
}

func TestCorruptDataDirectoryIsAClearError(t *testing.T) {
	warrenOnly(t, "opens Warren's store; no broker involved")
	dir := t.TempDir()
	b := startDurable(t, dir)
	b.stop()
	// Overwrite Badger's manifest with garbage.
	require.NoError(t, writeFile(dir+"/MANIFEST", []byte("this is not a manifest")))
	_, err := store.Open(dir, nil)
	require.Error(t, err)
	require.Contains(t, err.Error(), dir)
}

func TestRestartKeepsVhostsUsersAndPermissions(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	b := startDurable(t, dir)
	require.True(t, must(b.AddVhost("billing")))
	require.False(t, must(b.AddVhost("billing")))
	require.True(t, must(b.PutUser("alice", server.HashPassword("s3cret"), []string{"management"})))
	require.NoError(t, b.SetPermission("alice", "billing", server.Permission{Configure: "^inv", Write: ".*", Read: ".*"}))
	require.ErrorIs(t, b.SetPermission("alice", "nope", server.Permission{}), server.ErrNotFound)
	require.Error(t, b.SetPermission("alice", "billing", server.Permission{Configure: "("}), "bad regexp")
	aliceURL := "amqp://alice:s3cret@" + b.addr + "/billing"
	c, err := amqp.Dial(aliceURL)
	require.NoError(t, err)
	ch, _ := c.Channel()
	_, err = ch.QueueDeclare("invoices", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "invoices", false, false, amqp.Publishing{DeliveryMode: 2, Body: []byte("inv-1")}))
	_, err = ch.QueueDeclarePassive("invoices", true, false, false, false, nil)
	require.NoError(t, err)
	c.Close()
	// Same queue name in "/" is another queue.
	_, root := b.channel(t)
	_, err = root.QueueDeclarePassive("invoices", true, false, false, false, nil)
	amqpErr(t, err, amqp.NotFound)

	// Deleting a user closes its connections with 320.
	c, err = amqp.Dial(aliceURL)
	require.NoError(t, err)
	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	require.True(t, must(b.PutUser("bob", server.HashPassword("x"), nil)))
	require.NoError(t, b.DeleteUser("bob"))
	require.NoError(t, b.DeleteUser("guest"))
	b.stop()
	select {
	case e := <-closed:
		require.Equal(t, 320, e.Code)
	case <-timeout():
		t.Fatal("no close on shutdown")
	}

	b = startDurable(t, dir)
	require.Equal(t, []string{"/", "billing"}, b.VhostNames())
	u, ok := b.UserInfo("alice")
	require.True(t, ok)
	require.Equal(t, []string{"management"}, u.Tags)
	require.Equal(t, "^inv", u.Permissions["billing"].Configure)
	_, ok = b.UserInfo("guest")
	require.False(t, ok, "a deleted default user stays deleted")
	_, ok = b.UserInfo("bob")
	require.False(t, ok)
	c, err = amqp.Dial("amqp://alice:s3cret@" + b.addr + "/billing")
	require.NoError(t, err)
	defer c.Close()
	ch, _ = c.Channel()
	d, ok, err := ch.Get("invoices", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "inv-1", string(d.Body))
	_, err = amqp.Dial(b.url)
	require.Error(t, err, "guest is gone")

	require.NoError(t, b.DeleteVhost("billing"))
	b.stop()
	b = startDurable(t, dir)
	require.Equal(t, []string{"/"}, b.VhostNames())
}

// TTL deadlines, x-death headers and priorities survive a restart.
func TestRestartKeepsTTLDeadlinesDeathsAndPriorities(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	b := startDurable(t, dir)
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare("dead", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("dead", "", "dlx", false, nil))
	_, err = ch.QueueDeclare("work", true, false, false, false, amqp.Table{"x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("prio", true, false, false, false, amqp.Table{"x-max-priority": int32(9)})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("ttl", true, false, false, false, amqp.Table{"x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 10))
	pub := func(q string, p amqp.Publishing) {
		p.DeliveryMode = amqp.Persistent
		require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false, p))
		require.True(t, (<-confirms).Ack)
	}
	pub("work", amqp.Publishing{Body: []byte("poison")})
	for _, p := range []uint8{1, 7, 4} {
		pub("prio", amqp.Publishing{Priority: p, Body: []byte(fmt.Sprint(p))})
	}
	pub("ttl", amqp.Publishing{Expiration: "1500", Body: []byte("expires-later")})
	d, ok, err := ch.Get("work", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Reject(false))
	eventually(t, func() bool {
		q, err := ch.QueueDeclarePassive("dead", true, false, false, false, nil)
		return err == nil && q.Messages == 1
	}, "dead-lettered before the restart")
	publishedAt := time.Now()
	b.stop()

	b = startDurable(t, dir)
	_, ch = b.channel(t)
	dd, ok, err := ch.Get("dead", true)
	require.NoError(t, err)
	require.True(t, ok)
	death := dd.Headers["x-death"].([]any)[0].(amqp.Table)
	require.Equal(t, "rejected", death["reason"])
	require.Equal(t, "work", death["queue"])
	require.Equal(t, int64(1), death["count"])
	for _, want := range []string{"7", "4", "1"} {
		require.Equal(t, want, getBody(t, ch, "prio"), "priority order after restart")
	}
	// The TTL deadline was kept, not restarted: the message expires about
	// 1.5 s after it was published, before the restart.
	eventually(t, func() bool {
		d, ok, _ := ch.Get("dead", true)
		return ok && string(d.Body) == "expires-later"
	}, "expired after the restart and dead-lettered")
	require.Less(t, time.Since(publishedAt), 4*time.Second)
}
