package server

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
)

// The x-federation-upstream exchange forwards as the plugin's
// should_forward: fewer hops than x-max-hops, and not from the downstream.
func TestShouldForward(t *testing.T) {
	hop := func(cluster, vhost string) amqp.Table { return amqp.Table{"cluster-name": cluster, "vhost": vhost} }
	for _, c := range []struct {
		headers amqp.Table
		want    bool
	}{
		{nil, true},
		{amqp.Table{"x-received-from": "not a list"}, true},
		{amqp.Table{"x-received-from": []any{hop("a", "/")}}, true},
		{amqp.Table{"x-received-from": []any{hop("down", "/")}}, false},
		{amqp.Table{"x-received-from": []any{hop("down", "other")}}, true},
		{amqp.Table{"x-received-from": []any{hop("a", "/"), hop("b", "/")}}, false}, // max-hops 2 reached
	} {
		require.Equal(t, c.want, ShouldForward(c.headers, 2, "down", "/"), "%v", c.headers)
	}
	require.Error(t, validateUpstreamArgs(amqp.Table{}))
	require.Error(t, validateUpstreamArgs(amqp.Table{"x-max-hops": int32(1)}), "a long, not a signedint")
	require.NoError(t, validateUpstreamArgs(amqp.Table{"x-max-hops": int64(1)}))
	m, ok := matcherOf(FederationUpstreamType, amqp.Table{"x-max-hops": int64(1), "x-downstream-name": "down", "x-downstream-vhost": "/"})
	require.True(t, ok)
	require.Equal(t, &upstreamMatcher{Matcher: m.(*upstreamMatcher).Matcher, maxHops: 1, name: "down", vhost: "/"}, m)
}
