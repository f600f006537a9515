package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// The consistent-hash and random exchange tests run against Warren, or
// against the broker at WARREN_TEST_AMQP_URL when it is set (a RabbitMQ with
// rabbitmq_consistent_hash_exchange and rabbitmq_random_exchange enabled),
// so that the same assertions check RabbitMQ's own plugins:
//
//	WARREN_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5675/ go test -run 'ConsistentHash|RandomExchange' ./integration
//
// pluginURL is the local form of an external-broker helper; names carry a
// random suffix and objects are exclusive or deleted, so runs against a
// shared broker do not collide.
func pluginURL(t *testing.T) (url string, external bool) {
	t.Helper()
	if u := os.Getenv("WARREN_TEST_AMQP_URL"); u != "" {
		return u, true
	}
	return startBroker(t, server.Config{}).url, false
}

func dialURL(t *testing.T, url string) (*amqp.Connection, *amqp.Channel) {
	t.Helper()
	c, err := amqp.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	require.NoError(t, err)
	return c, ch
}

func uniqueName(prefix string) string { return fmt.Sprintf("%s-%08x", prefix, rand.Uint32()) }

// hashSetup declares an exchange of kind with args and n exclusive queues
// bound with the given keys (weights for x-consistent-hash).
func hashSetup(t *testing.T, ch *amqp.Channel, kind string, args amqp.Table, keys ...string) (string, []string) {
	t.Helper()
	x := uniqueName("x")
	require.NoError(t, ch.ExchangeDeclare(x, kind, false, false, false, false, args))
	t.Cleanup(func() { ch.ExchangeDelete(x, false, false) })
	var qs []string
	for _, k := range keys {
		q, err := ch.QueueDeclare(uniqueName("q"), false, false, true, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(q.Name, k, x, false, nil))
		qs = append(qs, q.Name)
	}
	return x, qs
}

// publishAllConfirmed publishes each message and waits for its confirm, so
// that the queues hold every routed copy afterwards.
func publishAllConfirmed(t *testing.T, ch *amqp.Channel, x string, ps map[string]amqp.Publishing) {
	t.Helper()
	require.NoError(t, ch.Confirm(false))
	for key, p := range ps {
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), x, key, false, false, p)
		require.NoError(t, err)
		ok, err := dc.WaitContext(context.Background())
		require.NoError(t, err)
		require.True(t, ok)
	}
}

// drain takes every message of each queue: body → queue index.
func drain(t *testing.T, ch *amqp.Channel, qs []string) map[string][]int {
	t.Helper()
	where := map[string][]int{}
	for i, q := range qs {
		for {
			d, ok, err := ch.Get(q, true)
			require.NoError(t, err)
			if !ok {
				break
			}
			where[string(d.Body)] = append(where[string(d.Body)], i)
		}
	}
	return where
}

func keyed(n int, fn func(i int) amqp.Publishing) map[string]amqp.Publishing {
	ps := map[string]amqp.Publishing{}
	for i := range n {
		ps["key-"+strconv.Itoa(i)] = fn(i)
	}
	return ps
}

func TestConsistentHashDeclareAndBindErrors(t *testing.T) {
	url, _ := pluginURL(t)
	c, ch := dialURL(t, url)
	x := uniqueName("x")
	for _, c2 := range []struct {
		args amqp.Table
		text string
	}{
		{amqp.Table{"hash-header": "a", "hash-property": "message_id"}, "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive"},
		{amqp.Table{"hash-property": "app_id"}, "PRECONDITION_FAILED - Unsupported property: app_id"},
	} {
		err := ch.ExchangeDeclare(x, "x-consistent-hash", false, true, false, false, c2.args)
		require.Equal(t, c2.text, amqpErr(t, err, 406).Reason)
		var err2 error
		ch, err2 = c.Channel()
		require.NoError(t, err2)
	}
	require.NoError(t, ch.ExchangeDeclare(x, "x-consistent-hash", false, false, false, false, nil))
	t.Cleanup(func() { ch.ExchangeDelete(x, false, false) })
	for _, b := range []struct{ key, text string }{
		{"abc", `PRECONDITION_FAILED - The binding key must be an integer: <<"abc">>`},
		{"", `PRECONDITION_FAILED - The binding key must be an integer: <<>>`},
		{"0", "PRECONDITION_FAILED - The binding key must be greater than 0"},
		{"-1", "PRECONDITION_FAILED - The binding key must be greater than 0"},
	} {
		q, err := ch.QueueDeclare(uniqueName("q"), false, false, true, false, nil)
		require.NoError(t, err)
		err = ch.QueueBind(q.Name, b.key, x, false, nil)
		require.Equal(t, b.text, amqpErr(t, err, 406).Reason, b.key)
		ch, err = c.Channel()
		require.NoError(t, err)
	}
	q, err := ch.QueueDeclare(uniqueName("q"), false, false, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q.Name, "+2", x, false, nil), "list_to_integer takes a sign")
}

