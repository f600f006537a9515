package mgmt

import (
	"net/http"
	"os"
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warren-mq/warren/amqp/server"
)

// Prometheus metrics with rabbitmq_prometheus's names, so existing
// dashboards work: /metrics aggregates (no per-queue labels), and
// /metrics/per-object adds per-queue series labelled vhost and queue. The
// values are read from the broker at scrape time; nothing is kept per
// message beyond the counters the broker already has.

type collector struct {
	b         *server.Server
	perObject bool
}

var (
	protocolLabel = []string{"protocol"}
	protoQType    = []string{"protocol", "queue_type"}
	queueLabels   = []string{"vhost", "queue"}
	exchangeLbls  = []string{"vhost", "exchange"}
)

func desc(name, help string, labels []string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dConnections = desc("rabbitmq_connections", "Connections currently open", nil)
	dChannels    = desc("rabbitmq_channels", "Channels currently open", nil)
	dConsumers   = desc("rabbitmq_consumers", "Consumers currently connected", nil)
	dQueues      = desc("rabbitmq_queues", "Queues available", nil)
	dExchanges   = desc("rabbitmq_exchanges", "Exchanges available", nil)
	dReady       = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", nil)
	dUnacked     = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", nil)
	dMessages    = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", nil)
	dReceived    = desc("rabbitmq_global_messages_received_total", "Total number of messages received from publishers", protocolLabel)
	dConfirmed   = desc("rabbitmq_global_messages_confirmed_total", "Total number of messages confirmed to publishers", protocolLabel)
	dUnroutable  = desc("rabbitmq_global_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", protocolLabel)
	dDelivered   = desc("rabbitmq_global_messages_delivered_total", "Total number of messages delivered to consumers", protoQType)
	dRedelivered = desc("rabbitmq_global_messages_redelivered_total", "Total number of messages redelivered to consumers", protoQType)
	dAcked       = desc("rabbitmq_global_messages_acknowledged_total", "Total number of messages acknowledged by consumers", protoQType)
	dGConsumers  = desc("rabbitmq_global_consumers", "Current number of consumers", protocolLabel)
	dBuild       = desc("rabbitmq_build_info", "RabbitMQ & Erlang/OTP version info", []string{"rabbitmq_version", "prometheus_plugin_version", "erlang_version"})
	dIdentity    = desc("rabbitmq_identity_info", "RabbitMQ node & cluster identity info", []string{"rabbitmq_node", "rabbitmq_cluster"})
	dAlarms      = desc("rabbitmq_alarms_memory_used_watermark", "is 1 if VM memory watermark alarm is in effect", nil)
	dDiskAlarm   = desc("rabbitmq_alarms_free_disk_space_watermark", "is 1 if free disk space watermark alarm is in effect", nil)
	dDelayed     = desc("warren_delayed_messages", "Messages pending in delayed-message exchanges", nil)

	dQReady     = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", queueLabels)
	dQUnacked   = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", queueLabels)
	dQMessages  = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages", queueLabels)
	dQConsumers = desc("rabbitmq_queue_consumers", "Consumers on a queue", queueLabels)
	dQBytes     = desc("rabbitmq_queue_messages_ready_bytes", "Size in bytes of ready messages", queueLabels)
	dQPublished = desc("rabbitmq_queue_messages_published_total", "Total number of messages published to queues", queueLabels)
	dXDelayed   = desc("warren_exchange_delayed_messages", "Messages pending in a delayed-message exchange", exchangeLbls)

	// Streams (per object): RabbitMQ's names where it has them
	// (rabbitmq_stream_segments, which RabbitMQ types as a counter though
	// retention lowers it, and rabbitmq_stream_consumer_max_offset_lag),
	// Warren's for the log's extent and each consumer.
	dSBytes            = desc("rabbitmq_queue_messages_bytes", "Size in bytes of ready and unacknowledged messages", queueLabels)
	dSSegments         = desc("rabbitmq_stream_segments", "Total number of stream segment files", queueLabels)
	dSMaxLag           = desc("rabbitmq_stream_consumer_max_offset_lag", "Highest consumer offset lag", queueLabels)
	dSFirst            = desc("warren_stream_first_offset", "Offset of the oldest message a stream keeps", queueLabels)
	dSLast             = desc("warren_stream_last_offset", "Offset of the newest message of a stream (-1: none yet)", queueLabels)
	dSLag              = desc("warren_stream_consumer_offset_lag", "Messages between a stream consumer's position and the end of the stream", streamConsumerLbls)
	dSTracked          = desc("warren_stream_tracked_offset", "Offset a named stream consumer resumes from", streamNameLbls)
	streamConsumerLbls = []string{"vhost", "queue", "consumer_tag"}
	streamNameLbls     = []string{"vhost", "queue", "name"}
)

