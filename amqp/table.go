package amqp

// Table is an AMQP field table. Values keep the Go type of their wire type, so
// a decoded table encodes back to the same types:
//
//	t bool, b int8, B uint8, s int16, u uint16, I int32, i uint32, l int64,
//	f float32, d float64, D Decimal, S string, x []byte, A []any,
//	T time.Time, F Table, V nil.
type Table map[string]any

// Decimal is the 'D' field type: Value × 10^-Scale.
type Decimal struct {
	Scale uint8
	Value int32
}

// DecodeTable decodes a whole field table including its 4-byte length.
func DecodeTable(b []byte) (Table, error) {
	r := reader{b: b}
	t := r.table()
	if r.err == nil && r.off != len(b) {
		r.fail()
	}
	return t, r.err
}

// DecodeTableBody decodes the fields of a table that has no length prefix,
// as in the AMQPLAIN SASL response.
func DecodeTableBody(b []byte) (Table, error) {
	r := reader{b: b}
	t := Table{}
	for r.err == nil && r.off < len(b) {
		k := r.shortstr()
		v := r.value(len(b))
		if r.err == nil {
			t[k] = v
		}
	}
	return t, r.err
}

// AppendTable appends the wire form of t, length included.
func AppendTable(b []byte, t Table) []byte {
	w := writer{b: b}
	w.table(t)
	return w.b
}

// Int converts any integer field value to int64. ok is false for other types.
// RabbitMQ compares integers by value across widths (int32 5000 == int64 5000).
func Int(v any) (n int64, ok bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case int16:
		return int64(v), true
	case uint16:
		return int64(v), true
	case int32:
		return int64(v), true
	case uint32:
		return int64(v), true
	case int64:
		return v, true
	case int:
		return int64(v), true
	}
	return 0, false
}
