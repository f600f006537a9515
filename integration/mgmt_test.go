package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
	"github.com/warren-mq/warren/mgmt"
)

func TestConnectionsAPIListAndForceClose(t *testing.T) {
	b := startBroker(t, server.Config{})
	hs := httptest.NewServer(mgmt.NewHandler(b.Server))
	t.Cleanup(hs.Close)

	cfg := amqp.Config{Properties: amqp.Table{"connection_name": "my-app"}}
	c, err := amqp.DialConfig(b.url, cfg)
	require.NoError(t, err)
	defer c.Close()

	get := func(user, pass string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, hs.URL+"/api/connections/", nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := get("guest", "wrong")
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), "Basic")
	resp.Body.Close()

	resp = get("guest", "guest")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var conns []struct {
		Name             string         `json:"name"`
		User             string         `json:"user"`
		ClientProperties map[string]any `json:"client_properties"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&conns))
	resp.Body.Close()
	require.Len(t, conns, 1)
	require.Equal(t, "guest", conns[0].User)
	require.Equal(t, "my-app", conns[0].ClientProperties["connection_name"])

	closed := c.NotifyClose(make(chan *amqp.Error, 1))
	req, _ := http.NewRequest(http.MethodDelete, hs.URL+"/api/connections/"+url.PathEscape(conns[0].Name), nil)
	req.SetBasicAuth("guest", "guest")
	req.Header.Set("X-Reason", "maintenance window")
	resp, err = http.DefaultClient.Do(req)
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

	req, _ = http.NewRequest(http.MethodDelete, hs.URL+"/api/connections/nope", nil)
	req.SetBasicAuth("guest", "guest")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}
