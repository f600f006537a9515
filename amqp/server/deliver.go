package server

import (
	"encoding/binary"

	"github.com/warren-mq/warren/amqp"
)

// appendDeliver appends a basic.deliver method frame. It is the hot path's
// hand-inlined form of AppendMethodFrame(&amqp.BasicDeliver{...}), which
// would allocate the method struct per delivery.
func appendDeliver(b []byte, channel uint16, consumerTag string, tag uint64, redelivered bool, exchange, key string) []byte {
	start := len(b)
	b = amqp.AppendFrameHeader(b, amqp.FrameMethod, channel, 0)
	b = binary.BigEndian.AppendUint16(b, amqp.ClassBasic)
	b = binary.BigEndian.AppendUint16(b, 60)
	b = appendShortstr(b, consumerTag)
	b = binary.BigEndian.AppendUint64(b, tag)
	if redelivered {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = appendShortstr(b, exchange)
	b = appendShortstr(b, key)
	binary.BigEndian.PutUint32(b[start+3:], uint32(len(b)-start-7))
	return append(b, amqp.FrameEnd)
}

func appendShortstr(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}
