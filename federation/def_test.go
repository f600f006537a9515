package federation

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestUpstreamDefaultsAndSetOverrides(t *testing.T) {
	u := map[string]any{"uri": "amqp://h", "max-hops": float64(2), "exchange": "up-x"}
	got := upstreamOf("u", u, nil)
	require.Equal(t, &Upstream{Name: "u", URIs: []string{"amqp://h"}, Exchange: "up-x", ConsumerTag: "federation-link-u",
		Prefetch: 1000, ReconnectDelay: 5 * time.Second, MaxHops: 2, MessageTTL: -1, AckMode: OnConfirm}, got)

	over := map[string]any{"upstream": "u", "exchange": "other", "ack-mode": "no-ack", "uri": []any{"amqp://a", "amqp://b"}}
	got = upstreamOf("u", u, over)
	require.Equal(t, "other", got.Exchange, "the set's keys win")
	require.Equal(t, NoAck, got.AckMode)
	require.Equal(t, []string{"amqp://a", "amqp://b"}, got.URIs)
	require.Equal(t, int64(2), got.MaxHops, "the upstream's keys next")
	require.False(t, got.equal(upstreamOf("u", u, nil)))
	require.True(t, got.equal(upstreamOf("u", u, over)))
}

func TestValidate(t *testing.T) {
	require.NoError(t, ValidateUpstream("u", map[string]any{"uri": []any{"amqp://a", "amqps://b?verify=verify_none"}, "prefetch-count": float64(10),
		"resource-cleanup-mode": "never", "channel-use-mode": "single", "bind-nowait": true}))
	require.EqualError(t, ValidateUpstream("u", "x"), `u not a list &lt;&lt;"x"&gt;&gt;`)
	require.EqualError(t, ValidateUpstream("u", map[string]any{"uri": "amqp://", "expires": "soon"}),
		`expires should be a number, actually was &lt;&lt;"soon"&gt;&gt;`)
	require.NoError(t, ValidateSet("s", []any{map[string]any{"upstream": "u", "max-hops": float64(3)}}))
	require.EqualError(t, ValidateSet("s", []any{map[string]any{"upstream": 5}}), "upstream should be binary, actually was 5")
}
