package integration

// Named stream consumers (x-stream-consumer-name, or an own consumer tag
// with x-stream-automatic-offset-tracking): Warren tracks where each name
// stopped and resumes it there (queue/streamtrack.go). Warren-only:
// RabbitMQ 3.10 tracks offsets only over its stream protocol.

import (
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// namedConsume consumes q on a connection of its own (closing it ends the
// consumer) with tag ("" for a server-named one) and args.
func namedConsume(t *testing.T, url, q, tag string, prefetch int, args amqp.Table) (*amqp.Connection, <-chan amqp.Delivery) {
	t.Helper()
	c, err := amqp.Dial(url)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ch, err := c.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Qos(prefetch, 0, false))
	ds, err := ch.Consume(q, tag, false, false, false, false, args)
	require.NoError(t, err)
	return c, ds
}

// tracked is a named consumer's stored offset as the API shows it.
type tracked struct{ offset, synced int64 }

// consumerOffsets reads q's consumer_offsets through the API at base.
func consumerOffsets(t *testing.T, base, vhost, q string) map[string]tracked {
	t.Helper()
	api := &apiClient{t: t, base: base, user: "guest", pass: "guest"}
	it := api.expect(http.StatusOK, http.MethodGet, "/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(q), nil).obj(t)
	out := map[string]tracked{}
	list, ok := it["consumer_offsets"].([]any)
	require.True(t, ok, "consumer_offsets %v", it["consumer_offsets"])
	for _, e := range list {
		m := e.(map[string]any)
		out[m["name"].(string)] = tracked{int64(m["offset"].(float64)), int64(m["synced_offset"].(float64))}
	}
	return out
}

// waitTracked waits until q's name has stored offset off, on disk too.
func waitTracked(t *testing.T, base, vhost, q, name string, off int64) {
	t.Helper()
	eventually(t, func() bool {
		return consumerOffsets(t, base, vhost, q)[name] == tracked{off, off}
	}, fmt.Sprintf("%s stored at %d", name, off))
}

// recvOffsets receives n deliveries and returns them and their offsets.
func recvOffsets(t *testing.T, ds <-chan amqp.Delivery, n int) ([]amqp.Delivery, []int64) {
	t.Helper()
	var dd []amqp.Delivery
	var offs []int64
	for i := 0; i < n; i++ {
		d := recv(t, ds)
		dd = append(dd, d)
		offs = append(offs, offsetOf(t, d))
	}
	return dd, offs
}

func seq(from, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(from + i)
	}
	return out
}

