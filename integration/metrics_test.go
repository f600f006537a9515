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
