package shovel

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Ack modes (RabbitMQ's ack-mode values).
const (
	OnConfirm = "on-confirm"
	OnPublish = "on-publish"
	NoAck     = "no-ack"
)

// DeleteAfter values other than a count.
const (
	Never       int64 = -1 // "never": the shovel runs until deleted
	QueueLength int64 = -2 // "queue-length": the source queue's length when the shovel starts
)

// Def is a parsed shovel definition (the parameter's value).
type Def struct {
	SrcURIs         []string
	SrcQueue        string // "" with SrcExchange: a queue of the shovel's own, bound to it
	SrcExchange     string
	SrcExchangeKey  string
	SrcQueueArgs    map[string]any
	SrcConsumerArgs map[string]any
	Prefetch        int
	DeleteAfter     int64 // a count, Never or QueueLength

	DestURIs []string
	// Where messages go: DestQueue through the default exchange; otherwise
	// DestExchange (else the exchange they came from) with DestExchangeKey
	// (else the routing key they came with).
	DestQueue, DestExchange, DestExchangeKey *string
	DestQueueArgs                            map[string]any
	AddForwardHeaders                        bool
	AddTimestampHeader                       bool
	PublishProperties                        map[string]any

	AckMode        string
	ReconnectDelay time.Duration
}

// validationError is a refusal with RabbitMQ's text (as the management API
// shows it: HTML-escaped).
type validationError string

func (e validationError) Error() string { return string(e) }

func refuse(format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	s = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
	return validationError(s)
}

// term writes a JSON value as Erlang's ~p shows the term RabbitMQ decoded
// it to: strings are binaries, objects maps.
func term(v any) string {
	switch v := v.(type) {
	case string:
		return "<<" + strconv.Quote(v) + ">>"
	case nil:
		return "null"
	case []any:
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = term(e)
		}
		return "[" + strings.Join(parts, ",") + "]"
	case map[string]any:
		parts := []string{}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, term(k)+" => "+term(v[k]))
		}
		return "#{" + strings.Join(parts, ",") + "}"
	}
	return fmt.Sprint(v)
}

// number reads a JSON number (json.Number from the API, float64 after a
// round trip through the store or the cluster's log).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func integer(v any) (int64, bool) {
	f, ok := number(v)
	if !ok || f != math.Trunc(f) {
		return 0, false
	}
	return int64(f), true
}

// A check validates one key as rabbit_parameter_validation does.
type check struct {
	key       string
	fn        func(key string, v any) error
	mandatory bool
}

func isNumber(key string, v any) error {
	if _, ok := number(v); !ok {
		return refuse("%s should be a number, actually was %s", key, term(v))
	}
	return nil
}

func isBinary(key string, v any) error {
	if _, ok := v.(string); !ok {
		return refuse("%s should be binary, actually was %s", key, term(v))
	}
	return nil
}

func isBoolean(key string, v any) error {
	if _, ok := v.(bool); !ok {
		return refuse("%s should be boolean, actually was %s", key, term(v))
	}
	return nil
}

func oneOf(values ...string) func(string, any) error {
	return func(key string, v any) error {
		if s, ok := v.(string); ok && slices.Contains(values, s) {
			return nil
		}
		list := make([]string, len(values))
		for i, x := range values {
			list[i] = term(x)
		}
		return refuse("%s should be one of [%s], actually was %s", key, strings.Join(list, ","), term(v))
	}
}

func isDeleteAfter(key string, v any) error {
	if s, ok := v.(string); ok && (s == "never" || s == "queue-length") {
		return nil
	}
	if n, ok := integer(v); ok && n >= 0 {
		return nil
	}
	return refuse(`%s should be a number greater than or equal to 0, "never" or "queue-length", actually was %s`, key, term(v))
}

func isTable(key string, v any) error {
	if _, ok := v.(map[string]any); !ok {
		return refuse("%s not a list %s", key, term(v))
	}
	return nil
}