func TestConsistentHashRoutesByKeyAndMovesOnlyNewShare(t *testing.T) {
	url, _ := pluginURL(t)
	_, ch := dialURL(t, url)
	x, qs := hashSetup(t, ch, "x-consistent-hash", nil, "1", "1", "2", "4")
	const n = 800
	msgs := keyed(n, func(i int) amqp.Publishing { return amqp.Publishing{Body: []byte("key-" + strconv.Itoa(i))} })
	publishAllConfirmed(t, ch, x, msgs)
	publishAllConfirmed(t, ch, x, msgs) // the same keys again
	where := drain(t, ch, qs)
	require.Len(t, where, n)
	perQueue := make([]int, len(qs))
	for k, at := range where {
		require.Len(t, at, 2, "key %s: one copy per publish", k)
		require.Equal(t, at[0], at[1], "key %s: the same key goes to the same queue", k)
		perQueue[at[0]]++
	}
	// Weights 1, 1, 2, 4 of 8: the heaviest gets about half, the lightest
	// about an eighth (wide bounds: each broker hashes its own way).
	require.Greater(t, perQueue[3], n*3/8, "%v", perQueue)
	require.Less(t, perQueue[0], n/4, "%v", perQueue)
	require.Greater(t, perQueue[0], n/32, "%v", perQueue)

	// A fifth queue of weight 8 takes about half the keys, each from where
	// it was; no key moves between the first four.
	q5, err := ch.QueueDeclare(uniqueName("q"), false, false, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(q5.Name, "8", x, false, nil))
	qs = append(qs, q5.Name)
	publishAllConfirmed(t, ch, x, msgs)
	after := drain(t, ch, qs)
	moved := 0
	for k, at := range after {
		require.Len(t, at, 1)
		if at[0] != where[k][0] {
			require.Equal(t, 4, at[0], "key %s moved from queue %d to %d", k, where[k][0], at[0])
			moved++
		}
	}
	require.InDelta(t, n/2, moved, n/8)
}

func TestConsistentHashOnHeaderAndProperty(t *testing.T) {
	url, _ := pluginURL(t)
	_, ch := dialURL(t, url)
	x, qs := hashSetup(t, ch, "x-consistent-hash", amqp.Table{"hash-header": "user"}, "10", "10", "10", "10")
	// The header decides, not the routing key: user u<i%20> always lands
	// together; 20 users spread over more than one queue.
	publishAllConfirmed(t, ch, x, keyed(200, func(i int) amqp.Publishing {
		return amqp.Publishing{Headers: amqp.Table{"user": fmt.Sprintf("u%d", i%20)}, Body: []byte(fmt.Sprintf("%d u%d", i, i%20))}
	}))
	where := drain(t, ch, qs)
	require.Len(t, where, 200)
	userQueue := map[string]int{}
	used := map[int]bool{}
	for b, at := range where {
		var i int
		var u string
		fmt.Sscanf(b, "%d %s", &i, &u)
		if q, ok := userQueue[u]; ok {
			require.Equal(t, q, at[0], "user %s split over queues", u)
		}
		userQueue[u] = at[0]
		used[at[0]] = true
	}
	require.Greater(t, len(used), 1)

	// Without the header every message goes to one and the same queue
	// (RabbitMQ hashes the missing value like any other).
	publishAllConfirmed(t, ch, x, keyed(40, func(i int) amqp.Publishing { return amqp.Publishing{Body: []byte(strconv.Itoa(i))} }))
	where = drain(t, ch, qs)
	require.Len(t, where, 40)
	used = map[int]bool{}
	for _, at := range where {
		used[at[0]] = true
	}
	require.Len(t, used, 1)

	xp, qp := hashSetup(t, ch, "x-consistent-hash", amqp.Table{"hash-property": "message_id"}, "1", "1", "1", "1")
	publishAllConfirmed(t, ch, xp, keyed(100, func(i int) amqp.Publishing {
		return amqp.Publishing{MessageId: fmt.Sprintf("id%d", i%10), Body: []byte(fmt.Sprintf("%d id%d", i, i%10))}
	}))
	where = drain(t, ch, qp)
	require.Len(t, where, 100)
	idQueue := map[string]int{}
	for b, at := range where {
		var i int
		var id string
		fmt.Sscanf(b, "%d %s", &i, &id)
		if q, ok := idQueue[id]; ok {
			require.Equal(t, q, at[0], "message_id %s split over queues", id)
		}
		idQueue[id] = at[0]
	}
}