// A named consumer resumes after a reconnect at the oldest delivery it
// did not ack; acks out of order do not move it past an unacked one; an
// explicit offset wins; names are independent; a server-named tag with
// the flag is not tracked.
func TestStreamTrackingReconnect(t *testing.T) {
	warrenOnly(t, "offset tracking over AMQP 0-9-1 is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	streamPublish(t, b, q, bodiesN("m", 0, 20)...)
	base := b.api(t)
	byName := func(name string) amqp.Table { return amqp.Table{"x-stream-consumer-name": name} }

	// A new name without an offset starts at next.
	c, ds := namedConsume(t, b.url, q, "", 10, byName("r1"))
	eventually(t, func() bool { _, ok := consumerOffsets(t, base, b.vhost, q)["r1"]; return ok }, "r1 tracked")
	require.Equal(t, int64(20), consumerOffsets(t, base, b.vhost, q)["r1"].offset)
	none(t, ds)
	c.Close()

	// An explicit offset wins over the stored one.
	c, ds = namedConsume(t, b.url, q, "", 10, amqp.Table{"x-stream-consumer-name": "r1", "x-stream-offset": "first"})
	dd, offs := recvOffsets(t, ds, 10)
	require.Equal(t, seq(0, 10), offs)
	// Acks 0-4, then 6 and 8 out of order: 5 holds the name back.
	require.NoError(t, dd[4].Ack(true))
	require.NoError(t, dd[6].Ack(false))
	require.NoError(t, dd[8].Ack(false))
	waitTracked(t, base, b.vhost, q, "r1", 5)
	c.Close()

	// Reconnected, it resumes at 5: 5, 7, 9 come again, then the rest.
	c, ds = namedConsume(t, b.url, q, "", 20, byName("r1"))
	dd, offs = recvOffsets(t, ds, 15)
	require.Equal(t, seq(5, 15), offs)
	for _, d := range dd {
		require.False(t, d.Redelivered)
	}
	require.NoError(t, dd[len(dd)-1].Ack(true))
	waitTracked(t, base, b.vhost, q, "r1", 20)
	c.Close()

	// Acks after basic.cancel still count; what is not acked when the
	// channel closes comes again.
	c, ds = namedConsume(t, b.url, q, "tail", 20, byName("r1"))
	none(t, ds)
	streamPublish(t, b, q, bodiesN("m", 20, 3)...)
	dd, offs = recvOffsets(t, ds, 3)
	require.Equal(t, seq(20, 3), offs)
	// The consumer's channel, reached through a delivery.
	require.NoError(t, dd[0].Acknowledger.(*amqp.Channel).Cancel("tail", false))
	require.NoError(t, dd[0].Ack(false))
	waitTracked(t, base, b.vhost, q, "r1", 21)
	c.Close()
	waitTracked(t, base, b.vhost, q, "r1", 21)
	c, ds = namedConsume(t, b.url, q, "", 20, byName("r1"))
	_, offs = recvOffsets(t, ds, 2)
	require.Equal(t, seq(21, 2), offs)
	c.Close()
	waitTracked(t, base, b.vhost, q, "r1", 21)

	// A second name is independent of the first.
	c2, ds2 := namedConsume(t, b.url, q, "", 5, amqp.Table{"x-stream-consumer-name": "r2", "x-stream-offset": int64(17)})
	dd, offs = recvOffsets(t, ds2, 5)
	require.Equal(t, seq(17, 5), offs)
	require.NoError(t, dd[1].Ack(true))
	waitTracked(t, base, b.vhost, q, "r2", 19)
	require.Equal(t, tracked{21, 21}, consumerOffsets(t, base, b.vhost, q)["r1"])
	c2.Close()

	// Its own tag with automatic tracking names a consumer too, and the
	// API shows the name on the connected consumer.
	auto := amqp.Table{"x-stream-automatic-offset-tracking": true}
	c, ds = namedConsume(t, b.url, q, "audit", 5, amqp.Table{"x-stream-automatic-offset-tracking": true, "x-stream-offset": "first"})
	dd, _ = recvOffsets(t, ds, 5)
	require.NoError(t, dd[2].Ack(true))
	waitTracked(t, base, b.vhost, q, "audit", 3)
	api := &apiClient{t: t, base: base, user: b.user, pass: b.pass}
	it := api.expect(http.StatusOK, http.MethodGet, "/api/queues/"+url.PathEscape(b.vhost)+"/"+url.PathEscape(q), nil).obj(t)
	rd := it["stream_consumers"].([]any)[0].(map[string]any)
	require.Equal(t, "audit", rd["name"])
	require.Equal(t, "audit", rd["consumer_tag"])
	c.Close()
	_, ds = namedConsume(t, b.url, q, "audit", 5, auto)
	_, offs = recvOffsets(t, ds, 1)
	require.Equal(t, []int64{3}, offs)

	// A server-named tag (amq.ctag-…) with the flag is not tracked: it
	// starts at next every time and leaves no name behind.
	// (amqp091-go names its consumers ctag-…, pika ctag1.…: with the flag
	// those are tracked, under a name each run.)
	before := consumerOffsets(t, base, b.vhost, q)
	c, ds = namedConsume(t, b.url, q, "amq.ctag-mine", 5, amqp.Table{"x-stream-automatic-offset-tracking": true, "x-stream-offset": "first"})
	dd, _ = recvOffsets(t, ds, 5)
	require.NoError(t, dd[4].Ack(true))
	c.Close()
	c, ds = namedConsume(t, b.url, q, "amq.ctag-mine", 5, auto)
	none(t, ds)
	c.Close()
	require.Equal(t, before, consumerOffsets(t, base, b.vhost, q))
	// A tag of its own without the flag is not tracked either.
	c, _ = namedConsume(t, b.url, q, "plain", 5, nil)
	c.Close()
	require.Equal(t, before, consumerOffsets(t, base, b.vhost, q))
}

// Tracking arguments of the wrong type are refused.
func TestStreamTrackingRefusals(t *testing.T) {
	warrenOnly(t, "offset tracking over AMQP 0-9-1 is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	for _, c := range []struct {
		args   amqp.Table
		reason string
	}{
		{amqp.Table{"x-stream-consumer-name": int32(1)}, "invalid arg 'x-stream-consumer-name' for queue '%s' in vhost '%s': {unacceptable_type,signedint}"},
		{amqp.Table{"x-stream-consumer-name": ""}, "invalid arg 'x-stream-consumer-name' for queue '%s' in vhost '%s': \"a name of 1 to 255 bytes expected\""},
		{amqp.Table{"x-stream-automatic-offset-tracking": "yes"}, "invalid arg 'x-stream-automatic-offset-tracking' for queue '%s' in vhost '%s': {unacceptable_type,longstr}"},
	} {
		_, ch := b.channel(t)
		require.NoError(t, ch.Qos(5, 0, false))
		_, err := ch.Consume(q, "", false, false, false, false, c.args)
		require.Equal(t, "PRECONDITION_FAILED - "+fmt.Sprintf(c.reason, q, b.vhost), amqpErr(t, err, 406).Reason)
	}
}

// A named consumer resumes after a restart; deleting the stream forgets
// its names.
func TestStreamTrackingRestart(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir}
	b := startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	_, ch := b.channel(t)
	q := "s"
	_, err := ch.QueueDeclare(q, true, false, false, false, streamArgs(nil))
	require.NoError(t, err)
	streamPublish(t, b.broker, q, bodiesN("m", 0, 50)...)
	_, ds := namedConsume(t, b.url, q, "", 50, amqp.Table{"x-stream-consumer-name": "r", "x-stream-offset": "first"})
	dd, _ := recvOffsets(t, ds, 30)
	require.NoError(t, dd[29].Ack(true))
	// Stopped as soon as the ack counts, written or not: a clean stop
	// writes what is pending.
	eventually(t, func() bool { return consumerOffsets(t, b.api(t), "/", q)["r"].offset == 30 }, "r at 30")
	b.stop()

	b = startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	_, ds = namedConsume(t, b.url, q, "", 50, amqp.Table{"x-stream-consumer-name": "r"})
	_, offs := recvOffsets(t, ds, 20)
	require.Equal(t, seq(30, 20), offs)

	// Deleted and declared again, the stream knows no names.
	_, ch = b.channel(t)
	_, err = ch.QueueDelete(q, false, false, false)
	require.NoError(t, err)
	_, err = ch.QueueDeclare(q, true, false, false, false, streamArgs(nil))
	require.NoError(t, err)
	streamPublish(t, b.broker, q, bodiesN("m", 0, 5)...)
	_, ds = namedConsume(t, b.url, q, "", 50, amqp.Table{"x-stream-consumer-name": "r"})
	none(t, ds) // a new name: next
}

