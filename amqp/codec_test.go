package amqp

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// everyType holds one value of each field-table type.
func everyType() Table {
	return Table{
		"bool": true, "int8": int8(-3), "uint8": uint8(200), "int16": int16(-300),
		"uint16": uint16(60000), "int32": int32(-70000), "uint32": uint32(4000000000),
		"int64": int64(-1 << 40), "float32": float32(1.5), "float64": math.Pi,
		"decimal": Decimal{Scale: 2, Value: 12345}, "string": "héllo", "bytes": []byte{0, 1, 2},
		"array": []any{"a", int32(1), nil, Table{"x": true}}, "time": time.Unix(1700000000, 0),
		"table": Table{"nested": Table{"deep": int64(7)}}, "void": nil,
	}
}

func TestTableRoundTripEveryType(t *testing.T) {
	in := everyType()
	b := AppendTable(nil, in)
	out, err := DecodeTable(b)
	require.NoError(t, err)
	require.Equal(t, len(in), len(out))
	for k, v := range in {
		if tm, ok := v.(time.Time); ok {
			require.True(t, tm.Equal(out[k].(time.Time)), k)
			continue
		}
		require.Equal(t, v, out[k], k)
	}
}

func TestTableWireTypes(t *testing.T) {
	// Each Go type encodes to the RabbitMQ type letter (the 0-9-1 errata).
	for _, c := range []struct {
		v    any
		want byte
	}{
		{true, 't'}, {int8(1), 'b'}, {uint8(1), 'B'}, {int16(1), 's'}, {uint16(1), 'u'},
		{int32(1), 'I'}, {uint32(1), 'i'}, {int64(1), 'l'}, {float32(1), 'f'}, {float64(1), 'd'},
		{Decimal{}, 'D'}, {"s", 'S'}, {[]byte("x"), 'x'}, {[]any{}, 'A'}, {time.Unix(0, 0), 'T'},
		{Table{}, 'F'}, {nil, 'V'},
	} {
		b := AppendTable(nil, Table{"k": c.v})
		require.Equal(t, c.want, b[4+1+1], "%T", c.v)
	}
}

func TestDecodeTableRejectsBadInput(t *testing.T) {
	for name, b := range map[string][]byte{
		"length past end":     {0, 0, 0, 10, 1, 'k'},
		"unknown type":        {0, 0, 0, 3, 1, 'k', 'Z'},
		"truncated long":      {0, 0, 0, 4, 1, 'k', 'I', 0},
		"string past table":   {0, 0, 0, 7, 1, 'k', 'S', 0, 0, 0, 9},
		"huge array length":   {0, 0, 0, 7, 1, 'k', 'A', 0xff, 0xff, 0xff, 0xff},
		"trailing bytes":      {0, 0, 0, 0, 1},
		"short length prefix": {0, 0},
	} {
		_, err := DecodeTable(b)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
}

func TestDecodeTableDepthBounded(t *testing.T) {
	tb := Table{}
	for i := 0; i < 100; i++ {
		tb = Table{"n": tb}
	}
	_, err := DecodeTable(AppendTable(nil, tb))
	require.ErrorIs(t, err, ErrMalformed)
}

func TestMethodRoundTrip(t *testing.T) {
	for _, m := range []Method{
		&ConnectionStart{VersionMajor: 0, VersionMinor: 9, ServerProperties: Table{"product": "x"}, Mechanisms: "PLAIN", Locales: "en_US"},
		&ConnectionTune{ChannelMax: 2047, FrameMax: 131072, Heartbeat: 60},
		&ConnectionClose{ReplyCode: 320, ReplyText: "CONNECTION_FORCED", ClassID: 10, MethodID: 40},
		&QueueDeclare{Queue: "q", Passive: true, Durable: false, Exclusive: true, AutoDelete: true, NoWait: true, Arguments: Table{"x-max-length": int32(5)}},
		&BasicPublish{Exchange: "x", RoutingKey: "rk", Mandatory: true, Immediate: false},
		&BasicDeliver{ConsumerTag: "c", DeliveryTag: 1 << 40, Redelivered: true, Exchange: "e", RoutingKey: "k"},
		&BasicNack{DeliveryTag: 9, Multiple: true, Requeue: true},
		&ExchangeDeclare{Exchange: "e", Type: "topic", Durable: true, Internal: true, Arguments: Table{}},
		&ConfirmSelect{Nowait: true},
	} {
		p := EncodeMethod(m)
		got, err := DecodeMethod(p)
		require.NoError(t, err, m.Name())
		require.Equal(t, m, got, m.Name())
	}
}

func TestDecodeMethodErrors(t *testing.T) {
	_, err := DecodeMethod([]byte{0, 60})
	var ae *Error
	require.True(t, errors.As(err, &ae))
	require.Equal(t, uint16(SyntaxError), ae.Code)

	_, err = DecodeMethod([]byte{0, 99, 0, 1})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, uint16(CommandInvalid), ae.Code)
	require.True(t, ae.Hard())

	// basic.publish cut short inside the exchange name.
	_, err = DecodeMethod([]byte{0, 60, 0, 40, 0, 0, 5, 'a'})
	require.True(t, errors.As(err, &ae))
	require.Equal(t, uint16(SyntaxError), ae.Code)
}

