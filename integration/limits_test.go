package integration

import (
	"fmt"
	"net/http"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestVhostAndUserLimits(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	put, get, del := http.MethodPut, http.MethodGet, http.MethodDelete

	// Vhost max-connections: the next connection.open gets 530.
	api.expect(204, put, "/api/vhost-limits/{vhost}/max-connections", map[string]any{"value": 2})
	require.Equal(t, []any{map[string]any{"vhost": b.vhost, "value": map[string]any{"max-connections": 2.0}}},
		api.expect(200, get, "/api/vhost-limits/{vhost}", nil).list(t))
	c1, c2 := b.dial(t), b.dial(t)
	_ = c1
	_, err := amqp.Dial(b.url)
	ae := amqpErr(t, err, 530)
	require.Equal(t, "NOT_ALLOWED - access to vhost '"+b.vhost+"' refused for user '"+b.user+"': connection limit (2) is reached", ae.Reason)
	c2.Close()
	eventually(t, func() bool {
		c, err := amqp.Dial(b.url)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "a slot came free")
	api.expect(204, del, "/api/vhost-limits/{vhost}/max-connections", nil)
	api.expect(400, put, "/api/vhost-limits/{vhost}/max-bananas", map[string]any{"value": 1})
	api.expect(400, put, "/api/vhost-limits/{vhost}/max-queues", map[string]any{"value": "lots"})
	api.expect(404, put, "/api/vhost-limits/"+b.name("nowhere")+"/max-queues", map[string]any{"value": 1})

	// Vhost max-queues: 406 on the declare that would pass it.
	api.expect(204, put, "/api/vhost-limits/{vhost}/max-queues", map[string]any{"value": 3})
	_, ch := b.channel(t)
	for i := range 3 {
		_, err := ch.QueueDeclare(fmt.Sprintf("q%d", i), false, false, false, false, nil)
		require.NoError(t, err)
	}
	_, err = ch.QueueDeclare("q0", false, false, false, false, nil)
	require.NoError(t, err, "redeclaring an existing queue is fine")
	_, err = ch.QueueDeclare("q3", false, false, false, false, nil)
	ae = amqpErr(t, err, 406)
	require.Equal(t, "PRECONDITION_FAILED - cannot declare queue 'q3': queue limit in vhost '"+b.vhost+"' (3) is reached", ae.Reason)

	// User max-connections and max-channels.
	lim := addUser(t, b, "lim", server.Permission{Configure: ".*", Write: ".*", Read: ".*"})
	api.expect(204, put, "/api/user-limits/"+lim+"/max-connections", map[string]any{"value": 1})
	api.expect(204, put, "/api/user-limits/"+lim+"/max-channels", map[string]any{"value": 2})
	require.Len(t, api.expect(200, get, "/api/user-limits/"+lim, nil).list(t), 1)
	c := b.dialAs(t, lim)
	_, err = amqp.Dial(b.vurl(lim, lim+"-pw", b.vhost))
	ae = amqpErr(t, err, 530)
	require.Equal(t, "NOT_ALLOWED - connection refused for user '"+lim+"': user connection limit (1) is reached", ae.Reason)
	_, err = c.Channel()
	require.NoError(t, err)
	_, err = c.Channel()
	require.NoError(t, err)
	_, err = c.Channel()
	ae = amqpErr(t, err, 530)
	require.Equal(t, "NOT_ALLOWED - number of channels opened for user '"+lim+"' has reached the maximum allowed user limit of (2)", ae.Reason)
	api.expect(204, del, "/api/user-limits/"+lim+"/max-connections", nil)
	nobody := b.name("nobody")
	r := api.expect(400, put, "/api/user-limits/"+nobody+"/max-channels", map[string]any{"value": 1})
	require.Equal(t, map[string]any{"error": "bad_request", "reason": []any{"no_such_user", nobody}}, r.obj(t))
}
