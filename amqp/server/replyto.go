package server

import (
	"strings"
	"sync"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// Direct reply-to (RabbitMQ's amq.rabbitmq.reply-to): an RPC client
// consumes, with no-ack, from the pseudo-queue amq.rabbitmq.reply-to and
// publishes requests with reply_to set to that name; the broker rewrites
// reply_to to amq.rabbitmq.reply-to.<token>, and a reply published to the
// default exchange with that routing key goes straight to the requesting
// channel's consumer, without a queue.
const (
	replyQueue  = "amq.rabbitmq.reply-to"
	replyPrefix = replyQueue + "."
)

// replyRegistry maps tokens to the channels that consume replies.
type replyRegistry struct {
	mu sync.Mutex
	m  map[string]*channel
}

func (r *replyRegistry) add(token string, ch *channel) {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*channel{}
	}
	r.m[token] = ch
	r.mu.Unlock()
}

func (r *replyRegistry) remove(token string) {
	r.mu.Lock()
	delete(r.m, token)
	r.mu.Unlock()
}

func (r *replyRegistry) get(token string) *channel {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[token]
}

// replyConsume handles basic.consume on amq.rabbitmq.reply-to.
func (ch *channel) replyConsume(m *amqp.BasicConsume) error {
	if !m.NoAck {
		return amqp.Errorf(amqp.PreconditionFailed, "reply consumer cannot acknowledge")
	}
	if ch.replyTag != "" {
		return amqp.Errorf(amqp.PreconditionFailed, "reply consumer already set")
	}
	tag := m.ConsumerTag
	if tag == "" {
		tag = genName("amq.ctag-")
	}
	token := genName("")
	ch.mu.Lock()
	ch.replyTag, ch.replyToken = tag, token
	ch.mu.Unlock()
	ch.conn.srv.replies.add(token, ch)
	if !m.NoWait {
		ch.sendMethod(&amqp.BasicConsumeOk{ConsumerTag: tag})
	}
	return nil
}

// replyRelease ends the channel's reply consumer.
func (ch *channel) replyRelease() {
	ch.mu.Lock()
	token := ch.replyToken
	ch.replyTag, ch.replyToken = "", ""
	ch.mu.Unlock()
	if token != "" {
		ch.conn.srv.replies.remove(token)
	}
}

// rewriteReplyTo turns reply_to amq.rabbitmq.reply-to into the channel's
// own reply address.
func (ch *channel) rewriteReplyTo(pm *amqp.BasicPublish, msg *queue.Message) error {
	if ch.replyToken == "" {
		return amqp.Errorf(amqp.PreconditionFailed, "fast reply consumer does not exist").For(pm)
	}
	p := msg.Props()
	p.ReplyTo = replyPrefix + ch.replyToken
	msg.SetProps(&p)
	return nil
}

// deliverReply routes a message published to amq.rabbitmq.reply-to.<token>;
// it reports false when no channel has that token (unroutable).
func (s *Server) deliverReply(key string, msg *queue.Message) bool {
	token, ok := strings.CutPrefix(key, replyPrefix)
	if !ok {
		return false
	}
	ch := s.replies.get(token)
	if ch == nil {
		return false
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed || ch.replyToken != token {
		return false
	}
	ch.nextTag++
	tag := ch.nextTag
	ch.conn.send(func(b []byte) []byte {
		b = appendDeliver(b, ch.id, ch.replyTag, tag, false, msg.Exchange, msg.RoutingKey)
		return amqp.AppendContent(b, ch.id, msg.Header, msg.Body, ch.conn.frameMax)
	})
	return true
}