func TestMethodFlagsFromSpec(t *testing.T) {
	require.True(t, (&BasicPublish{}).HasContent())
	require.False(t, (&BasicPublish{}).Synchronous())
	require.True(t, (&QueueDeclare{}).Synchronous())
	require.True(t, (&BasicGetOk{}).HasContent())
	require.False(t, (&Error{Code: NotFound}).Hard())
	require.True(t, (&Error{Code: ChannelError}).Hard())
	require.Equal(t, "PRECONDITION_FAILED", ReplyName(PreconditionFailed))
	c, m := (&ConnectionUpdateSecret{}).IDs()
	require.Equal(t, [2]uint16{10, 70}, [2]uint16{c, m})
}

func TestFrameReader(t *testing.T) {
	var b []byte
	b = AppendMethodFrame(b, 1, &BasicQos{PrefetchCount: 10})
	b = AppendHeartbeat(b)
	b = AppendContent(b, 1, AppendContentHeader(nil, 10, &Properties{}), []byte("0123456789"), 4096+FrameOverhead-4092)
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)), 4096)
	f, err := fr.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, uint8(FrameMethod), f.Type)
	require.Equal(t, uint16(1), f.Channel)
	f, err = fr.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, uint8(FrameHeartbeat), f.Type)
	f, err = fr.ReadFrame()
	require.NoError(t, err)
	require.Equal(t, uint8(FrameHeader), f.Type)
	require.Equal(t, uint64(10), HeaderBodySize(f.Payload))
	var body []byte
	for len(body) < 10 {
		f, err = fr.ReadFrame()
		require.NoError(t, err)
		require.Equal(t, uint8(FrameBody), f.Type)
		require.LessOrEqual(t, len(f.Payload), 4)
		body = append(body, f.Payload...)
	}
	require.Equal(t, "0123456789", string(body))
}

func TestFrameReaderRejectsOversizeBeforeAllocating(t *testing.T) {
	b := []byte{1, 0, 0, 0xff, 0xff, 0xff, 0xff}
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)), 131072)
	_, err := fr.ReadFrame()
	var ae *Error
	require.True(t, errors.As(err, &ae))
	require.Equal(t, uint16(FrameError), ae.Code)
	require.Nil(t, fr.buf, "nothing allocated for the declared size")
}

