package server

import (
	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/queue"
)

// newMessage builds the message of a completed publish. buf holds the
// content header then the body (one allocation); the exchange name and
// routing key are interned, so a deep queue's messages share one copy.
// Reader goroutine only.
func (c *conn) newMessage(pm *amqp.BasicPublish, header, body []byte) *queue.Message {
	return queue.NewMessage(c.names.Intern(pm.Exchange), c.names.Intern(pm.RoutingKey), header, body)
}

// headersOf returns msg's headers table: the one decoded from the content
// header of the publish being completed when msg is that message (no second
// decode on the publish path), else decoded from msg.
func (ch *channel) headersOf(msg *queue.Message) amqp.Table {
	if msg == ch.pub.msg {
		return ch.pub.props.Headers
	}
	return msg.Headers()
}

// propsOf returns msg's properties for routing: the ones the channel
// decoded at publish for the message it is publishing, else decoded now (a
// transaction's commit).
func (ch *channel) propsOf(msg *queue.Message) *amqp.Properties {
	if msg == ch.pub.msg {
		return &ch.pub.props
	}
	p := msg.Props()
	return &p
}
