package integration

import (
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// TestExchangeRedeclareInequivalent: redeclaring an existing exchange, a
// built-in amq.* one or not, with other properties is a channel error 406
// with RabbitMQ's text; the reserved amq. prefix is refused (403) only when
// the declare would create the exchange. Every case and text below was
// observed on RabbitMQ 3.10.8 with amqp091-go.
func TestExchangeRedeclareInequivalent(t *testing.T) {
	b := startBroker(t, server.Config{})
	conn := b.dial(t)
	channel := func() *amqp.Channel {
		ch, err := conn.Channel()
		require.NoError(t, err)
		return ch
	}
	require.NoError(t, channel().ExchangeDeclare("userx", "direct", true, false, false, false, nil))

	for _, tc := range []struct {
		name, kind                  string
		durable, autoDelete, intern bool
		code                        int
		text                        string
	}{
		{"amq.direct", "direct", true, false, false, 0, ""},
		{"amq.direct", "fanout", true, false, false, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct' in vhost '{vhost}': received 'fanout' but current is 'direct'"},
		{"amq.topic", "headers", true, false, false, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.topic' in vhost '{vhost}': received 'headers' but current is 'topic'"},
		{"amq.direct", "direct", false, false, false, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'amq.direct' in vhost '{vhost}': received 'false' but current is 'true'"},
		{"amq.direct", "direct", true, true, false, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'auto_delete' for exchange 'amq.direct' in vhost '{vhost}': received 'true' but current is 'false'"},
		{"amq.newone", "direct", true, false, false, amqp.AccessRefused,
			"ACCESS_REFUSED - exchange name 'amq.newone' contains reserved prefix 'amq.*'"},
		{"userx", "direct", true, false, false, 0, ""},
		{"userx", "fanout", true, false, false, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'userx' in vhost '{vhost}': received 'fanout' but current is 'direct'"},
		{"userx", "direct", true, false, true, amqp.PreconditionFailed,
			"PRECONDITION_FAILED - inequivalent arg 'internal' for exchange 'userx' in vhost '{vhost}': received 'true' but current is 'false'"},
	} {
		err := channel().ExchangeDeclare(tc.name, tc.kind, tc.durable, tc.autoDelete, tc.intern, false, nil)
		if tc.code == 0 {
			require.NoError(t, err, "%s as %s", tc.name, tc.kind)
			continue
		}
		ae := amqpErr(t, err, tc.code)
		require.Equal(t, strings.ReplaceAll(tc.text, "{vhost}", b.vhost), ae.Reason, "%s as %s", tc.name, tc.kind)
	}
	require.False(t, conn.IsClosed(), "inequivalence is a channel error, not a connection error")
	// A passive declare checks existence only, whatever type it names.
	require.NoError(t, channel().ExchangeDeclarePassive("amq.direct", "fanout", true, false, false, false, nil))
}
