package integration

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

func scrape(t *testing.T, url string) (string, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b), resp.Header.Get("Content-Type")
}

// metric reads one sample's value from a scrape ("name{labels}" or "name").
func metric(t *testing.T, text, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(text)
	require.NotNil(t, m, "no series %s in:\n%s", series, text)
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

func TestPrometheusMetrics(t *testing.T) {
	warrenOnly(t, "scrapes Warren's Prometheus handler (RabbitMQ's prometheus plugin is not enabled here)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("orders", false, false, false, false, nil)
	require.NoError(t, err)
	// Made with a queue present: its series must not clash with the aggregates.
	hs := httptest.NewServer(mgmt.MetricsMux(b.Server))
	t.Cleanup(hs.Close)
	for range 7 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "orders", false, false, amqp.Publishing{Body: []byte("x")}))
	}
	for range 3 {
		d, ok, err := ch.Get("orders", false)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, d.Ack(false))
	}
	d, ok, err := ch.Get("orders", false) // one left unacked
	require.NoError(t, err)
	require.True(t, ok)

	text, ctype := scrape(t, hs.URL+"/metrics")
	require.Contains(t, ctype, "text/plain; version=0.0.4")
	require.Equal(t, 1.0, metric(t, text, "rabbitmq_connections"))
	require.Equal(t, 1.0, metric(t, text, "rabbitmq_channels"))
	require.Equal(t, 1.0, metric(t, text, "rabbitmq_queues"))
	require.Equal(t, 3.0, metric(t, text, "rabbitmq_queue_messages_ready"))
	require.Equal(t, 1.0, metric(t, text, "rabbitmq_queue_messages_unacked"))
	require.Equal(t, 7.0, metric(t, text, `rabbitmq_global_messages_received_total{protocol="amqp091"}`))
	require.Equal(t, 4.0, metric(t, text, `rabbitmq_global_messages_delivered_total{protocol="amqp091",queue_type="rabbit_classic_queue"}`))
	require.Equal(t, 3.0, metric(t, text, `rabbitmq_global_messages_acknowledged_total{protocol="amqp091",queue_type="rabbit_classic_queue"}`))
	require.NotContains(t, text, `queue="orders"`, "no per-queue labels in the aggregate")
	require.Contains(t, text, "rabbitmq_process_resident_memory_bytes")

	per, _ := scrape(t, hs.URL+"/metrics/per-object")
	require.Equal(t, 3.0, metric(t, per, `rabbitmq_queue_messages_ready{queue="orders",vhost="/"}`))
	require.Equal(t, 1.0, metric(t, per, `rabbitmq_queue_messages_unacked{queue="orders",vhost="/"}`))
	require.Equal(t, 4.0, metric(t, per, `rabbitmq_queue_messages{queue="orders",vhost="/"}`))
	require.Equal(t, 0.0, metric(t, per, `rabbitmq_queue_consumers{queue="orders",vhost="/"}`))
	require.NotRegexp(t, `(?m)^rabbitmq_queue_messages_ready `, per)
	require.NoError(t, d.Ack(false))

	// A deleted queue's series disappear; the counters keep counting.
	_, err = ch.QueueDelete("orders", false, false, false)
	require.NoError(t, err)
	per, _ = scrape(t, hs.URL+"/metrics/per-object")
	require.NotContains(t, per, `queue="orders"`)
	text, _ = scrape(t, hs.URL+"/metrics")
	require.Equal(t, 4.0, metric(t, text, `rabbitmq_global_messages_acknowledged_total{protocol="amqp091",queue_type="rabbit_classic_queue"}`))
	require.Equal(t, 0.0, metric(t, text, "rabbitmq_queues"))

	// The management listener serves /metrics too.
	api := startAPI(t, b)
	resp, err := http.Get(api.base + "/metrics")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
}

// A stream's per-object series: RabbitMQ's segments, bytes and highest
// consumer lag, and Warren's offsets, per-consumer lag and named
// consumers' stored offsets.
func TestPrometheusStreamMetrics(t *testing.T) {
	warrenOnly(t, "scrapes Warren's Prometheus handler (RabbitMQ's prometheus plugin is not enabled here)")
	b := startBroker(t, server.Config{})
	_, ch := b.channel(t)
	q := declareStream(t, b, ch, "s", amqp.Table{"x-stream-max-segment-size-bytes": int32(1000)})
	big := make([]byte, 300)
	ps := make([]amqp.Publishing, 10)
	for i := range ps {
		ps[i] = amqp.Publishing{Body: big}
	}
	streamPublish(t, b, q, ps...)
	hs := httptest.NewServer(mgmt.MetricsMux(b.Server))
	t.Cleanup(hs.Close)

	_, ds := streamConsume(t, b, q, 3, amqp.Table{"x-stream-offset": "first"})
	recvOffsets(t, ds, 3)
	_, ds2 := namedConsume(t, b.url, q, "tail", 5, amqp.Table{"x-stream-consumer-name": "audit", "x-stream-offset": int64(6)})
	dd, _ := recvOffsets(t, ds2, 2)
	require.NoError(t, dd[1].Ack(true))

	lbl := func(name string) string { return name + `{queue="` + q + `",vhost="` + b.vhost + `"}` }
	var per string
	eventually(t, func() bool {
		per, _ = scrape(t, hs.URL+"/metrics/per-object")
		return metric(t, per, `warren_stream_tracked_offset{name="audit",queue="`+q+`",vhost="`+b.vhost+`"}`) == 8
	}, "audit stored at 8")
	require.Equal(t, 10.0, metric(t, per, lbl("rabbitmq_queue_messages")))
	require.Equal(t, 10.0, metric(t, per, lbl("rabbitmq_queue_messages_ready")))
	require.Equal(t, 2.0, metric(t, per, lbl("rabbitmq_queue_consumers")))
	info := queueInfo(t, b, q)
	require.Greater(t, info["segments"], float64(1))
	require.Equal(t, info["segments"], metric(t, per, lbl("rabbitmq_stream_segments")))
	require.Equal(t, info["message_bytes"], metric(t, per, lbl("rabbitmq_queue_messages_bytes")))
	require.Equal(t, 0.0, metric(t, per, lbl("warren_stream_first_offset")))
	require.Equal(t, 9.0, metric(t, per, lbl("warren_stream_last_offset")))
	// The first consumer got 0-2 (its next is 3: 7 behind); "tail" got
	// 6-9 (none behind) and acked 6-7, so "audit" resumes at 8.
	require.Equal(t, 7.0, metric(t, per, lbl("rabbitmq_stream_consumer_max_offset_lag")))
	require.Equal(t, 0.0, metric(t, per, `warren_stream_consumer_offset_lag{consumer_tag="tail",queue="`+q+`",vhost="`+b.vhost+`"}`))

	agg, _ := scrape(t, hs.URL+"/metrics")
	require.NotContains(t, agg, "warren_stream_", "no per-stream series in the aggregate")
}
