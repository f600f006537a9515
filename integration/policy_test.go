package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

func publishN(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	for i := range n {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", q, false, false, amqp.Publishing{Body: []byte(fmt.Sprint(i))}))
	}
}

func readyCount(t *testing.T, ch *amqp.Channel, q string) int {
	t.Helper()
	st, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	if err != nil {
		st, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
	}
	require.NoError(t, err)
	return st.Messages
}

func TestPolicyResourceValidation(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	path := "/api/policies/%2F/p1"
	for name, body := range map[string]any{
		"unknown key":           map[string]any{"pattern": ".*", "definition": map[string]any{"no-such-key": 1}},
		"negative max-length":   map[string]any{"pattern": ".*", "definition": map[string]any{"max-length": -1}},
		"negative ttl":          map[string]any{"pattern": ".*", "definition": map[string]any{"message-ttl": -5}},
		"expires 0":             map[string]any{"pattern": ".*", "definition": map[string]any{"expires": 0}},
		"unknown overflow":      map[string]any{"pattern": ".*", "definition": map[string]any{"overflow": "explode"}},
		"empty definition":      map[string]any{"pattern": ".*", "definition": map[string]any{}},
		"unknown apply-to":      map[string]any{"pattern": ".*", "apply-to": "bindings", "definition": map[string]any{"max-length": 1}},
		"bad regex":             map[string]any{"pattern": "(", "definition": map[string]any{"max-length": 1}},
		"non-numeric priority":  map[string]any{"pattern": ".*", "priority": "high", "definition": map[string]any{"max-length": 1}},
		"missing pattern":       map[string]any{"definition": map[string]any{"max-length": 1}},
		"missing definition":    map[string]any{"pattern": ".*"},
		"string where a number": map[string]any{"pattern": ".*", "definition": map[string]any{"max-length": "ten"}},
	} {
		r := api.do(http.MethodPut, path, body)
		require.Equal(t, 400, r.status, name)
		require.Equal(t, "bad_request", r.obj(t)["error"], name)
		require.Contains(t, r.obj(t)["reason"], "Validation failed", name)
	}
	api.expect(201, http.MethodPut, path, map[string]any{"pattern": "^a", "definition": map[string]any{"max-length": 1}, "priority": "3"})
	api.expect(204, http.MethodPut, path, map[string]any{"pattern": "^a", "definition": map[string]any{"max-length": 2}})
	p := api.expect(200, http.MethodGet, path, nil).obj(t)
	require.Equal(t, map[string]any{"vhost": "/", "name": "p1", "pattern": "^a", "apply-to": "all",
		"definition": map[string]any{"max-length": 2.0}, "priority": 0.0}, p)
	require.Len(t, api.expect(200, http.MethodGet, "/api/policies", nil).list(t), 1)

	// Only policymakers and administrators may set policies (RabbitMQ 3.10.8: 401
	// "User not authorised to access object").
	api.expect(201, http.MethodPut, "/api/users/mgr", map[string]any{"password": "pw", "tags": "management"})
	api.expect(201, http.MethodPut, "/api/users/pm", map[string]any{"password": "pw", "tags": "policymaker"})
	for _, u := range []string{"mgr", "pm"} {
		api.expect(201, http.MethodPut, "/api/permissions/%2F/"+u, map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	}
	r := api.as("mgr", "pw").expect(401, http.MethodPut, "/api/policies/%2F/p2", map[string]any{"pattern": ".", "definition": map[string]any{"max-length": 1}})
	require.Equal(t, "User not authorised to access object", r.obj(t)["reason"])
	api.as("pm", "pw").expect(201, http.MethodPut, "/api/policies/%2F/p2", map[string]any{"pattern": ".", "definition": map[string]any{"max-length": 1}})
	api.expect(204, http.MethodDelete, path, nil)
	api.expect(404, http.MethodDelete, path, nil)
}

func TestPolicyPrecedenceAndApplyAtOnce(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("jobs", false, false, false, false, nil)
	require.NoError(t, err)
	publishN(t, ch, "jobs", 10)
	require.Equal(t, 10, readyCount(t, ch, "jobs"))

	// A policy applies at once: max-length 4 trims the oldest now.
	api.expect(201, http.MethodPut, "/api/policies/%2F/low", map[string]any{
		"pattern": "^jobs$", "priority": 1, "apply-to": "queues",
		"definition": map[string]any{"max-length": 4, "overflow": "reject-publish"}})
	require.Equal(t, 4, readyCount(t, ch, "jobs"))
	require.Equal(t, "6", getBody(t, ch, "jobs"), "the oldest were dropped")
	q := api.expect(200, http.MethodGet, "/api/queues/%2F/jobs", nil).obj(t)
	require.Equal(t, "low", q["policy"])
	require.Equal(t, map[string]any{"max-length": 4.0, "overflow": "reject-publish"}, q["effective_policy_definition"])
	require.Equal(t, map[string]any{}, q["arguments"], "the view shows the queue's own arguments")

	// Only the highest-priority policy applies; definitions are not merged,
	// so the lower policy's reject-publish no longer applies (drop-head does).
	api.expect(201, http.MethodPut, "/api/policies/%2F/high", map[string]any{
		"pattern": "job", "priority": 5, "definition": map[string]any{"max-length": 2}})
	require.Equal(t, 2, readyCount(t, ch, "jobs"))
	q = api.expect(200, http.MethodGet, "/api/queues/%2F/jobs", nil).obj(t)
	require.Equal(t, "high", q["policy"])
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "jobs", false, false, amqp.Publishing{Body: []byte("new")}))
	require.Equal(t, 2, readyCount(t, ch, "jobs"))
	require.Equal(t, "9", getBody(t, ch, "jobs"), "8 was dropped for the new message, not the new one rejected")

	// Deleting the winner falls back to the next matching policy.
	api.expect(204, http.MethodDelete, "/api/policies/%2F/high", nil)
	require.Equal(t, "low", api.expect(200, http.MethodGet, "/api/queues/%2F/jobs", nil).obj(t)["policy"])
	publishN(t, ch, "jobs", 5)
	require.Equal(t, 4, readyCount(t, ch, "jobs"))
	require.Equal(t, "new", getBody(t, ch, "jobs"), "reject-publish kept the oldest")
	api.expect(204, http.MethodDelete, "/api/policies/%2F/low", nil)
	q = api.expect(200, http.MethodGet, "/api/queues/%2F/jobs", nil).obj(t)
	require.Nil(t, q["policy"])
	require.Equal(t, map[string]any{}, q["effective_policy_definition"])
	publishN(t, ch, "jobs", 5)
	require.Equal(t, 8, readyCount(t, ch, "jobs"))
}

