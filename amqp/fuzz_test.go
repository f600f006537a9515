package amqp

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
	"time"
)

// Every decoder: no panic on any input; what decodes re-encodes and decodes
// to the same value.

func FuzzFrameReader(f *testing.F) {
	f.Add(AppendHeartbeat(nil))
	f.Add(AppendMethodFrame(nil, 1, &BasicPublish{Exchange: "x"}))
	f.Add([]byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xce})
	f.Fuzz(func(t *testing.T, b []byte) {
		fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)), 4096)
		for i := 0; i < 16; i++ {
			fr2, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if len(fr2.Payload) > 4096 {
				t.Fatalf("payload of %d bytes accepted over frame_max", len(fr2.Payload))
			}
		}
	})
}

func FuzzDecodeMethod(f *testing.F) {
	for _, m := range []Method{
		&ConnectionStartOk{ClientProperties: Table{"a": "b"}, Mechanism: "PLAIN", Response: "\x00guest\x00guest", Locale: "en_US"},
		&BasicPublish{Exchange: "x", RoutingKey: "k", Mandatory: true},
		&QueueDeclare{Queue: "q", Arguments: Table{"x-message-ttl": int32(5)}},
		&BasicAck{DeliveryTag: 5, Multiple: true},
	} {
		f.Add(EncodeMethod(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMethod(b)
		if err != nil {
			return
		}
		m2, err := DecodeMethod(EncodeMethod(m))
		if err != nil {
			t.Fatalf("re-decode %s: %v", m.Name(), err)
		}
		if !equalMethods(m, m2) {
			t.Fatalf("%s round trip differs: %#v vs %#v", m.Name(), m, m2)
		}
	})
}

func FuzzDecodeTable(f *testing.F) {
	f.Add(AppendTable(nil, everyType()))
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		tb, err := DecodeTable(b)
		if err != nil {
			return
		}
		tb2, err := DecodeTable(AppendTable(nil, tb))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !equalTables(tb, tb2) {
			t.Fatalf("round trip differs: %#v vs %#v", tb, tb2)
		}
	})
}

func FuzzDecodeContentHeader(f *testing.F) {
	f.Add(AppendContentHeader(nil, 5, &Properties{Flags: FlagHeaders | FlagDeliveryMode, Headers: Table{"a": int8(1)}, DeliveryMode: 2}))
	f.Add(AppendContentHeader(nil, 0, &Properties{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeContentHeader(b)
		if err != nil {
			return
		}
		p := h.Properties
		p.Flags &^= 1 // continuation words are not re-encoded
		h2, err := DecodeContentHeader(AppendContentHeader(nil, h.BodySize, &p))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if h2.BodySize != h.BodySize || !equalTables(h.Headers, h2.Headers) || h.Expiration != h2.Expiration || h.DeliveryMode != h2.DeliveryMode {
			t.Fatalf("round trip differs")
		}
	})
}

func equalMethods(a, b Method) bool {
	// Tables compare by content; times by instant.
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(m Method) any {
	v := reflect.ValueOf(m).Elem()
	out := make([]any, v.NumField())
	for i := range out {
		switch x := v.Field(i).Interface().(type) {
		case Table:
			out[i] = canon(x)
		default:
			out[i] = x
		}
	}
	return out
}

func equalTables(a, b Table) bool { return reflect.DeepEqual(canon(a), canon(b)) }

// canon replaces times with their Unix seconds and NaN-safe floats with bits.
func canon(v any) any {
	switch x := v.(type) {
	case Table:
		if x == nil {
			return Table{}
		}
		m := map[string]any{}
		for k, e := range x {
			m[k] = canon(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = canon(e)
		}
		return s
	case time.Time:
		return x.Unix()
	case float64:
		return bitsOf64(x)
	case float32:
		return bitsOf32(x)
	}
	return v
}
