package shovel

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// value decodes a definition as the management API does (numbers as
// json.Number).
func value(t *testing.T, s string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v))
	return v
}

func TestParseDefaultsAndAliases(t *testing.T) {
	d, err := Parse("s", value(t, `{"src-uri": "amqp://", "src-queue": "a", "dest-uri": ["amqp://h1", "amqps://h2/v?verify=verify_none"], "dest-exchange": "x"}`))
	require.NoError(t, err)
	require.Equal(t, []string{"amqp://"}, d.SrcURIs)
	require.Equal(t, []string{"amqp://h1", "amqps://h2/v?verify=verify_none"}, d.DestURIs)
	require.Equal(t, OnConfirm, d.AckMode)
	require.Equal(t, 1000, d.Prefetch)
	require.Equal(t, Never, d.DeleteAfter)
	require.Equal(t, 5*time.Second, d.ReconnectDelay)
	require.Nil(t, d.DestQueue)
	require.Equal(t, "x", *d.DestExchange)
	require.Nil(t, d.DestExchangeKey, "the message's own routing key")

	// The legacy keys RabbitMQ still reads, and numbers after a JSON round
	// trip (float64).
	var v any
	require.NoError(t, json.Unmarshal([]byte(`{"src-uri": "amqp://", "src-exchange": "e", "dest-uri": "amqp://",
		"prefetch-count": 10, "delete-after": 7, "add-forward-headers": true, "publish-properties": {"delivery_mode": 2},
		"reconnect-delay": 0.5, "ack-mode": "on-publish"}`), &v))
	d, err = Parse("s", v)
	require.NoError(t, err)
	require.Equal(t, 10, d.Prefetch)
	require.Equal(t, int64(7), d.DeleteAfter)
	require.True(t, d.AddForwardHeaders)
	require.Equal(t, map[string]any{"delivery_mode": float64(2)}, d.PublishProperties)
	require.Equal(t, 500*time.Millisecond, d.ReconnectDelay)
	require.Equal(t, OnPublish, d.AckMode)

	d, err = Parse("s", value(t, `{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-delete-after": "queue-length"}`))
	require.NoError(t, err)
	require.Equal(t, QueueLength, d.DeleteAfter)
}

// TestParseRefusals: RabbitMQ 3.10.8's texts (observed on the oracle), in
// its order: source and destination shape first, then unknown keys, then
// the last failing key's check.
func TestParseRefusals(t *testing.T) {
	for _, c := range []struct{ def, want string }{
		{`"str"`, `s not a list &lt;&lt;"str"&gt;&gt;`},
		{`{"src-uri": "amqp://", "dest-uri": "amqp://"}`, "Must specify 'src-exchange' or 'src-queue'"},
		{`{"src-queue": "a", "dest-uri": "amqp://"}`, `Key "src-uri" not found in s`},
		{`{"src-uri": "amqp://", "src-queue": "a"}`, `Key "dest-uri" not found in s`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "x": 1, "ack-mode": "bad"}`, `Unrecognised terms [{&lt;&lt;"x"&gt;&gt;,1}] in s`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "ack-mode": "bad", "reconnect-delay": "x"}`, `ack-mode should be one of [&lt;&lt;"no-ack"&gt;&gt;,&lt;&lt;"on-publish"&gt;&gt;,&lt;&lt;"on-confirm"&gt;&gt;], actually was &lt;&lt;"bad"&gt;&gt;`},
		{`{"src-uri": 5, "src-queue": "a", "dest-uri": "amqp://"}`, `src-uri should be a list, actually was 5`},
		{`{"src-uri": ["amqp://", "http://x"], "src-queue": "a", "dest-uri": "amqp://"}`, `"http://x" not a valid URI: {{unexpected_uri_scheme,"http"},"http://x"}`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-delete-after": -1}`, `src-delete-after should be a number greater than or equal to 0, "never" or "queue-length", actually was -1`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-publish-properties": {"colour": "red"}}`, `Unrecognised terms [{&lt;&lt;"colour"&gt;&gt;,&lt;&lt;"red"&gt;&gt;}] in dest-publish-properties`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "dest-publish-properties": {"priority": "high"}}`, `priority should be a number, actually was &lt;&lt;"high"&gt;&gt;`},
		{`{"src-uri": "amqp://", "src-queue": "a", "dest-uri": "amqp://", "src-protocol": "amqp10"}`, "AMQP 1.0 shovels are not supported; src-protocol and dest-protocol must be amqp091"},
	} {
		_, err := Parse("s", value(t, c.def))
		require.Error(t, err, c.def)
		require.Equal(t, c.want, err.Error(), c.def)
	}
}

func TestURIs(t *testing.T) {
	for _, c := range []struct {
		raw, redacted, vhost, dial string
		local                      bool
	}{
		{"amqp://", "amqp://", "/", "amqp://localhost/%2F", true},
		{"amqp:///", "amqp:///", "/", "amqp://localhost/%2F", true},
		{"amqp:///shop", "amqp:///shop", "shop", "amqp://localhost/shop", true},
		{"amqp:///%2F", "amqp:///%2F", "/", "amqp://localhost/%2F", true},
		{"amqp://u:p@rabbit:5672/%2F?heartbeat=10", "amqp://rabbit:5672/%2F", "/", "amqp://u:p@rabbit:5672/%2F?heartbeat=10", false},
		{"amqps://u@h?cacertfile=/ca.pem&verify=verify_peer", "amqps://h", "/", "amqps://u@h?cacertfile=/ca.pem&verify=verify_peer", false},
	} {
		e, err := parseURI(c.raw)
		require.NoError(t, err, c.raw)
		require.Equal(t, c.local, e.local, c.raw)
		require.Equal(t, c.redacted, e.redacted(), c.raw)
		require.Equal(t, c.dial, e.dialURL(), c.raw)
		if c.local {
			require.Equal(t, c.vhost, e.vhost, c.raw)
		}
	}
	_, err := parseURI("amqps://h?verify=sometimes")
	require.EqualError(t, err, `{{bad_verify,"sometimes"},"amqps://h?verify=sometimes"}`)

	e, _ := parseURI("amqps://h:5671?verify=verify_none&server_name_indication=broker.example")
	tc, err := e.tlsConfig()
	require.NoError(t, err)
	require.True(t, tc.InsecureSkipVerify)
	require.Equal(t, "broker.example", tc.ServerName)
	e, _ = parseURI("amqps://h?cacertfile=/nonexistent.pem")
	_, err = e.tlsConfig()
	require.ErrorContains(t, err, "cacertfile")
}