func TestPolicyAgainstQueueArguments(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	require.NoError(t, ch.ExchangeDeclare("dlx", "direct", false, false, false, false, nil))
	dead, err := ch.QueueDeclare("dead-by-policy-key", false, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind(dead.Name, "from-policy", "dlx", false, nil))
	// The lower max-length wins; the queue's own DLX wins but the policy's
	// routing key still applies.
	_, err = ch.QueueDeclare("argq", false, false, false, false, amqp.Table{"x-max-length": int32(2), "x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	api.expect(201, http.MethodPut, "/api/policies/%2F/p", map[string]any{"pattern": "^argq$", "definition": map[string]any{
		"max-length": 5, "dead-letter-exchange": "elsewhere", "dead-letter-routing-key": "from-policy"}})
	publishN(t, ch, "argq", 3)
	require.Equal(t, 2, readyCount(t, ch, "argq"))
	eventually(t, func() bool { return readyCount(t, ch, dead.Name) == 1 }, "the dropped head was dead-lettered via the queue's DLX with the policy's key")
	d, ok, err := ch.Get(dead.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "0", string(d.Body))
	death := d.Headers["x-death"].([]any)[0].(amqp.Table)
	require.Equal(t, "maxlen", death["reason"])

	// A policy may set dead-letter-routing-key alone, and a policy
	// alternate-exchange loses to the exchange's own argument.
	require.NoError(t, ch.ExchangeDeclare("ae-arg", "fanout", false, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare("ae-pol", "fanout", false, false, false, false, nil))
	for _, n := range []string{"got-arg", "got-pol"} {
		_, err := ch.QueueDeclare(n, false, false, false, false, nil)
		require.NoError(t, err)
	}
	require.NoError(t, ch.QueueBind("got-arg", "", "ae-arg", false, nil))
	require.NoError(t, ch.QueueBind("got-pol", "", "ae-pol", false, nil))
	require.NoError(t, ch.ExchangeDeclare("with-arg", "direct", false, false, false, false, amqp.Table{"alternate-exchange": "ae-arg"}))
	require.NoError(t, ch.ExchangeDeclare("without-arg", "direct", false, false, false, false, nil))
	api.expect(201, http.MethodPut, "/api/policies/%2F/ae", map[string]any{"pattern": "-arg$", "apply-to": "exchanges",
		"definition": map[string]any{"alternate-exchange": "ae-pol"}})
	require.NoError(t, ch.PublishWithContext(context.Background(), "with-arg", "x", false, false, amqp.Publishing{Body: []byte("a")}))
	require.NoError(t, ch.PublishWithContext(context.Background(), "without-arg", "x", false, false, amqp.Publishing{Body: []byte("b")}))
	eventually(t, func() bool { return readyCount(t, ch, "got-arg") == 1 && readyCount(t, ch, "got-pol") == 1 }, "each unroutable message reached its AE")
	require.Equal(t, "a", getBody(t, ch, "got-arg"))
	require.Equal(t, "b", getBody(t, ch, "got-pol"))
	// The exchange redeclares without the policy's AE being inequivalent.
	require.NoError(t, ch.ExchangeDeclare("without-arg", "direct", false, false, false, false, nil))
	require.Equal(t, "ae", api.expect(200, http.MethodGet, "/api/exchanges/%2F/without-arg", nil).obj(t)["policy"])
}