// publishPropertyKeys are the properties dest-publish-properties may set,
// with whether each is a number (else a string).
var publishPropertyKeys = []struct {
	key string
	num bool
}{{"content_type", false}, {"content_encoding", false}, {"delivery_mode", true}, {"priority", true},
	{"correlation_id", false}, {"reply_to", false}, {"expiration", false}, {"message_id", false},
	{"timestamp", true}, {"type", false}, {"user_id", false}, {"app_id", false}, {"cluster_id", false}}

func isProperties(key string, v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return refuse("%s not a list %s", key, term(v))
	}
	var checks []check
	for _, p := range publishPropertyKeys {
		fn := isBinary
		if p.num {
			fn = isNumber
		}
		checks = append(checks, check{p.key, fn, false})
	}
	return proplist(key, checks, m)
}

func isURI(key string, v any) error {
	if s, ok := v.(string); ok {
		if _, err := parseURI(s); err != nil {
			return refuse("%q not a valid URI: %s", s, err)
		}
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		return refuse("%s should be a list, actually was %s", key, term(v))
	}
	if len(l) == 0 {
		return refuse("%s should be a non-empty list of URIs", key)
	}
	for _, e := range l {
		s, ok := e.(string)
		if !ok {
			return refuse("%s should be binary, actually was %s", key, term(e))
		}
		if _, err := parseURI(s); err != nil {
			return refuse("%q not a valid URI: %s", s, err)
		}
	}
	return nil
}

// proplist applies checks to m as rabbit_parameter_validation:proplist:
// keys left over are "Unrecognised terms", reported before the others; of
// the checks' errors the last key's comes first.
func proplist(name string, checks []check, m map[string]any) error {
	rest := maps.Clone(m)
	var errs []error
	for _, c := range checks {
		v, ok := rest[c.key]
		delete(rest, c.key)
		switch {
		case ok:
			errs = append(errs, c.fn(c.key, v))
		case c.mandatory:
			errs = append(errs, refuse("Key %q not found in %s", c.key, name))
		}
	}
	if len(rest) > 0 {
		parts := []string{}
		for _, k := range slices.Sorted(maps.Keys(rest)) {
			parts = append(parts, "{"+term(k)+","+term(rest[k])+"}")
		}
		return refuse("Unrecognised terms [%s] in %s", strings.Join(parts, ","), name)
	}
	for i := len(errs) - 1; i >= 0; i-- {
		if errs[i] != nil {
			return errs[i]
		}
	}
	return nil
}

var shovelChecks = []check{
	{"reconnect-delay", isNumber, false},
	{"ack-mode", oneOf(NoAck, OnPublish, OnConfirm), false},
	{"src-protocol", oneOf("amqp10", "amqp091"), false},
	{"dest-protocol", oneOf("amqp10", "amqp091"), false},
	{"src-uri", isURI, true},
	{"src-exchange", isBinary, false},
	{"src-exchange-key", isBinary, false},
	{"src-queue", isBinary, false},
	{"src-queue-args", isTable, false},
	{"src-consumer-args", isTable, false},
	{"prefetch-count", isNumber, false},
	{"src-prefetch-count", isNumber, false},
	{"delete-after", isDeleteAfter, false},
	{"src-delete-after", isDeleteAfter, false},
	{"dest-uri", isURI, true},
	{"dest-exchange", isBinary, false},
	{"dest-exchange-key", isBinary, false},
	{"dest-queue", isBinary, false},
	{"dest-queue-args", isTable, false},
	{"add-forward-headers", isBoolean, false},
	{"add-timestamp-header", isBoolean, false},
	{"dest-add-forward-headers", isBoolean, false},
	{"dest-add-timestamp-header", isBoolean, false},
	{"publish-properties", isProperties, false},
	{"dest-publish-properties", isProperties, false},
}

