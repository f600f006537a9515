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

// waitReady waits until q holds n ready messages. RabbitMQ's count in a
// declare-ok may leave out messages just published on the same channel (its
// queue answers the count ahead of deliveries still waiting for it), and it
// applies a new policy to its queues asynchronously.
func waitReady(t *testing.T, ch *amqp.Channel, q string, n int) {
	t.Helper()
	var got int
	eventually(t, func() bool { got = readyCount(t, ch, q); return got == n }, fmt.Sprintf("%d ready in %s", n, q))
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
	path := "/api/policies/{vhost}/p1"
	validation := "Validation failed"
	for name, c := range map[string]struct {
		body   any
		reason string
	}{
		"unknown key":           {map[string]any{"pattern": ".*", "definition": map[string]any{"no-such-key": 1}}, validation},
		"negative max-length":   {map[string]any{"pattern": ".*", "definition": map[string]any{"max-length": -1}}, validation},
		"negative ttl":          {map[string]any{"pattern": ".*", "definition": map[string]any{"message-ttl": -5}}, validation},
		"expires 0":             {map[string]any{"pattern": ".*", "definition": map[string]any{"expires": 0}}, validation},
		"unknown overflow":      {map[string]any{"pattern": ".*", "definition": map[string]any{"overflow": "explode"}}, validation},
		"empty definition":      {map[string]any{"pattern": ".*", "definition": map[string]any{}}, validation},
		"unknown apply-to":      {map[string]any{"pattern": ".*", "apply-to": "bindings", "definition": map[string]any{"max-length": 1}}, validation},
		"bad regex":             {map[string]any{"pattern": "(", "definition": map[string]any{"max-length": 1}}, validation},
		"non-numeric priority":  {map[string]any{"pattern": ".*", "priority": "high", "definition": map[string]any{"max-length": 1}}, validation},
		"priority as a string":  {map[string]any{"pattern": ".*", "priority": "3", "definition": map[string]any{"max-length": 1}}, "priority should be a number"},
		"string where a number": {map[string]any{"pattern": ".*", "definition": map[string]any{"max-length": "ten"}}, validation},
		// A missing key fails before validation, with Erlang's term for it.
		"missing pattern":    {map[string]any{"definition": map[string]any{"max-length": 1}}, "[{key_missing,pattern}]"},
		"missing definition": {map[string]any{"pattern": ".*"}, "[{key_missing,definition}]"},
	} {
		r := api.do(http.MethodPut, path, c.body)
		require.Equal(t, 400, r.status, name)
		require.Equal(t, "bad_request", r.obj(t)["error"], name)
		require.Contains(t, r.obj(t)["reason"], c.reason, name)
	}
	api.expect(201, http.MethodPut, path, map[string]any{"pattern": "^a", "definition": map[string]any{"max-length": 1}, "priority": 3})
	api.expect(204, http.MethodPut, path, map[string]any{"pattern": "^a", "definition": map[string]any{"max-length": 2}})
	p := api.expect(200, http.MethodGet, path, nil).obj(t)
	require.Equal(t, map[string]any{"vhost": b.vhost, "name": "p1", "pattern": "^a", "apply-to": "all",
		"definition": map[string]any{"max-length": 2.0}, "priority": 0.0}, p)
	require.Len(t, api.expect(200, http.MethodGet, "/api/policies/{vhost}", nil).list(t), 1)

	// Only policymakers and administrators may set policies.
	mgr, pm := b.name("mgr"), b.name("pm")
	api.expect(201, http.MethodPut, "/api/users/"+mgr, map[string]any{"password": "pw", "tags": "management"})
	api.expect(201, http.MethodPut, "/api/users/"+pm, map[string]any{"password": "pw", "tags": "policymaker"})
	for _, u := range []string{mgr, pm} {
		api.expect(201, http.MethodPut, "/api/permissions/{vhost}/"+u, map[string]any{"configure": ".*", "write": ".*", "read": ".*"})
	}
	r := api.as(mgr, "pw").expect(401, http.MethodPut, "/api/policies/{vhost}/p2", map[string]any{"pattern": ".", "definition": map[string]any{"max-length": 1}})
	require.Equal(t, map[string]any{"error": "not_authorised", "reason": "User not authorised to access object"}, r.obj(t))
	api.as(pm, "pw").expect(201, http.MethodPut, "/api/policies/{vhost}/p2", map[string]any{"pattern": ".", "definition": map[string]any{"max-length": 1}})
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
	waitReady(t, ch, "jobs", 10)

	// A policy applies at once: max-length 4 trims the oldest now.
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/low", map[string]any{
		"pattern": "^jobs$", "priority": 1, "apply-to": "queues",
		"definition": map[string]any{"max-length": 4, "overflow": "reject-publish"}})
	waitReady(t, ch, "jobs", 4)
	require.Equal(t, "6", getBody(t, ch, "jobs"), "the oldest were dropped")
	q := api.await("/api/queues/{vhost}/jobs", "policy", "low")
	require.Equal(t, map[string]any{"max-length": 4.0, "overflow": "reject-publish"}, q["effective_policy_definition"])
	require.Equal(t, map[string]any{}, q["arguments"], "the view shows the queue's own arguments")

	// Only the highest-priority policy applies; definitions are not merged,
	// so the lower policy's reject-publish no longer applies (drop-head does).
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/high", map[string]any{
		"pattern": "job", "priority": 5, "definition": map[string]any{"max-length": 2}})
	waitReady(t, ch, "jobs", 2)
	api.await("/api/queues/{vhost}/jobs", "policy", "high")
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "jobs", false, false, amqp.Publishing{Body: []byte("new")}))
	waitReady(t, ch, "jobs", 2)
	require.Equal(t, "9", getBody(t, ch, "jobs"), "8 was dropped for the new message, not the new one rejected")

	// Deleting the winner falls back to the next matching policy.
	api.expect(204, http.MethodDelete, "/api/policies/{vhost}/high", nil)
	api.await("/api/queues/{vhost}/jobs", "policy", "low")
	publishN(t, ch, "jobs", 5)
	waitReady(t, ch, "jobs", 4)
	require.Equal(t, "new", getBody(t, ch, "jobs"), "reject-publish kept the oldest")
	api.expect(204, http.MethodDelete, "/api/policies/{vhost}/low", nil)
	q = api.await("/api/queues/{vhost}/jobs", "policy", nil)
	require.Equal(t, map[string]any{}, q["effective_policy_definition"])
	publishN(t, ch, "jobs", 5)
	waitReady(t, ch, "jobs", 8)
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
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/p", map[string]any{"pattern": "^argq$", "definition": map[string]any{
		"max-length": 5, "dead-letter-exchange": "elsewhere", "dead-letter-routing-key": "from-policy"}})
	publishN(t, ch, "argq", 3)
	waitReady(t, ch, "argq", 2)
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
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/ae", map[string]any{"pattern": "-arg$", "apply-to": "exchanges",
		"definition": map[string]any{"alternate-exchange": "ae-pol"}})
	require.NoError(t, ch.PublishWithContext(context.Background(), "with-arg", "x", false, false, amqp.Publishing{Body: []byte("a")}))
	require.NoError(t, ch.PublishWithContext(context.Background(), "without-arg", "x", false, false, amqp.Publishing{Body: []byte("b")}))
	eventually(t, func() bool { return readyCount(t, ch, "got-arg") == 1 && readyCount(t, ch, "got-pol") == 1 }, "each unroutable message reached its AE")
	require.Equal(t, "a", getBody(t, ch, "got-arg"))
	require.Equal(t, "b", getBody(t, ch, "got-pol"))
	// The exchange redeclares without the policy's AE being inequivalent.
	require.NoError(t, ch.ExchangeDeclare("without-arg", "direct", false, false, false, false, nil))
	api.await("/api/exchanges/{vhost}/without-arg", "policy", "ae")
}

