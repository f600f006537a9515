package integration

import (
	"net/http"
	"net/url"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func TestConnectionsAPIListAndForceClose(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)

	cfg := amqp.Config{Properties: amqp.Table{"connection_name": "my-app"}}
	c, err := amqp.DialConfig(b.url, cfg)
	require.NoError(t, err)
	defer c.Close()

	r := api.as(b.user, "wrong").do(http.MethodGet, "/api/connections/", nil)
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Contains(t, r.header.Get("WWW-Authenticate"), "Basic")

	// The test's vhost holds its one connection (RabbitMQ lists a new
	// connection once its statistics arrive).
	var conns []any
	eventually(t, func() bool {
		conns = api.expect(http.StatusOK, http.MethodGet, "/api/vhosts/{vhost}/connections", nil).list(t)
		return len(conns) == 1
	}, "the connection is listed")
	conn := conns[0].(map[string]any)
	require.Equal(t, b.user, conn["user"])
	require.Equal(t, "my-app", conn["client_properties"].(map[string]any)["connection_name"])
	name := conn["name"].(string)
	found := false
	for _, o := range api.expect(http.StatusOK, http.MethodGet, "/api/connections/", nil).list(t) {
		found = found || o.(map[string]any)["name"] == name
	}
	require.True(t, found, "/api/connections lists it too")

	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	req, err := http.NewRequest(http.MethodDelete, api.base+"/api/connections/"+url.PathEscape(name), nil)
	require.NoError(t, err)
	req.SetBasicAuth(api.user, api.pass)
	req.Header.Set("X-Reason", "maintenance window")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	select {
	case e := <-closed:
		require.Equal(t, 320, e.Code)
		require.Contains(t, e.Reason, "maintenance window")
	case <-timeout():
		t.Fatal("connection not closed")
	}

	api.expect(http.StatusNotFound, http.MethodDelete, "/api/connections/nope", nil)
}
