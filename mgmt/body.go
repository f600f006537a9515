package mgmt

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
)

// RabbitMQ's management API reads booleans and integers in request bodies
// through rabbit_mgmt_util:parse_bool/parse_int, which take the JSON value or
// the same value as a string: rabbitmqadmin sends "durable": "true" and
// "count": "1". flexBool and flexInt accept what those accept, and refuse the
// rest with RabbitMQ's reason, a pair such as ["not_boolean","yes"].

// flexBool is a boolean that may arrive as true/false or "true"/"false".
type flexBool bool

func (b *flexBool) UnmarshalJSON(data []byte) error {
	switch string(data) {
	case "true", `"true"`:
		*b = true
	case "false", `"false"`:
		*b = false
	case "null":
	default:
		return valueError("not_boolean", data)
	}
	return nil
}

// flexInt is an integer that may arrive as a number or a string of digits.
type flexInt struct {
	n   int64
	set bool
}

func (i *flexInt) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	text := string(data)
	if len(data) > 1 && data[0] == '"' {
		if err := json.Unmarshal(data, &text); err != nil {
			return valueError("not_integer", data)
		}
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return valueError("not_integer", data)
	}
	i.n, i.set = n, true
	return nil
}

// or returns the value, or def when the field was absent.
func (i flexInt) or(def int64) int64 {
	if i.set {
		return i.n
	}
	return def
}

// badValue is a body field of the wrong kind, answered as RabbitMQ does:
// 400 with the reason ["not_boolean", value].
type badValue struct {
	kind  string
	value any
}

func (e *badValue) Error() string { return e.kind }

func valueError(kind string, raw []byte) error {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		v = string(raw)
	}
	return &badValue{kind: kind, value: v}
}

// badBody answers a body that readBody (or a field check after it) refused.
func badBody(w http.ResponseWriter, err error) {
	var bv *badValue
	if errors.As(err, &bv) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "bad_request", "reason": []any{bv.kind, bv.value}})
		return
	}
	badRequest(w, err.Error())
}
