package amqp

import (
	"encoding/binary"
	"errors"
	"math"
	"time"
)

// ErrMalformed is wrapped by every decoding error: the peer sent bytes that do
// not parse as what the protocol says must come next.
var ErrMalformed = errors.New("malformed")

// maxTableDepth bounds nested tables and arrays, so a hostile peer cannot
// exhaust the stack.
const maxTableDepth = 32

// reader is a bounds-checked cursor over one frame's payload. The first error
// sticks; later reads return zero values.
type reader struct {
	b     []byte
	off   int
	err   error
	depth int
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrMalformed
	}
	r.off = len(r.b)
}

func (r *reader) need(n int) bool {
	if r.err != nil || n < 0 || len(r.b)-r.off < n {
		r.fail()
		return false
	}
	return true
}

func (r *reader) octet() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

func (r *reader) short() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) long() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *reader) longlong() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *reader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) shortstr() string {
	n := int(r.octet())
	return string(r.bytes(n))
}

// shortstrReuse reads a shortstr and returns old when it has the same
// bytes (the comparison does not allocate), a new string otherwise.
func (r *reader) shortstrReuse(old string) string {
	n := int(r.octet())
	b := r.bytes(n)
	if string(b) == old {
		return old
	}
	return string(b)
}

func (r *reader) longstr() string {
	n := r.long()
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail()
		return ""
	}
	return string(r.bytes(int(n)))
}

func (r *reader) timestamp() time.Time {
	return time.Unix(int64(r.longlong()), 0)
}

func (r *reader) table() Table {
	n := r.long()
	if uint64(n) > uint64(len(r.b)-r.off) {
		r.fail()
		return nil
	}
	if r.depth >= maxTableDepth {
		r.fail()
		return nil
	}
	end := r.off + int(n)
	t := Table{}
	r.depth++
	for r.err == nil && r.off < end {
		k := r.shortstr()
		v := r.value(end)
		if r.off > end {
			r.fail()
		}
		if r.err == nil {
			t[k] = v
		}
	}
	r.depth--
	if r.err != nil {
		return nil
	}
	return t
}

// value reads one typed field value; end bounds the enclosing table or array.
func (r *reader) value(end int) any {
	sub := reader{b: r.b[:end], off: r.off, err: r.err, depth: r.depth}
	v := sub.fieldValue()
	r.off, r.err = sub.off, sub.err
	if r.err != nil {
		r.off = len(r.b)
	}
	return v
}

func (r *reader) fieldValue() any {
	switch r.octet() {
	case 't':
		return r.octet() != 0
	case 'b':
		return int8(r.octet())
	case 'B':
		return r.octet()
	case 's':
		return int16(r.short())
	case 'u':
		return r.short()
	case 'I':
		return int32(r.long())
	case 'i':
		return r.long()
	case 'l':
		return int64(r.longlong())
	case 'f':
		return math.Float32frombits(r.long())
	case 'd':
		return math.Float64frombits(r.longlong())
	case 'D':
		scale := r.octet()
		return Decimal{Scale: scale, Value: int32(r.long())}
	case 'S':
		return r.longstr()
	case 'x':
		n := r.long()
		if uint64(n) > uint64(len(r.b)-r.off) {
			r.fail()
			return nil
		}
		return append([]byte(nil), r.bytes(int(n))...)
	case 'A':
		n := r.long()
		if uint64(n) > uint64(len(r.b)-r.off) || r.depth >= maxTableDepth {
			r.fail()
			return nil
		}
		end := r.off + int(n)
		arr := []any{}
		r.depth++
		for r.err == nil && r.off < end {
			v := r.value(end)
			if r.err == nil {
				arr = append(arr, v)
			}
		}
		r.depth--
		return arr
	case 'T':
		return r.timestamp()
	case 'F':
		return r.table()
	case 'V':
		return nil
	}
	r.fail()
	return nil
}

// writer appends the wire form of values to a byte slice.
type writer struct {
	b []byte
}

func (w *writer) octet(v uint8) { w.b = append(w.b, v) }
func (w *writer) bit(v bool) {
	if v {
		w.octet(1)
	} else {
		w.octet(0)
	}
}
func (w *writer) short(v uint16)    { w.b = binary.BigEndian.AppendUint16(w.b, v) }
func (w *writer) long(v uint32)     { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *writer) longlong(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }

func (w *writer) shortstr(s string) {
	if len(s) > 255 {
		s = s[:255]
	}
	w.b = append(w.b, byte(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) longstr(s string) {
	w.long(uint32(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) timestamp(t time.Time) { w.longlong(uint64(t.Unix())) }

func (w *writer) table(t Table) {
	start := len(w.b)
	w.long(0)
	for k, v := range t {
		w.shortstr(k)
		w.fieldValue(v)
	}
	binary.BigEndian.PutUint32(w.b[start:], uint32(len(w.b)-start-4))
}

func (w *writer) fieldValue(v any) {
	switch v := v.(type) {
	case bool:
		w.octet('t')
		w.bit(v)
	case int8:
		w.octet('b')
		w.octet(uint8(v))
	case uint8:
		w.octet('B')
		w.octet(v)
	case int16:
		w.octet('s')
		w.short(uint16(v))
	case uint16:
		w.octet('u')
		w.short(v)
	case int32:
		w.octet('I')
		w.long(uint32(v))
	case uint32:
		w.octet('i')
		w.long(v)
	case int:
		w.octet('l')
		w.longlong(uint64(v))
	case int64:
		w.octet('l')
		w.longlong(uint64(v))
	case float32:
		w.octet('f')
		w.long(math.Float32bits(v))
	case float64:
		w.octet('d')
		w.longlong(math.Float64bits(v))
	case Decimal:
		w.octet('D')
		w.octet(v.Scale)
		w.long(uint32(v.Value))
	case string:
		w.octet('S')
		w.longstr(v)
	case []byte:
		w.octet('x')
		w.long(uint32(len(v)))
		w.b = append(w.b, v...)
	case []any:
		w.octet('A')
		start := len(w.b)
		w.long(0)
		for _, e := range v {
			w.fieldValue(e)
		}
		binary.BigEndian.PutUint32(w.b[start:], uint32(len(w.b)-start-4))
	case time.Time:
		w.octet('T')
		w.timestamp(v)
	case Table:
		w.octet('F')
		w.table(v)
	case map[string]any:
		w.octet('F')
		w.table(Table(v))
	default:
		w.octet('V')
	}
}
