package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// client talks to the management API.
type client struct {
	base, user, pass, vhost string
	hc                      *http.Client
}

// globals are the application-level flags, read once before any command
// (a command's own flag of the same name, like declare user --password,
// must not replace them).
var globals struct{ url, user, password, vhost, format, amqpURL string }

func newClient(*cli.Context) *client {
	return &client{
		base: strings.TrimRight(globals.url, "/"), user: globals.user, pass: globals.password,
		vhost: globals.vhost, hc: &http.Client{Timeout: 60 * time.Second},
	}
}

// apiError is an answer other than 2xx, with RabbitMQ's reason.
type apiError struct {
	status int
	reason string
}

func (e *apiError) Error() string {
	switch e.status {
	case http.StatusUnauthorized:
		return "401 unauthorized: " + e.reason
	case http.StatusNotFound:
		return "404 not found: " + e.reason
	}
	return fmt.Sprintf("%d: %s", e.status, e.reason)
}

// do sends a request and decodes a JSON answer into out (if not nil).
func (cl *client) do(method, path string, body any, out any, hdr ...string) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, cl.base+path, rd)
	if err != nil {
		return fmt.Errorf("bad --url %q: %w", cl.base, err)
	}
	req.SetBasicAuth(cl.user, cl.pass)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := cl.hc.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
			return fmt.Errorf("cannot reach the broker at %s: %v", cl.base, rootCause(err))
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct{ Error, Reason string }
		json.Unmarshal(data, &e)
		reason := e.Reason
		if reason == "" {
			reason = strings.TrimSpace(string(data))
		}
		if reason == "" {
			reason = resp.Status
		}
		return &apiError{status: resp.StatusCode, reason: reason}
	}
	if out != nil && len(data) > 0 {
		if raw, ok := out.(*[]byte); ok {
			*raw = data
			return nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("unexpected answer from %s%s: %v", cl.base, path, err)
		}
	}
	return nil
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

func esc(s string) string { return url.PathEscape(s) }

// vpath builds /api/<kind>/<vhost>/<name>... with escaping.
func (cl *client) vpath(kind string, parts ...string) string {
	p := "/api/" + kind + "/" + esc(cl.vhost)
	for _, x := range parts {
		p += "/" + esc(x)
	}
	return p
}
