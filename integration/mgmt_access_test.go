package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// accessCase is one management API call by one user, with what RabbitMQ
// 3.10.8 answered: testdata/mgmt-access-rabbitmq-3.10.8.jsonl was recorded
// against it by testdata/mgmt-access-record.py (python3
// mgmt-access-record.py http://127.0.0.1:15673 out.jsonl).
type accessCase struct {
	Method string          `json:"method"`
	Path   string          `json:"path"`
	User   string          `json:"user"`
	Body   json.RawMessage `json:"body"`
	Status int             `json:"status"`
	Reason any             `json:"reason"`
	// Lists: for a 200 list, whether it showed objects of "/" (where every
	// user has permissions) and of "acl-v" (where only guest has).
	Lists map[string]bool `json:"lists"`
}

// TestManagementAccessControlMatchesRabbitMQ replays every endpoint for a
// user of each tag (none, management, policymaker, monitoring,
// administrator), each with permissions on "/" only, on "/" and on a vhost
// without permissions, and checks status, refusal text and which vhosts a
// list shows against RabbitMQ's answers.
func TestManagementAccessControlMatchesRabbitMQ(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)

	// The same set-up as the recording script: two vhosts with an exchange,
	// a queue, a binding, a policy and a limit each; one user per tag.
	// The recording's names and vhosts are fixed; against a shared broker
	// they may exist from an earlier run, and are removed afterwards.
	const v, root = "acl-v", "%2F"
	t.Cleanup(func() {
		api.do("DELETE", "/api/vhosts/"+v, nil)
		for _, u := range []string{"acl-none", "acl-mgmt", "acl-pol", "acl-mon", "acl-adm"} {
			api.do("DELETE", "/api/users/"+u, nil)
		}
		for _, path := range []string{"/api/exchanges/" + root + "/acl-x", "/api/queues/" + root + "/acl-q",
			"/api/policies/" + root + "/acl-p", "/api/vhost-limits/" + root + "/max-connections"} {
			api.do("DELETE", path, nil)
		}
	})
	api.do("PUT", "/api/vhosts/"+v, map[string]any{})
	api.do("PUT", "/api/permissions/"+v+"/guest", map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	for _, u := range []struct{ name, tags string }{
		{"acl-none", ""}, {"acl-mgmt", "management"}, {"acl-pol", "policymaker"}, {"acl-mon", "monitoring"}, {"acl-adm", "administrator"},
	} {
		api.do("PUT", "/api/users/"+u.name, map[string]any{"password": "p", "tags": u.tags})
		api.do("PUT", "/api/permissions/"+root+"/"+u.name, map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	}
	for _, vh := range []string{v, root} {
		for _, call := range []struct {
			method, path string
			body         map[string]any
		}{
			{"PUT", "/api/exchanges/" + vh + "/acl-x", map[string]any{"type": "direct", "durable": true}},
			{"PUT", "/api/queues/" + vh + "/acl-q", map[string]any{"durable": true}},
			{"POST", "/api/bindings/" + vh + "/e/acl-x/q/acl-q", map[string]any{"routing_key": "k"}},
			{"PUT", "/api/policies/" + vh + "/acl-p", map[string]any{"pattern": "^zzz", "definition": map[string]any{"max-length": 5}}},
			{"PUT", "/api/vhost-limits/" + vh + "/max-connections", map[string]any{"value": 100}},
		} {
			r := api.do(call.method, call.path, call.body)
			require.Contains(t, []int{201, 204}, r.status, "%s %s: %s", call.method, call.path, r.raw)
		}
	}

	f, err := os.Open("testdata/mgmt-access-rabbitmq-3.10.8.jsonl")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var c accessCase
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		n++
		var body any
		if c.Body != nil {
			body = []byte(c.Body)
		}
		r := api.as(c.User, "p").do(c.Method, c.Path, body)
		what := fmt.Sprintf("%s %s as %s: %s", c.Method, c.Path, c.User, r.raw)
		if !assert.Equal(t, c.Status, r.status, what) {
			continue
		}
		if c.Reason != nil {
			assert.Equal(t, c.Reason, r.obj(t)["reason"], what)
		}
		if c.Lists != nil {
			shown := map[string]bool{}
			for _, it := range r.list(t) {
				m := it.(map[string]any)
				if vh, ok := m["vhost"].(string); ok {
					shown[vh] = true
				}
				if c.Path == "/api/vhosts" {
					shown[m["name"].(string)] = true
				}
			}
			for vh, want := range c.Lists {
				assert.Equal(t, want, shown[vh], "%s lists %s", what, vh)
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 540, n, "cases replayed")
}