// TestFrameReaderPayloadLimit: as RabbitMQ's reader, the limit applies to the
// payload, so a frame of frame_max+8 octets in total is accepted and one
// more octet is refused with RabbitMQ's text.
func TestFrameReaderPayloadLimit(t *testing.T) {
	for _, tc := range []struct {
		max, payload uint32
		err          string
	}{
		{4096, 0, ""},
		{4096, 4088, ""},
		{4096, 4096, ""},
		{4096, 4097, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}"},
		{131072, 131072, ""},
		{131072, 131073, "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,131073,131064}"},
	} {
		b := AppendFrameHeader(nil, FrameBody, 1, int(tc.payload))
		b = append(append(b, bytes.Repeat([]byte{'x'}, int(tc.payload))...), FrameEnd)
		b = AppendHeartbeat(b)
		fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)), tc.max)
		f, err := fr.ReadFrame()
		if tc.err != "" {
			var ae *Error
			require.True(t, errors.As(err, &ae), "max %d payload %d: %v", tc.max, tc.payload, err)
			require.Equal(t, uint16(FrameError), ae.Code)
			require.Equal(t, tc.err, ae.Text)
			continue
		}
		require.NoError(t, err, "max %d payload %d", tc.max, tc.payload)
		require.Equal(t, int(tc.payload), len(f.Payload))
		f, err = fr.ReadFrame()
		require.NoError(t, err, "the stream stays in sync after a frame at the limit")
		require.Equal(t, uint8(FrameHeartbeat), f.Type)
	}
}

func TestFrameReaderBadFrameEnd(t *testing.T) {
	b := AppendHeartbeat(nil)
	b[len(b)-1] = 0
	fr := NewFrameReader(bufio.NewReader(bytes.NewReader(b)), 4096)
	_, err := fr.ReadFrame()
	var ae *Error
	require.True(t, errors.As(err, &ae))
	require.Equal(t, uint16(FrameError), ae.Code)
}

// TestFrameStreamSplitAtEveryOffset feeds a valid stream through a reader
// that returns one byte at a time at every split, and checks the frames.
func TestFrameStreamSplitAtEveryOffset(t *testing.T) {
	var b []byte
	b = AppendMethodFrame(b, 3, &BasicPublish{Exchange: "ex", RoutingKey: "rk"})
	b = AppendContent(b, 3, AppendContentHeader(nil, 5, &Properties{Flags: FlagDeliveryMode, DeliveryMode: 2}), []byte("hello"), 4096)
	for split := 0; split <= len(b); split++ {
		r := io2(b[:split], b[split:])
		fr := NewFrameReader(bufio.NewReaderSize(r, 16), 4096)
		var types []uint8
		for i := 0; i < 3; i++ {
			f, err := fr.ReadFrame()
			require.NoError(t, err, "split %d", split)
			types = append(types, f.Type)
		}
		require.Equal(t, []uint8{FrameMethod, FrameHeader, FrameBody}, types)
	}
}

type twoPart struct{ parts [][]byte }

func io2(a, b []byte) *twoPart { return &twoPart{parts: [][]byte{a, b}} }

func (t *twoPart) Read(p []byte) (int, error) {
	for len(t.parts) > 0 && len(t.parts[0]) == 0 {
		t.parts = t.parts[1:]
	}
	if len(t.parts) == 0 {
		return 0, errors.New("EOF")
	}
	n := copy(p[:1], t.parts[0])
	t.parts[0] = t.parts[0][n:]
	return n, nil
}

func TestContentHeaderProperties(t *testing.T) {
	p := Properties{
		Flags:       FlagContentType | FlagHeaders | FlagDeliveryMode | FlagPriority | FlagExpiration | FlagTimestamp | FlagUserID,
		ContentType: "text/plain", Headers: Table{"a": int32(1)}, DeliveryMode: 2, Priority: 7,
		Expiration: "1000", Timestamp: time.Unix(1700000000, 0), UserID: "guest",
	}
	b := AppendContentHeader(nil, 42, &p)
	h, err := DecodeContentHeader(b)
	require.NoError(t, err)
	require.Equal(t, uint64(42), h.BodySize)
	require.Equal(t, uint16(ClassBasic), h.ClassID)
	require.True(t, reflect.DeepEqual(p.Headers, h.Headers))
	require.Equal(t, p.Expiration, h.Expiration)
	require.Equal(t, p.Priority, h.Priority)
	require.Equal(t, p.UserID, h.UserID)
	require.True(t, p.Timestamp.Equal(h.Timestamp))
	require.Equal(t, p.Flags, h.Flags)
}