func TestConsistentHashCCAddsNoCopies(t *testing.T) {
	url, _ := pluginURL(t)
	_, ch := dialURL(t, url)
	x, qs := hashSetup(t, ch, "x-consistent-hash", nil, "1", "1", "1", "1")
	publishAllConfirmed(t, ch, x, keyed(40, func(i int) amqp.Publishing {
		cc := []any{}
		for j := range 5 {
			cc = append(cc, fmt.Sprintf("cc-%d-%d", i, j))
		}
		return amqp.Publishing{Headers: amqp.Table{"CC": cc}, Body: []byte(strconv.Itoa(i))}
	}))
	where := drain(t, ch, qs)
	require.Len(t, where, 40)
	for b, at := range where {
		require.Len(t, at, 1, "message %s: one copy whatever its CC keys", b)
	}
}

func TestRandomExchange(t *testing.T) {
	url, _ := pluginURL(t)
	_, ch := dialURL(t, url)
	x := uniqueName("x")
	require.NoError(t, ch.ExchangeDeclare(x, "x-random", false, false, false, false, nil))
	t.Cleanup(func() { ch.ExchangeDelete(x, false, false) })
	// No binding: unroutable, so a mandatory message comes back.
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	require.NoError(t, ch.PublishWithContext(context.Background(), x, "k", true, false, body("lost")))
	select {
	case r := <-returns:
		require.Equal(t, uint16(312), r.ReplyCode)
	case <-time.After(5 * time.Second):
		t.Fatal("no basic.return")
	}
	// Keys are ignored: bound as "a" and "b", published as "key-<i>".
	var qs []string
	for _, k := range []string{"a", "b"} {
		q, err := ch.QueueDeclare(uniqueName("q"), false, false, true, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.QueueBind(q.Name, k, x, false, nil))
		qs = append(qs, q.Name)
	}
	publishAllConfirmed(t, ch, x, keyed(200, func(i int) amqp.Publishing { return amqp.Publishing{Body: []byte(strconv.Itoa(i))} }))
	where := drain(t, ch, qs)
	require.Len(t, where, 200)
	per := []int{0, 0}
	for _, at := range where {
		require.Len(t, at, 1)
		per[at[0]]++
	}
	require.Greater(t, per[0], 50, "%v", per)
	require.Greater(t, per[1], 50, "%v", per)
}

// TestModulusHash: RabbitMQ 4.3's x-modulus-hash, not in 3.10 (which
// answers 503 unknown exchange type), so Warren only.
func TestModulusHash(t *testing.T) {
	warrenOnly(t, "x-modulus-hash is RabbitMQ 4.3 core; 3.10.8 does not know it")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	x, qs := hashSetup(t, ch, "x-modulus-hash", nil, "ignored", "ignored", "ignored")
	const n = 300
	msgs := keyed(n, func(i int) amqp.Publishing { return amqp.Publishing{Body: []byte("key-" + strconv.Itoa(i))} })
	publishAllConfirmed(t, ch, x, msgs)
	publishAllConfirmed(t, ch, x, msgs)
	where := drain(t, ch, qs)
	require.Len(t, where, n)
	used := map[int]bool{}
	for k, at := range where {
		require.Equal(t, []int{at[0], at[0]}, at, k)
		used[at[0]] = true
	}
	require.Len(t, used, 3)
}

// TestConsistentHashRingSurvivesRestart: a durable consistent-hash
// exchange's bindings come back in the order they were made, so every key
// keeps its queue.
func TestConsistentHashRingSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	route := func() map[string]int {
		b := startDurable(t, dir)
		c, ch := b.channel(t)
		require.NoError(t, ch.ExchangeDeclare("ring", "x-consistent-hash", true, false, false, false, nil))
		var qs []string
		// Names bound in reverse name order: a restore in key order would
		// rebuild a different ring.
		for i, w := range []string{"3", "1", "2", "5"} {
			name := fmt.Sprintf("q%d", 9-i)
			_, err := ch.QueueDeclare(name, true, false, false, false, nil)
			require.NoError(t, err)
			require.NoError(t, ch.QueueBind(name, w, "ring", false, nil))
			qs = append(qs, name)
		}
		publishAllConfirmed(t, ch, "ring", keyed(200, func(i int) amqp.Publishing { return amqp.Publishing{Body: []byte("key-" + strconv.Itoa(i))} }))
		out := map[string]int{}
		for k, at := range drain(t, ch, qs) {
			out[k] = at[0]
		}
		c.Close()
		b.stop()
		return out
	}
	first := route()
	require.Len(t, first, 200)
	require.Equal(t, first, route())
}
