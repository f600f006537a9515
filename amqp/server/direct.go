package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/warren-mq/warren/amqp"
)

// Direct is an in-process session of one user on one vhost. It runs AMQP
// methods through the channel code network clients reach (permission
// checks, argument validation, persistence, the same reply codes and texts)
// and hands back the replies, as RabbitMQ's management plugin uses a direct
// connection. A Direct is for one goroutine; Close releases it (messages
// got without ack are requeued then).
type Direct struct {
	c  *conn
	ch *channel
}

// ErrAccessRefused is returned by OpenDirect when the user has no
// permissions on the vhost.
var ErrAccessRefused = errors.New("access refused")

// OpenDirect opens a session for user on vhost; the user must exist and
// have permissions there.
func (s *Server) OpenDirect(user, vhost string) (*Direct, error) {
	s.mu.Lock()
	u, v := s.users[user], s.vhosts[vhost]
	var allowed bool
	if u != nil {
		_, allowed = u.Permissions[vhost]
	}
	s.mu.Unlock()
	switch {
	case u == nil:
		return nil, fmt.Errorf("user %q: %w", user, ErrNotFound)
	case v == nil:
		return nil, fmt.Errorf("vhost %q: %w", vhost, ErrNotFound)
	case !allowed:
		return nil, ErrAccessRefused
	}
	return s.openDirect(u, v), nil
}

func (s *Server) openDirect(u *User, v *Vhost) *Direct {
	c := &conn{
		srv:        s,
		log:        s.log.With(zap.String("direct", u.Name), zap.String("vhost", v.Name)),
		channels:   map[uint16]*channel{},
		outKick:    make(chan struct{}, 1),
		stopWrite:  make(chan struct{}),
		writeDone:  make(chan struct{}),
		forced:     make(chan *amqp.Error, 1),
		frameMax:   s.cfg.FrameMax,
		channelMax: 1,
		user:       u,
		vhost:      v,
		name:       "direct " + u.Name,
		state:      stateOpen,
	}
	d := &Direct{c: c}
	d.open()
	return d
}

func (d *Direct) open() {
	d.ch = newChannel(d.c, 1)
	d.c.channels[1] = d.ch
}

// Close releases the session: unacked messages go back to their queues.
func (d *Direct) Close() {
	d.c.teardown()
}

// Reply is what the broker sent back for one call: the reply method and,
// for basic.get-ok or basic.return, the message.
type Reply struct {
	Method amqp.Method
	Props  amqp.Properties
	Body   []byte
	// Returned is set when a publish came back as basic.return.
	Returned *amqp.BasicReturn
}

// Call runs one synchronous method (or a publish without content) and returns
// the broker's reply. A refusal comes back as the *amqp.Error that would have
// closed the channel (or connection); the session stays usable.
func (d *Direct) Call(m amqp.Method) (*Reply, error) {
	return d.run(func() error {
		return d.ch.handleFrame(amqp.Frame{Type: amqp.FrameMethod, Channel: 1, Payload: amqp.EncodeMethod(m)})
	})
}

// Publish sends a message as basic.publish with its content. With mandatory,
// Reply.Returned tells whether it was unroutable.
func (d *Direct) Publish(m *amqp.BasicPublish, props amqp.Properties, body []byte) (*Reply, error) {
	return d.run(func() error {
		if err := d.ch.handleFrame(amqp.Frame{Type: amqp.FrameMethod, Channel: 1, Payload: amqp.EncodeMethod(m)}); err != nil {
			return err
		}
		if d.ch.state != chanAwaitHdr {
			return nil // refused: the channel.close is in the output
		}
		hdr := amqp.AppendContentHeader(nil, uint64(len(body)), &props)
		if err := d.ch.handleFrame(amqp.Frame{Type: amqp.FrameHeader, Channel: 1, Payload: hdr}); err != nil || len(body) == 0 {
			return err
		}
		return d.ch.handleFrame(amqp.Frame{Type: amqp.FrameBody, Channel: 1, Payload: body})
	})
}

// run calls fn and decodes what it sent. On a channel or connection error
// the channel is replaced with a fresh one.
func (d *Direct) run(fn func() error) (*Reply, error) {
	err := fn()
	out := d.take()
	if err != nil {
		d.reset()
		return nil, err
	}
	r, err := parseReply(out, d.c.frameMax)
	if err != nil {
		d.reset()
		return nil, err
	}
	return r, nil
}

func (d *Direct) take() []byte {
	d.c.outMu.Lock()
	defer d.c.outMu.Unlock()
	out := d.c.out
	d.c.out = nil
	d.c.outLen.Store(0)
	return out
}

func (d *Direct) reset() {
	d.ch.release()
	delete(d.c.channels, 1)
	d.open()
}

// parseReply decodes the frames a call produced: a channel.close becomes
// its *amqp.Error; otherwise the first method is the reply, with its content
// if it has some.
func parseReply(out []byte, frameMax uint32) (*Reply, error) {
	fr := amqp.NewFrameReader(bufio.NewReader(bytes.NewReader(out)), frameMax)
	r := &Reply{}
	var want uint64
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return r, nil // end of output
		}
		switch f.Type {
		case amqp.FrameMethod:
			m, err := amqp.DecodeMethod(f.Payload)
			if err != nil {
				return nil, err
			}
			switch m := m.(type) {
			case *amqp.ChannelClose:
				return nil, &amqp.Error{Code: m.ReplyCode, Text: m.ReplyText, ClassID: m.ClassID, MethodID: m.MethodID}
			case *amqp.BasicReturn:
				r.Returned = m
				continue
			case *amqp.BasicAck, *amqp.BasicNack:
				continue // confirms are not a reply
			}
			if r.Method == nil {
				r.Method = m
			}
		case amqp.FrameHeader:
			h, err := amqp.DecodeContentHeader(f.Payload)
			if err != nil {
				return nil, err
			}
			r.Props, want = h.Properties, h.BodySize
			r.Body = make([]byte, 0, want)
		case amqp.FrameBody:
			r.Body = append(r.Body, f.Payload...)
		}
	}
}

// OpenInternalDirect opens a session on vhost that no permission limits,
// for definitions import and health checks (RabbitMQ's internal user).
func (s *Server) OpenInternalDirect(vhost string) (*Direct, error) {
	s.mu.Lock()
	v := s.vhosts[vhost]
	s.mu.Unlock()
	if v == nil {
		return nil, fmt.Errorf("vhost %q: %w", vhost, ErrNotFound)
	}
	return s.openDirect(internalUserOf(vhost), v), nil
}
