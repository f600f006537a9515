package amqp

import "fmt"

// Error is a protocol exception: a reply code with RabbitMQ-style text
// ("NOT_FOUND - no queue 'q' in vhost '/'") and the method that caused it.
// Hard errors (per the spec's constant classes) close the connection; soft
// ones close only the channel.
type Error struct {
	Code     uint16
	Text     string
	ClassID  uint16
	MethodID uint16
}

func (e *Error) Error() string {
	return fmt.Sprintf("amqp %d: %s", e.Code, e.Text)
}

// Hard reports whether the error closes the whole connection.
func (e *Error) Hard() bool { return hardErrors[e.Code] }

// ReplyName is the spec name of a reply code, e.g. "NOT_FOUND".
func ReplyName(code uint16) string { return replyNames[code] }

// Errorf builds an Error whose text is "NAME - " followed by the formatted
// detail, the form RabbitMQ uses.
func Errorf(code uint16, format string, a ...any) *Error {
	return &Error{Code: code, Text: replyNames[code] + " - " + fmt.Sprintf(format, a...)}
}

// For returns a copy of e naming the method that caused it.
func (e *Error) For(m Method) *Error {
	c := *e
	if m != nil {
		c.ClassID, c.MethodID = m.IDs()
	}
	return &c
}
