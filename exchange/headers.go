package exchange

import (
	"bytes"
	"strings"

	"github.com/warren-mq/warren/amqp"
)

// headers routes by the message's headers table against each binding's
// arguments, following RabbitMQ: x-match is all (default), any, all-with-x or
// any-with-x; arguments starting "x-" take part only in the -with-x modes; a
// void binding value matches the header's presence; integers compare by value
// across widths and a string never equals a number.
type headers[D comparable] struct {
	bindingSet[D]
}

func (h *headers[D]) Add(b Binding[D]) bool    { return h.add(b) }
func (h *headers[D]) Remove(b Binding[D]) bool { return h.remove(b) }

func (h *headers[D]) Match(_ string, hdrs amqp.Table, fn func(D)) {
	for i := range h.list {
		if HeadersMatch(h.list[i].Args, hdrs) {
			fn(h.list[i].Dest)
		}
	}
}

// ValidXMatch reports whether v is an x-match value RabbitMQ accepts.
func ValidXMatch(v any) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	switch s {
	case "all", "any", "all-with-x", "any-with-x":
		return true
	}
	return false
}

// HeadersMatch reports whether a message with headers hdrs matches a headers
// binding with arguments args.
func HeadersMatch(args, hdrs amqp.Table) bool {
	mode, _ := args["x-match"].(string)
	if mode == "" {
		mode = "all"
	}
	withX := strings.HasSuffix(mode, "-with-x")
	any := strings.HasPrefix(mode, "any")
	for k, want := range args {
		if k == "x-match" || (!withX && strings.HasPrefix(k, "x-")) {
			continue
		}
		got, present := hdrs[k]
		ok := present && (want == nil || valuesEqual(want, got))
		if any && ok {
			return true
		}
		if !any && !ok {
			return false
		}
	}
	return !any
}

func valuesEqual(a, b any) bool {
	if x, ok := amqp.Int(a); ok {
		y, ok := amqp.Int(b)
		return ok && x == y
	}
	switch a := a.(type) {
	case string:
		switch b := b.(type) {
		case string:
			return a == b
		case []byte:
			return a == string(b)
		}
		return false
	case []byte:
		switch b := b.(type) {
		case string:
			return string(a) == b
		case []byte:
			return bytes.Equal(a, b)
		}
		return false
	case bool, float32, float64, amqp.Decimal:
		return a == b
	}
	return CanonicalArgs(amqp.Table{"": a}) == CanonicalArgs(amqp.Table{"": b})
}