// Parse validates a shovel definition as RabbitMQ 3.10 does (the same
// checks in the same order, the same texts) and reads it. name is the
// shovel's, for the messages.
func Parse(name string, value any) (*Def, error) {
	m, ok := value.(map[string]any)
	if !ok {
		return nil, refuse("%s not a list %s", name, term(value))
	}
	has := func(k string) bool { _, ok := m[k]; return ok }
	switch {
	case !has("src-exchange") && !has("src-queue"):
		return nil, refuse("Must specify 'src-exchange' or 'src-queue'")
	case has("src-exchange") && has("src-queue"):
		return nil, refuse("Cannot specify 'src-exchange' and 'src-queue'")
	}
	deleteAfter, ok := m["src-delete-after"]
	if !ok {
		deleteAfter = m["delete-after"]
	}
	if _, isInt := integer(deleteAfter); isInt && m["ack-mode"] == NoAck {
		return nil, refuse("Cannot specify 'no-ack' and numerical 'delete-after'")
	}
	if has("dest-exchange") && has("dest-queue") {
		return nil, refuse("Cannot specify 'dest-exchange' and 'dest-queue'")
	}
	if err := proplist(name, shovelChecks, m); err != nil {
		return nil, err
	}
	if m["src-protocol"] == "amqp10" || m["dest-protocol"] == "amqp10" {
		return nil, refuse("AMQP 1.0 shovels are not supported; src-protocol and dest-protocol must be amqp091")
	}

	str := func(k string) string { s, _ := m[k].(string); return s }
	opt := func(k string) *string {
		if s, ok := m[k].(string); ok {
			return &s
		}
		return nil
	}
	first := func(keys ...string) any {
		for _, k := range keys {
			if v, ok := m[k]; ok {
				return v
			}
		}
		return nil
	}
	table := func(k string) map[string]any { t, _ := m[k].(map[string]any); return t }
	d := &Def{
		SrcURIs: uris(m["src-uri"]), SrcQueue: str("src-queue"), SrcExchange: str("src-exchange"),
		SrcExchangeKey: str("src-exchange-key"), SrcQueueArgs: table("src-queue-args"),
		SrcConsumerArgs: table("src-consumer-args"), Prefetch: 1000, DeleteAfter: Never,
		DestURIs: uris(m["dest-uri"]), DestQueue: opt("dest-queue"), DestExchange: opt("dest-exchange"),
		DestExchangeKey: opt("dest-exchange-key"), DestQueueArgs: table("dest-queue-args"),
		AckMode: OnConfirm, ReconnectDelay: 5 * time.Second,
	}
	if v, ok := first("src-prefetch-count", "prefetch-count").(any); ok && v != nil {
		n, _ := number(v)
		d.Prefetch = int(min(max(n, 0), 65535))
	}
	switch v := deleteAfter.(type) {
	case nil:
	case string:
		if v == "queue-length" {
			d.DeleteAfter = QueueLength
		}
	default:
		d.DeleteAfter, _ = integer(v)
	}
	if v, ok := first("dest-add-forward-headers", "add-forward-headers").(bool); ok {
		d.AddForwardHeaders = v
	}
	if v, ok := first("dest-add-timestamp-header", "add-timestamp-header").(bool); ok {
		d.AddTimestampHeader = v
	}
	if v, ok := first("dest-publish-properties", "publish-properties").(map[string]any); ok {
		d.PublishProperties = v
	}
	if s, ok := m["ack-mode"].(string); ok {
		d.AckMode = s
	}
	if v, ok := m["reconnect-delay"]; ok {
		n, _ := number(v)
		d.ReconnectDelay = time.Duration(max(n, 0) * float64(time.Second))
	}
	return d, nil
}

// uris reads a src-uri or dest-uri: one URI or a list of them.
func uris(v any) []string {
	if s, ok := v.(string); ok {
		return []string{s}
	}
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}

// errNoURI is what a shovel reports when none of its URIs connected.
var errNoURI = errors.New("failed_to_connect_using_provided_uris")
