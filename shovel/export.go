package shovel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/warren-mq/warren/amqp/server"
)

// What package federation shares with the shovels: RabbitMQ's URIs (with
// their TLS options and "amqp://" for this broker), the dialing of them,
// ensure_queue, and rabbit_parameter_validation's proplist checks with
// their texts (and lifecycle.go: how their tasks run).

// Endpoint is a parsed AMQP URI of a shovel or federation upstream.
type Endpoint struct{ e *endpoint }

// ParseURI parses a URI as RabbitMQ's amqp_uri does, with its error texts.
func ParseURI(raw string) (*Endpoint, error) {
	e, err := parseURI(raw)
	if err != nil {
		return nil, err
	}
	return &Endpoint{e}, nil
}

// Redacted is the URI without credentials or query, as status pages and
// forwarding headers show it.
func (e *Endpoint) Redacted() string { return e.e.redacted() }

// Local reports whether the URI names this broker (no host).
func (e *Endpoint) Local() bool { return e.e.local }

// Vhost is the vhost the URI opens: its path, else def (a federation
// upstream without a vhost is the downstream's vhost, as amqp_uri:parse/2
// defaults it).
func (e *Endpoint) Vhost(def string) string {
	if e.e.url.Path == "" {
		return def
	}
	return e.e.vhost
}

// Dial connects to the endpoint, opening Vhost(def), with the client
// properties props; a local endpoint goes through srv.DialLocal. Canceling
// ctx stops a dial under way.
func (e *Endpoint) Dial(ctx context.Context, srv *server.Server, def string, props amqp.Table) (*amqp.Connection, error) {
	// cfg.Vhost, not the URL, names the vhost amqp091-go opens.
	cfg := amqp.Config{Properties: props, Locale: "en_US", Vhost: e.Vhost(def)}
	if e.e.local {
		cfg.SASL = []amqp.Authentication{&amqp.PlainAuth{Username: e.e.user()}}
		cfg.Dial = func(string, string) (net.Conn, error) { return srv.DialLocal() }
	} else {
		cfg.Dial = func(network, addr string) (net.Conn, error) {
			d := net.Dialer{Timeout: 30 * time.Second}
			return d.DialContext(ctx, network, addr)
		}
		if e.e.url.Scheme == "amqps" {
			tc, err := e.e.tlsConfig()
			if err != nil {
				return nil, err
			}
			cfg.TLSClientConfig = tc
		}
	}
	return amqp.DialConfig(e.e.dialURL(), cfg)
}

// DialFirst connects to the first of eps that answers, trying them in turn
// from eps[next] on, as a shovel or federation upstream with several URIs
// does; it returns the one that connected, by index, or when none did each
// URI's error. Canceling ctx ends the round.
func DialFirst(ctx context.Context, srv *server.Server, eps []*Endpoint, next int, def string, props amqp.Table) (*amqp.Connection, int, error) {
	if len(eps) == 0 {
		return nil, 0, errors.New("no URI")
	}
	var errs []error
	for i := range eps {
		j := (next + i) % len(eps)
		c, err := eps[j].Dial(ctx, srv, def, props)
		if err == nil {
			return c, j, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", eps[j].Redacted(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, errors.Join(errs...)
}

// EnsureQueue declares queue name on c passively and, when it does not
// exist, durable with args, as RabbitMQ's shovel and federation do
// (ensure_queue): an existing queue of any type is used as it is.
func EnsureQueue(c *amqp.Connection, name string, args amqp.Table) error {
	return ensureQueue(c, name, args)
}

// Check is one key of a proplist validation: its kind is "binary",
// "number", "boolean", "uri" (one URI or a non-empty list of them) or
// "enum" (one of Enum).
type Check struct {
	Key       string
	Kind      string
	Enum      []string
	Mandatory bool
}

// ValidateProplist checks m as rabbit_parameter_validation:proplist does,
// with RabbitMQ 3.10's texts (HTML-escaped, as the management API shows
// them); name is the parameter's.
func ValidateProplist(name string, checks []Check, m map[string]any) error {
	cs := make([]check, len(checks))
	for i, c := range checks {
		fn := map[string]func(string, any) error{"binary": isBinary, "number": isNumber, "boolean": isBoolean, "uri": isURI}[c.Kind]
		if c.Kind == "enum" {
			fn = oneOf(c.Enum...)
		}
		cs[i] = check{key: c.Key, fn: fn, mandatory: c.Mandatory}
	}
	return proplist(name, cs, m)
}

// Refuse is a validation error with RabbitMQ's text (HTML-escaped).
func Refuse(format string, args ...any) error { return refuse(format, args...) }

// Term writes a JSON value as Erlang's ~p shows it, for validation texts.
func Term(v any) string { return term(v) }

// Number reads a JSON number as the parameter APIs hand them over.
func Number(v any) (float64, bool) { return number(v) }
