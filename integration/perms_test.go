package integration

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// addUser creates a user named base plus the test's suffix, with the
// password name+"-pw", tags, and permissions p on the test's vhost, through
// the management API (as a RabbitMQ operator would), and returns its name.
func addUser(t *testing.T, b *broker, base string, p server.Permission, tags ...string) string {
	t.Helper()
	name := b.name(base)
	api := startAPI(t, b)
	api.expect(201, http.MethodPut, "/api/users/"+url.PathEscape(name), map[string]any{"password": name + "-pw", "tags": strings.Join(tags, ",")})
	setPermission(t, b, name, b.vhost, p)
	return name
}

// setPermission sets a user's permissions on a vhost through the API.
func setPermission(t *testing.T, b *broker, user, vhost string, p server.Permission) {
	t.Helper()
	r := startAPI(t, b).do(http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user),
		map[string]any{"configure": p.Configure, "write": p.Write, "read": p.Read})
	require.Contains(t, []int{201, 204}, r.status, string(r.raw))
}

// dialAs connects to the test's vhost as a user made by addUser.
func (b *broker) dialAs(t *testing.T, user string) *amqp.Connection {
	t.Helper()
	c, err := amqp.Dial(b.vurl(user, user+"-pw", b.vhost))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPermissionsEnforced follows RabbitMQ's table of which permission each
// operation needs, with its 403 texts, on channels that are closed by each
// refusal while the connection stays open.
func TestPermissionsEnforced(t *testing.T) {
	b := startBroker(t, server.Config{})
	alice := addUser(t, b, "alice", server.Permission{Configure: "^alice-.*", Write: "^alice-.*|^amq\\.default$", Read: "^alice-.*"})
	_, admin := b.channel(t)
	_, err := admin.QueueDeclare("bob-q", false, false, false, false, nil)
	require.NoError(t, err)
	c := b.dialAs(t, alice)
	refused := func(resource, name string) string {
		return "ACCESS_REFUSED - access to " + resource + " '" + name + "' in vhost '" + b.vhost + "' refused for user '" + alice + "'"
	}
	// try runs op on a fresh channel and checks it is refused with text.
	try := func(text string, op func(ch *amqp.Channel) error) {
		t.Helper()
		ch, err := c.Channel()
		require.NoError(t, err)
		err = op(ch)
		if text == "" {
			require.NoError(t, err)
			ch.Close()
			return
		}
		ae := amqpErr(t, err, 403)
		require.Equal(t, text, ae.Reason)
		require.False(t, c.IsClosed(), "a refusal closes the channel, not the connection")
	}
	ctx := context.Background()
	pub := func(ch *amqp.Channel, ex, key string) error {
		closed := ch.NotifyClose(make(chan *amqp.Error, 1))
		if err := ch.PublishWithContext(ctx, ex, key, false, false, amqp.Publishing{Body: []byte("x")}); err != nil {
			return err
		}
		_, err := ch.QueueDeclarePassive("alice-q", false, false, false, false, nil) // a round trip
		return closeReason(t, closed, err)
	}

	try("", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("alice-q", false, false, false, false, nil)
		return err
	})
	try(refused("queue", "bob-q2"), func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("bob-q2", false, false, false, false, nil)
		return err
	})
	// A server-named queue needs configure on its amq.gen- name.
	gen, err := c.Channel()
	require.NoError(t, err)
	_, err = gen.QueueDeclare("", false, false, true, false, nil)
	ae := amqpErr(t, err, 403)
	require.Regexp(t, `^ACCESS_REFUSED - access to queue 'amq\.gen-[A-Za-z0-9_-]{22}' in vhost '`+regexp.QuoteMeta(b.vhost)+`' refused for user '`+alice+`'$`, ae.Reason)
	// Passive declares need nothing.
	try("", func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclarePassive("bob-q", false, false, false, false, nil)
		return err
	})
	try("", func(ch *amqp.Channel) error { return pub(ch, "", "alice-q") })
	try(refused("exchange", "amq.direct"), func(ch *amqp.Channel) error { return pub(ch, "amq.direct", "alice-q") })
	try(refused("queue", "bob-q"), func(ch *amqp.Channel) error { _, _, err := ch.Get("bob-q", true); return err })
	try(refused("queue", "bob-q"), func(ch *amqp.Channel) error {
		_, err := ch.Consume("bob-q", "", true, false, false, false, nil)
		return err
	})
	try(refused("queue", "bob-q"), func(ch *amqp.Channel) error { _, err := ch.QueuePurge("bob-q", false); return err })
	try(refused("queue", "bob-q"), func(ch *amqp.Channel) error { _, err := ch.QueueDelete("bob-q", false, false, false); return err })
	// Bindings: write on the destination (checked first), read on the source.
	try(refused("queue", "bob-q"), func(ch *amqp.Channel) error { return ch.QueueBind("bob-q", "k", "amq.fanout", false, nil) })
	try(refused("exchange", "amq.fanout"), func(ch *amqp.Channel) error { return ch.QueueBind("alice-q", "k", "amq.fanout", false, nil) })
	try(refused("exchange", "amq.direct"), func(ch *amqp.Channel) error { return ch.ExchangeBind("amq.direct", "k", "alice-x", false, nil) })
	try("", func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare("alice-x", "fanout", false, false, false, false, nil)
	})
	try("", func(ch *amqp.Channel) error { return ch.QueueBind("alice-q", "k", "alice-x", false, nil) })
	try(refused("exchange", "amq.topic"), func(ch *amqp.Channel) error {
		return ch.ExchangeDeclare("alice-y", "fanout", false, false, false, false, amqp.Table{"alternate-exchange": "amq.topic"})
	})
	try(refused("exchange", "amq.topic"), func(ch *amqp.Channel) error {
		_, err := ch.QueueDeclare("alice-dl", false, false, false, false, amqp.Table{"x-dead-letter-exchange": "amq.topic"})
		return err
	})
	// A system exchange is refused before permissions are looked at.
	try("ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '"+b.vhost+"' not allowed", func(ch *amqp.Channel) error {
		return ch.ExchangeDelete("amq.direct", false, false)
	})
	try("", func(ch *amqp.Channel) error { _, err := ch.QueueDelete("alice-q", false, false, false); return err })
	ok, err := c.Channel()
	require.NoError(t, err, "the connection survived every refusal")
	ok.Close()
}