func TestPolicyDeliveryLimit(t *testing.T) {
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("poison-dlq", false, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("work", false, false, false, false, amqp.Table{"x-dead-letter-exchange": ""})
	require.NoError(t, err)
	api.expect(201, http.MethodPut, "/api/policies/%2F/poison", map[string]any{"pattern": "^work$",
		"definition": map[string]any{"delivery-limit": 2, "dead-letter-routing-key": "poison-dlq"}})
	publishN(t, ch, "work", 1)
	// Delivered 3 times (the first and two returns), then dead-lettered.
	for i := range 3 {
		d, ok, err := ch.Get("work", false)
		require.NoError(t, err)
		require.True(t, ok, "delivery %d", i+1)
		require.Equal(t, i > 0, d.Redelivered)
		require.NoError(t, d.Nack(false, true))
	}
	eventually(t, func() bool { return readyCount(t, ch, "poison-dlq") == 1 }, "poison message dead-lettered")
	require.Equal(t, 0, readyCount(t, ch, "work"))
	d, ok, err := ch.Get("poison-dlq", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "delivery_limit", d.Headers["x-death"].([]any)[0].(amqp.Table)["reason"])

	// The same limit as a queue argument.
	_, err = ch.QueueDeclare("limited", false, false, false, false, amqp.Table{"x-delivery-limit": int32(0)})
	require.NoError(t, err)
	publishN(t, ch, "limited", 1)
	d, ok, err = ch.Get("limited", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Nack(false, true))
	eventually(t, func() bool { return readyCount(t, ch, "limited") == 0 }, "dropped after its first return (no DLX)")
	_, err = ch.QueueDeclare("bad-limit", false, false, false, false, amqp.Table{"x-delivery-limit": int32(-1)})
	amqpErr(t, err, 406)
}

// TestDeliveryLimitCountSurvivesRestart: the return count of a message in
// a durable queue is kept across a restart (as a quorum queue's is), so a
// poison message does not get its full allowance again after each restart.
func TestDeliveryLimitCountSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startDurable(t, dir)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("dlq", true, false, false, false, nil)
	require.NoError(t, err)
	args := amqp.Table{"x-delivery-limit": int32(2), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
	_, err = ch.QueueDeclare("work", true, false, false, false, args)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "work", false, false,
		amqp.Publishing{Body: []byte("poison"), DeliveryMode: amqp.Persistent}))
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "work", false, false,
		amqp.Publishing{Body: []byte("fine"), DeliveryMode: amqp.Persistent}))
	for range 2 { // returned twice: one return left
		d, ok, err := ch.Get("work", false)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "poison", string(d.Body))
		require.NoError(t, d.Nack(false, true))
	}
	readyCount(t, ch, "work") // the nacks are processed
	b.stop()

	b = startDurable(t, dir)
	_, ch = b.channel(t)
	d, ok, err := ch.Get("work", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "poison", string(d.Body))
	require.True(t, d.Redelivered)
	require.NoError(t, d.Nack(false, true)) // the third return: over the limit
	eventually(t, func() bool { return readyCount(t, ch, "dlq") == 1 }, "dead-lettered on its third return overall")
	require.Equal(t, "poison", getBody(t, ch, "dlq"))
	require.Equal(t, "fine", getBody(t, ch, "work"))
	require.Equal(t, "", getBody(t, ch, "work"))
}

func TestPolicySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	b := startDurable(t, dir)
	api := startAPI(t, b.broker)
	api.expect(201, http.MethodPut, "/api/policies/%2F/cap", map[string]any{"pattern": "^capped", "priority": 7,
		"definition": map[string]any{"max-length": 3, "message-ttl": 3600000}})
	c, err := amqp.Dial(b.url)
	require.NoError(t, err)
	ch, err := c.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("capped", true, false, false, false, nil)
	require.NoError(t, err)
	c.Close()
	b.stop()

	b = startDurable(t, dir)
	api = startAPI(t, b.broker)
	p := api.expect(200, http.MethodGet, "/api/policies/%2F/cap", nil).obj(t)
	require.Equal(t, 7.0, p["priority"])
	require.Equal(t, map[string]any{"max-length": 3.0, "message-ttl": 3600000.0}, p["definition"])
	require.Equal(t, "cap", api.expect(200, http.MethodGet, "/api/queues/%2F/capped", nil).obj(t)["policy"])
	_, ch = b.channel(t)
	for i := range 5 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "capped", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i))}))
	}
	require.Equal(t, 3, readyCount(t, ch, "capped"))
}
