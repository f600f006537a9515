package integration

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
	"github.com/warren-mq/warren/queue"
)

func seqBody(i, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, uint64(i))
	return b
}

func publishConfirmed(t *testing.T, ch *amqp.Channel, confirms <-chan amqp.Confirmation, q string, i, size int, mode uint8) {
	t.Helper()
	require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false,
		amqp.Publishing{DeliveryMode: mode, Body: seqBody(i, size)}))
}

// drainInOrder consumes n messages from q and checks they come in publish
// order, once each.
func drainInOrder(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	ds, err := ch.Consume(q, "", true, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		d := recv(t, ds)
		require.Equal(t, uint64(i), binary.BigEndian.Uint64(d.Body), "%s message %d", q, i)
	}
	none(t, ds)
}

// Many queues filled round-robin share one memory budget: what they hold in
// memory stays near it however much they hold in all, the rest pages to
// disk, and every message comes back in order.
func TestMemoryBudgetBoundsManyQueues(t *testing.T) {
	const budget = 1 << 20
	b := startDurableCfg(t, t.TempDir(), server.Config{MemoryBudget: budget})
	_, ch := b.channel(t)
	const queues, per, size = 40, 250, 200 // 10,000 messages, ~3.6 MB in memory without the budget
	for i := 0; i < queues; i++ {
		_, err := ch.QueueDeclare(fmt.Sprint("bq-", i), i%2 == 0, false, false, false, nil)
		require.NoError(t, err)
	}
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, queues*per))
	for i := 0; i < per; i++ {
		for q := 0; q < queues; q++ {
			mode := amqp.Transient
			if i%2 == 0 {
				mode = amqp.Persistent
			}
			publishConfirmed(t, ch, confirms, fmt.Sprint("bq-", q), i, size, mode)
		}
	}
	for i := 0; i < queues*per; i++ {
		require.True(t, (<-confirms).Ack)
	}
	u, ok := b.MemoryUsage()
	require.True(t, ok)
	require.EqualValues(t, budget, u.Limit)
	require.EqualValues(t, queues*per, u.MemoryMessages+u.PagedMessages)
	require.Positive(t, u.PagedMessages)
	// Each queue stops growing in memory at its share once the budget is
	// full, so the sum stays within the budget plus one share per queue
	// (those that were still under theirs).
	require.LessOrEqual(t, u.MemoryBytes, int64(2*budget), "%+v", u)

	// /api/nodes shows the same figures.
	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/nodes", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var nodes []map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&nodes))
	resp.Body.Close()
	require.Len(t, nodes, 1)
	require.EqualValues(t, budget, nodes[0]["message_memory_budget"])
	require.EqualValues(t, u.PagedMessages, nodes[0]["messages_paged_out"])
	require.EqualValues(t, u.MemoryMessages, nodes[0]["messages_ram"])
	require.EqualValues(t, u.MemoryBytes, nodes[0]["message_bytes_ram"])
	require.EqualValues(t, u.PagedBytes, nodes[0]["message_bytes_paged_out"])
	require.Positive(t, nodes[0]["queues_paging"])
	for q := 0; q < queues; q++ {
		drainInOrder(t, ch, fmt.Sprint("bq-", q), per)
	}
	u, _ = b.MemoryUsage()
	require.Zero(t, u.MemoryMessages+u.PagedMessages, "%+v", u)
	require.Zero(t, u.MemoryBytes, "%+v", u)
}