func TestPermissionChangesApplyToOpenChannels(t *testing.T) {
	b := startBroker(t, server.Config{})
	carol := addUser(t, b, "carol", server.Permission{Configure: ".*", Write: ".*", Read: ".*"})
	c := b.dialAs(t, carol)
	old, err := c.Channel()
	require.NoError(t, err)
	setPermission(t, b, carol, b.vhost, server.Permission{Configure: "^$", Write: "^$", Read: "^$"})
	_, err = old.QueueDeclare("carol-q", false, false, false, false, nil)
	ae := amqpErr(t, err, 403)
	require.Equal(t, "ACCESS_REFUSED - access to queue 'carol-q' in vhost '"+b.vhost+"' refused for user '"+carol+"'", ae.Reason,
		"an open channel checks the permissions as they are now")
	fresh, err := c.Channel()
	require.NoError(t, err)
	_, err = fresh.QueueDeclare("carol-q2", false, false, false, false, nil)
	amqpErr(t, err, 403)
}

func TestVhostAccessAndUserID(t *testing.T) {
	b := startBroker(t, server.Config{})
	other := b.name("other")
	startAPI(t, b).expect(201, http.MethodPut, "/api/vhosts/"+url.PathEscape(other), nil)
	dave := addUser(t, b, "dave", server.Permission{Configure: "^$", Write: ".*", Read: "^$"})
	_, err := amqp.Dial(b.vurl(dave, dave+"-pw", other))
	ae := amqpErr(t, err, 530)
	require.Equal(t, "NOT_ALLOWED - access to vhost '"+other+"' refused for user '"+dave+"'", ae.Reason)

	// ^$ everywhere still opens the vhost.
	c := b.dialAs(t, dave)
	ch, err := c.Channel()
	require.NoError(t, err)
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	require.NoError(t, ch.PublishWithContext(context.Background(), "amq.fanout", "", false, false, amqp.Publishing{UserId: "someone-else"}))
	_, err = ch.QueueDeclarePassive("amq.rabbitmq.reply-to", false, false, false, false, nil)
	ae = amqpErr(t, closeReason(t, closed, err), 406)
	require.Equal(t, "PRECONDITION_FAILED - user_id property set to 'someone-else' but authenticated user was '"+dave+"'", ae.Reason)

	// The impersonator tag lifts the user_id check.
	erin := addUser(t, b, "erin", server.Permission{Configure: ".*", Write: ".*", Read: ".*"}, "impersonator")
	ch2, err := b.dialAs(t, erin).Channel()
	require.NoError(t, err)
	q, err := ch2.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch2.PublishWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{UserId: "someone-else", Body: []byte("m")}))
	d, ok, err := ch2.Get(q.Name, true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "someone-else", d.UserId)
}