func TestPolicyDeliveryLimit(t *testing.T) {
	warrenOnly(t, "delivery-limit on a classic queue is a Warren addition (RabbitMQ honours it on quorum queues only)")
	b := startBroker(t, server.Config{})
	api := startAPI(t, b)
	_, ch := b.channel(t)
	_, err := ch.QueueDeclare("poison-dlq", false, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("work", false, false, false, false, amqp.Table{"x-dead-letter-exchange": ""})
	require.NoError(t, err)
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/poison", map[string]any{"pattern": "^work$",
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
	waitReady(t, ch, "work", 0)
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
	warrenOnly(t, "restarts an in-process Warren on its data directory")
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
	warrenOnly(t, "restarts an in-process Warren on its data directory")
	dir := t.TempDir()
	b := startDurable(t, dir)
	api := startAPI(t, b.broker)
	api.expect(201, http.MethodPut, "/api/policies/{vhost}/cap", map[string]any{"pattern": "^capped", "priority": 7,
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
	p := api.expect(200, http.MethodGet, "/api/policies/{vhost}/cap", nil).obj(t)
	require.Equal(t, 7.0, p["priority"])
	require.Equal(t, map[string]any{"max-length": 3.0, "message-ttl": 3600000.0}, p["definition"])
	api.await("/api/queues/{vhost}/capped", "policy", "cap")
	_, ch = b.channel(t)
	for i := range 5 {
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "capped", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte(fmt.Sprint(i))}))
	}
	waitReady(t, ch, "capped", 3)
}