// A deep idle queue that filled the budget while it was alone shrinks to a
// small head when another queue needs memory, and still delivers everything
// in order, after a restart too.
func TestMemoryBudgetShrinksIdleQueue(t *testing.T) {
	const budget = 1 << 20
	dir := t.TempDir()
	b := startDurableCfg(t, dir, server.Config{MemoryBudget: budget})
	_, ch := b.channel(t)
	for _, q := range []string{"idle", "busy"} {
		_, err := ch.QueueDeclare(q, q == "idle", false, false, false, nil)
		require.NoError(t, err)
	}
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 4000))
	const idleN, size = 1400, 500 // about 0.9 MB in memory: under the budget
	for i := 0; i < idleN; i++ {
		mode := amqp.Persistent
		if i%3 == 0 {
			mode = amqp.Transient // spilled by the shrink, not journaled before
		}
		publishConfirmed(t, ch, confirms, "idle", i, size, mode)
	}
	for i := 0; i < idleN; i++ {
		require.True(t, (<-confirms).Ack)
	}
	u, _ := b.MemoryUsage()
	require.Zero(t, u.PagedMessages, "%+v", u)
	const busyN = 2000
	for i := 0; i < busyN; i++ {
		publishConfirmed(t, ch, confirms, "busy", i, size, amqp.Transient)
	}
	for i := 0; i < busyN; i++ {
		require.True(t, (<-confirms).Ack)
	}
	// Without the shrink, the idle queue's 0.9 MB and the busy queue's
	// share (half the budget) would hold 1.4 MB; the budget may be
	// overshot by the last message that crossed it.
	eventually(t, func() bool { u, _ = b.MemoryUsage(); return u.MemoryBytes <= budget+budget/20 }, "the idle queue shrinks")
	require.EqualValues(t, idleN+busyN, u.MemoryMessages+u.PagedMessages)
	drainInOrder(t, ch, "busy", busyN)

	b.stop()
	b = startDurableCfg(t, dir, server.Config{MemoryBudget: budget})
	_, ch = b.channel(t)
	// Transient messages do not survive a restart; persistent ones all do.
	ds, err := ch.Consume("idle", "", true, false, false, false, nil)
	require.NoError(t, err)
	for i := 0; i < idleN; i++ {
		if i%3 == 0 {
			continue
		}
		d := recv(t, ds)
		require.Equal(t, uint64(i), binary.BigEndian.Uint64(d.Body))
	}
	none(t, ds)
}

// A deep queue of large messages reads its paged-out tail back a budget's
// worth at a time, not half a window of messages (300 messages of 64 KB
// would be 19 MB in memory at once with a 1 MB budget); both kinds of
// queue, spooled (transient) and journaled (durable).
func TestMemoryBudgetPagesLargeMessagesInByBytes(t *testing.T) {
	const budget = 1 << 20
	b := startDurableCfg(t, t.TempDir(), server.Config{MemoryBudget: budget})
	_, ch := b.channel(t)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 400))
	const n, size = 300, 64 << 10
	for _, q := range []struct {
		name string
		mode uint8
	}{{"large-transient", amqp.Transient}, {"large-durable", amqp.Persistent}} {
		_, err := ch.QueueDeclare(q.name, q.mode == amqp.Persistent, false, false, false, nil)
		require.NoError(t, err)
		for i := range n {
			publishConfirmed(t, ch, confirms, q.name, i, size, q.mode)
		}
		for range n {
			require.True(t, (<-confirms).Ack)
		}
		var u queue.Usage
		eventually(t, func() bool { u, _ = b.MemoryUsage(); return u.MemoryBytes <= 2*budget }, "the queue pages out")
		require.Positive(t, u.PagedMessages, "%+v", u)
		peak := int64(0)
		for i := range n {
			d, ok, err := ch.Get(q.name, true)
			require.NoError(t, err)
			require.True(t, ok, "%s message %d", q.name, i)
			require.Equal(t, uint64(i), binary.BigEndian.Uint64(d.Body), "%s message %d", q.name, i)
			u, _ = b.MemoryUsage()
			peak = max(peak, u.MemoryBytes)
		}
		// The budget plus the page-in that crossed it and one message.
		require.LessOrEqual(t, peak, int64(2*budget+size), "%s: in memory at the peak", q.name)
		t.Logf("%s: peak %d bytes in memory", q.name, peak)
	}
}
