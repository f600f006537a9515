package shovel

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
)

// A shovel URI is RabbitMQ's (https://www.rabbitmq.com/uri-spec.html and
// uri-query-parameters.html): amqp://user:pass@host:port/vhost or amqps://
// with TLS options in the query (cacertfile, certfile, keyfile, verify,
// server_name_indication), and heartbeat, connection_timeout, channel_max.
// Without a host it is the local broker (RabbitMQ's direct connection):
// "amqp://" is its vhost "/", "amqp:///v" its vhost v.

// endpoint is a parsed URI.
type endpoint struct {
	raw   string
	url   *url.URL
	local bool
	vhost string // of a local endpoint
}

func parseURI(raw string) (*endpoint, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("{unable_to_parse_uri,%q}", raw)
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return nil, fmt.Errorf("{{unexpected_uri_scheme,%q},%q}", u.Scheme, raw)
	}
	e := &endpoint{raw: raw, url: u, local: u.Host == "", vhost: "/"}
	if len(u.Path) > 1 {
		e.vhost = u.Path[1:]
	}
	if e.local {
		return e, nil
	}
	if v := u.Query().Get("verify"); v != "" && v != "verify_peer" && v != "verify_none" {
		return nil, fmt.Errorf("{{bad_verify,%q},%q}", v, raw)
	}
	return e, nil
}

// redacted is the URI as /api/shovels and the forward headers show it:
// without credentials or query (RabbitMQ's amqp_uri:remove_credentials).
func (e *endpoint) redacted() string {
	if e.local {
		return e.url.Scheme + "://" + e.url.EscapedPath()
	}
	u := *e.url
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	return u.String()
}

// dialURL is the URL handed to amqp091-go: a local endpoint's names the
// vhost only (the dialer ignores the address).
func (e *endpoint) dialURL() string {
	if e.local {
		return "amqp://localhost/" + url.PathEscape(e.vhost)
	}
	return e.raw
}

// user of a local endpoint ("" is the broker's internal user).
func (e *endpoint) user() string {
	if e.url.User == nil {
		return ""
	}
	return e.url.User.Username()
}

// tlsConfig builds the TLS settings of an amqps:// endpoint from its
// query, as RabbitMQ's amqp_uri reads them.
func (e *endpoint) tlsConfig() (*tls.Config, error) {
	q := e.url.Query()
	cfg := &tls.Config{ServerName: e.url.Hostname(), MinVersion: tls.VersionTLS12}
	if sni := q.Get("server_name_indication"); sni != "" && sni != "disable" {
		cfg.ServerName = sni
	}
	if q.Get("verify") == "verify_none" {
		cfg.InsecureSkipVerify = true
	}
	if ca := q.Get("cacertfile"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("cacertfile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cacertfile %s: no certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if cert, key := q.Get("certfile"), q.Get("keyfile"); cert != "" || key != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("certfile/keyfile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{c}
	}
	return cfg, nil
}
