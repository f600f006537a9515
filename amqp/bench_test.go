package amqp

import (
	"bufio"
	"bytes"
	"testing"
)

// Codec hot paths, with allocations per op (make bench). The aim is none
// per frame: the broker allocates only the message itself.

// publishFrames is one 16-byte publish: method, content header, body.
func publishFrames() []byte {
	var b []byte
	b = AppendMethodFrame(b, 1, &BasicPublish{RoutingKey: "perf-test-0"})
	h := AppendContentHeader(nil, 16, &Properties{Flags: FlagDeliveryMode, DeliveryMode: 2})
	return AppendContent(b, 1, h, make([]byte, 16), 131072)
}

// loopReader serves the same bytes forever.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	fr := NewFrameReader(bufio.NewReaderSize(&loopReader{b: publishFrames()}, 64<<10), 131072)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fr.ReadFrame(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBasicPublish(b *testing.B) {
	p := EncodeMethod(&BasicPublish{Exchange: "amq.topic", RoutingKey: "orders.eu.created"})
	var m BasicPublish
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeMethodInto(&m, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBasicAck(b *testing.B) {
	p := EncodeMethod(&BasicAck{DeliveryTag: 12345, Multiple: true})
	var m BasicAck
	b.ReportAllocs()
	for b.Loop() {
		if err := DecodeMethodInto(&m, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeContentHeader(b *testing.B) {
	p := AppendContentHeader(nil, 16, &Properties{Flags: FlagDeliveryMode | FlagContentType, DeliveryMode: 2, ContentType: "application/json"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeContentHeader(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendContent(b *testing.B) {
	h := AppendContentHeader(nil, 16, &Properties{})
	body := make([]byte, 16)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendContent(buf[:0], 1, h, body, 131072)
	}
	if !bytes.Contains(buf, body) {
		b.Fatal("body missing")
	}
}