// Describe sends nothing: the collector is unchecked, as its series come and
// go with queues.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	t := c.b.Totals()
	gauge(dConnections, float64(t.Connections))
	gauge(dChannels, float64(t.Channels))
	gauge(dConsumers, float64(t.Consumers))
	gauge(dQueues, float64(t.Queues))
	gauge(dExchanges, float64(t.Exchanges))
	if !c.perObject { // per-object scrapes have these per queue instead
		gauge(dReady, float64(t.Ready))
		gauge(dUnacked, float64(t.Unacked))
		gauge(dMessages, float64(t.Ready+t.Unacked))
	}
	counter(dReceived, t.Published, "amqp091")
	counter(dConfirmed, t.Confirmed, "amqp091")
	counter(dUnroutable, t.Returned, "amqp091")
	counter(dDelivered, t.Delivered, "amqp091", "rabbit_classic_queue")
	counter(dRedelivered, t.Redelivered, "amqp091", "rabbit_classic_queue")
	counter(dAcked, t.Acked, "amqp091", "rabbit_classic_queue")
	gauge(dGConsumers, float64(t.Consumers), "amqp091")
	gauge(dBuild, 1, server.RabbitVersion, server.RabbitVersion, runtime.Version())
	// RabbitMQ's rabbitmq_cluster is the cluster_name (the node's name
	// until one is set).
	cluster := c.b.ClusterName()
	if cluster == "" {
		cluster = c.b.NodeName()
	}
	gauge(dIdentity, 1, c.b.NodeName(), cluster)
	alarms := c.b.Alarms()
	gauge(dAlarms, boolf(contains(alarms, "memory")))
	gauge(dDiskAlarm, boolf(contains(alarms, "disk")))
	var delayed int64
	for _, x := range c.b.Exchanges("") {
		if x.Type == server.DelayedType {
			delayed += x.Delayed
			if c.perObject {
				gauge(dXDelayed, float64(x.Delayed), x.Vhost, x.Name)
			}
		}
	}
	gauge(dDelayed, float64(delayed))
	if !c.perObject {
		return
	}
	for _, q := range c.b.Queues("") {
		gauge(dQReady, float64(q.Ready), q.Vhost, q.Name)
		gauge(dQUnacked, float64(q.Unacked), q.Vhost, q.Name)
		gauge(dQMessages, float64(q.Ready+q.Unacked), q.Vhost, q.Name)
		gauge(dQConsumers, float64(len(q.Consumers)), q.Vhost, q.Name)
		gauge(dQBytes, float64(q.ReadyBytes), q.Vhost, q.Name)
		counter(dQPublished, q.Published, q.Vhost, q.Name)
		if q.Stream != nil {
			streamMetrics(gauge, q)
		}
	}
}

// streamMetrics sends a stream's per-object series. Consumer tags are
// unique per channel only: two consumers of one stream with the same tag
// share a series, showing the larger lag.
func streamMetrics(gauge func(*prometheus.Desc, float64, ...string), q server.QueueInfo) {
	s := q.Stream
	gauge(dSBytes, float64(s.Bytes), q.Vhost, q.Name)
	gauge(dSSegments, float64(s.Segments), q.Vhost, q.Name)
	gauge(dSFirst, float64(s.First), q.Vhost, q.Name)
	last := float64(s.Last)
	if s.Messages == 0 {
		last = -1
	}
	gauge(dSLast, last, q.Vhost, q.Name)
	lags := map[string]uint64{}
	var maxLag uint64
	for _, c := range s.Consumers {
		lags[c.Tag] = max(lags[c.Tag], c.Lag)
		maxLag = max(maxLag, c.Lag)
	}
	gauge(dSMaxLag, float64(maxLag), q.Vhost, q.Name)
	for tag, lag := range lags {
		gauge(dSLag, float64(lag), q.Vhost, q.Name, tag)
	}
	for _, t := range s.Tracking {
		gauge(dSTracked, float64(t.Offset), q.Vhost, q.Name, t.Name)
	}
}

func boolf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// MetricsHandler serves the broker's metrics in Prometheus's text format:
// aggregated, or with per-queue series when perObject is set.
func MetricsHandler(b *server.Server, perObject bool) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{b: b, perObject: perObject})
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "rabbitmq", PidFn: func() (int, error) { return os.Getpid(), nil }}))
	reg.MustRegister(collectors.NewGoCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// MetricsMux serves /metrics and /metrics/per-object, as rabbitmq_prometheus
// does on its own listener (15692).
func MetricsMux(b *server.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", MetricsHandler(b, false))
	mux.Handle("/metrics/per-object", MetricsHandler(b, true))
	return mux
}