// warrenStarter returns a function that starts bin/warren on one data
// directory with AMQP and HTTP listeners, and returns the process and
// its AMQP and API URLs.
func warrenStarter(t *testing.T) func() (*exec.Cmd, string, string) {
	bin := buildWarren(t)
	dataDir := t.TempDir()
	return func() (*exec.Cmd, string, string) {
		cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--prometheus-listen", "", "--data-dir", dataDir, "--log-level", "info")
		addrs := runWarrenListeners(t, cmd, "AMQP", "HTTP")
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd, "amqp://guest:guest@" + addrs["AMQP"] + "/", "http://" + addrs["HTTP"]
	}
}

// TestStreamTrackingSIGKILL SIGKILLs bin/warren while a named consumer
// acks: after a restart it resumes no later than its oldest unacked
// delivery (nothing skipped) and no earlier than the offset on disk
// before the kill (progress lost is bounded by one unwritten batch).
func TestStreamTrackingSIGKILL(t *testing.T) {
	warrenOnly(t, "SIGKILLs and restarts bin/warren")
	start := warrenStarter(t)
	cmd, amqpURL, base := start()
	conn, err := amqp.Dial(amqpURL)
	require.NoError(t, err)
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("kill-track", true, false, false, false, streamArgs(nil))
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	for i := 0; i < 1000; i++ {
		require.True(t, confirmed(t, ch, "kill-track", body(fmt.Sprint("m", i))))
	}
	conn.Close()

	_, ds := namedConsume(t, amqpURL, "kill-track", "", 100, amqp.Table{"x-stream-consumer-name": "k", "x-stream-offset": "first"})
	for i := 0; i < 300; i++ {
		require.NoError(t, recv(t, ds).Ack(false))
	}
	waitTracked(t, base, "/", "kill-track", "k", 300)
	// 200 more acked, one at a time, and the kill right after the last.
	for i := 0; i < 200; i++ {
		require.NoError(t, recv(t, ds).Ack(false))
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()

	_, amqpURL, _ = start()
	_, ds = namedConsume(t, amqpURL, "kill-track", "", 100, amqp.Table{"x-stream-consumer-name": "k"})
	d := recv(t, ds)
	first := offsetOf(t, d)
	require.GreaterOrEqual(t, first, int64(300), "progress on disk before the kill was lost")
	require.LessOrEqual(t, first, int64(500), "acked offsets skipped")
	require.Equal(t, fmt.Sprint("m", first), string(d.Body))
	require.NoError(t, d.Ack(false))
	for want := first + 1; want < 1000; want++ {
		d := recv(t, ds)
		require.Equal(t, want, offsetOf(t, d))
		require.NoError(t, d.Ack(false))
	}
}

// pikaTracking runs the pika test test_pika_stream_tracking.name against
// the broker at amqpURL on stream q.
func pikaTracking(t *testing.T, amqpURL, q, name string, env ...string) {
	t.Helper()
	runClient(t, clientDir(t, "python"), append([]string{"AMQP_URL=" + amqpURL, "QUEUE=" + q}, env...), 2*time.Minute,
		"/usr/bin/python3", "-m", "unittest", "-v", "test_pika_stream_tracking."+name)
}

// TestStreamTrackingPika: pika's consumers resume by name after a
// reconnect; an explicit offset wins; names are independent; an own tag
// with the flag is tracked, an amq.ctag- one is not.
func TestStreamTrackingPika(t *testing.T) {
	warrenOnly(t, "offset tracking over AMQP 0-9-1 is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	pikaTracking(t, b.url, b.name("pika-track"), "Tracking")
}

// TestStreamTrackingPikaRestart: a pika consumer resumes by name after a
// broker restart.
func TestStreamTrackingPikaRestart(t *testing.T) {
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir}
	b := startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	pikaTracking(t, b.url, "s", "Restart.test_before")
	b.stop()
	b = startDurableCfg(t, filepath.Join(dir, "store"), cfg)
	pikaTracking(t, b.url, "s", "Restart.test_after")
}

// TestStreamTrackingPikaSIGKILL: a pika consumer resumes by name after
// kill -9, between the offset on disk before the kill and its last ack.
func TestStreamTrackingPikaSIGKILL(t *testing.T) {
	warrenOnly(t, "SIGKILLs and restarts bin/warren")
	start := warrenStarter(t)
	cmd, amqpURL, base := start()
	pikaTracking(t, amqpURL, "kill-track", "Kill.test_before")
	waitTracked(t, base, "/", "kill-track", "k", 300)
	pikaTracking(t, amqpURL, "kill-track", "Kill.test_more")
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	_, amqpURL, _ = start()
	pikaTracking(t, amqpURL, "kill-track", "Kill.test_after", "LOW=300", "HIGH=500")
}

// A name is scoped to its stream: the same name on two streams keeps two
// offsets.
func TestStreamTrackingScope(t *testing.T) {
	warrenOnly(t, "offset tracking over AMQP 0-9-1 is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	qa := declareStream(t, b, ch, "a", nil)
	qb := declareStream(t, b, ch, "b", nil)
	streamPublish(t, b, qa, bodiesN("a", 0, 10)...)
	streamPublish(t, b, qb, bodiesN("b", 0, 10)...)
	first := amqp.Table{"x-stream-consumer-name": "x", "x-stream-offset": "first"}
	ca, dsa := namedConsume(t, b.url, qa, "", 10, first)
	cb, dsb := namedConsume(t, b.url, qb, "", 10, first)
	dd, _ := recvOffsets(t, dsa, 3)
	require.NoError(t, dd[2].Ack(true))
	dd, _ = recvOffsets(t, dsb, 1)
	require.NoError(t, dd[0].Ack(true))
	ca.Close()
	cb.Close()
	waitTracked(t, b.api(t), b.vhost, qa, "x", 3)
	waitTracked(t, b.api(t), b.vhost, qb, "x", 1)
	_, dsa = namedConsume(t, b.url, qa, "", 1, amqp.Table{"x-stream-consumer-name": "x"})
	_, dsb = namedConsume(t, b.url, qb, "", 1, amqp.Table{"x-stream-consumer-name": "x"})
	_, offs := recvOffsets(t, dsa, 1)
	require.Equal(t, []int64{3}, offs)
	_, offs = recvOffsets(t, dsb, 1)
	require.Equal(t, []int64{1}, offs)
}

// DELETE /api/queues/{vhost}/{name}/consumer-offsets/{consumer} forgets a
// name: its next consumer starts at next; an unknown name is 404, and a
// user without configure permission on the stream is refused.
func TestStreamTrackingForget(t *testing.T) {
	warrenOnly(t, "offset tracking over AMQP 0-9-1 is Warren's (as LavinMQ)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", nil)
	streamPublish(t, b, q, bodiesN("m", 0, 5)...)
	c, ds := namedConsume(t, b.url, q, "", 5, amqp.Table{"x-stream-consumer-name": "gone", "x-stream-offset": "first"})
	dd, _ := recvOffsets(t, ds, 2)
	require.NoError(t, dd[1].Ack(true))
	c.Close()
	waitTracked(t, b.api(t), b.vhost, q, "gone", 2)
	path := "/api/queues/" + url.PathEscape(b.vhost) + "/" + url.PathEscape(q) + "/consumer-offsets/gone"
	reader := addUser(t, b, "reader", server.Permission{Configure: "^$", Write: ".*", Read: ".*"}, "management")
	(&apiClient{t: t, base: b.api(t), user: reader, pass: reader + "-pw"}).expect(http.StatusUnauthorized, http.MethodDelete, path, nil) // RabbitMQ's answer to a refused permission
	require.Contains(t, consumerOffsets(t, b.api(t), b.vhost, q), "gone")
	api := &apiClient{t: t, base: b.api(t), user: b.user, pass: b.pass}
	api.expect(http.StatusNoContent, http.MethodDelete, path, nil)
	_, ok := consumerOffsets(t, b.api(t), b.vhost, q)["gone"]
	require.False(t, ok)
	api.expect(http.StatusNotFound, http.MethodDelete, path, nil)
	_, ds = namedConsume(t, b.url, q, "", 5, amqp.Table{"x-stream-consumer-name": "gone"})
	none(t, ds) // a new name: next
}
