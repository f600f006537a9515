package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/urfave/cli/v2"
)

// amqpTarget is the AMQP URL consume and perf dial; guess says why its
// host:port is a guess (empty when the broker told it).
type amqpTarget struct{ url, guess string }

// amqpURL is --amqp-url or, without it, the AMQP listener that the
// management API's GET /api/overview lists (see amqpListener), with --user,
// --password and --vhost; only when it lists none, or cannot be read, the
// management host on port 5672 (5671 with amqps for an https --url).
// Resolved once: perf dials many connections.
var amqpURL = sync.OnceValues(func() (amqpTarget, error) {
	if u := globals.amqpURL; u != "" {
		return amqpTarget{url: u}, nil
	}
	mu, err := url.Parse(globals.url)
	if err != nil || mu.Host == "" {
		return amqpTarget{}, usagef("bad --url %q", globals.url)
	}
	u := url.URL{Scheme: "amqp", User: url.UserPassword(globals.user, globals.password),
		Path: "/" + globals.vhost, RawPath: "/" + url.PathEscape(globals.vhost)}
	var o overview
	guess := ""
	if err := newClient(nil).do("GET", "/api/overview", nil, &o); err != nil {
		guess = fmt.Sprintf("GET /api/overview failed (%v), so the default port was tried", err)
	} else if u.Scheme, u.Host = o.amqpListener(mu); u.Host == "" {
		guess = "/api/overview lists no AMQP listener, so the default port was tried"
	}
	if u.Host == "" {
		u.Host = net.JoinHostPort(mu.Hostname(), "5672")
		if mu.Scheme == "https" {
			u.Scheme, u.Host = "amqps", net.JoinHostPort(mu.Hostname(), "5671")
		}
	}
	return amqpTarget{url: u.String(), guess: guess}, nil
})

// overview is what amqpURL reads of GET /api/overview: the node that
// answered and every listener of the cluster, in RabbitMQ's shape
// ({"node": "rabbit@h", "protocol": "amqp", "ip_address": "::", "port": 5672};
// protocol "amqp/ssl" for TLS, and others such as "http" and "clustering").
type overview struct {
	Node      string `json:"node"`
	Listeners []struct {
		Node      string `json:"node"`
		Protocol  string `json:"protocol"`
		IPAddress string `json:"ip_address"`
		Port      int    `json:"port"`
	} `json:"listeners"`
}

// amqpListener picks the AMQP listener of the node behind the management
// URL mu ("amqp/ssl" first when mu is https, "amqp" first otherwise) and
// returns its URL scheme and host:port, or an empty host when there is
// none. A wildcard address ("::", "0.0.0.0") means every interface, so the
// management URL's host reaches it; another address is used as it is.
func (o *overview) amqpListener(mu *url.URL) (scheme, host string) {
	order := []string{"amqp", "amqp/ssl"}
	if mu.Scheme == "https" {
		order = []string{"amqp/ssl", "amqp"}
	}
	for _, proto := range order {
		for _, sameNode := range []bool{true, false} {
			for _, l := range o.Listeners {
				if l.Protocol != proto || (l.Node == o.Node) != sameNode || l.Port <= 0 {
					continue
				}
				h := l.IPAddress
				if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
					h = mu.Hostname()
				}
				scheme = "amqp"
				if proto == "amqp/ssl" {
					scheme = "amqps"
				}
				return scheme, net.JoinHostPort(h, strconv.Itoa(l.Port))
			}
		}
	}
	return "amqp", ""
}

// dial opens an AMQP connection named name and a channel on it.
func dial(c *cli.Context, name string) (*amqp.Connection, *amqp.Channel, error) {
	t, err := amqpURL()
	if err != nil {
		return nil, nil, err
	}
	conn, err := amqp.DialConfig(t.url, amqp.Config{Properties: amqp.Table{"connection_name": name}, Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		if t.guess != "" {
			return nil, nil, fmt.Errorf("AMQP connection to %s failed: %v (%s; give --amqp-url)", redact(t.url), err, t.guess)
		}
		return nil, nil, fmt.Errorf("AMQP connection to %s failed: %v", redact(t.url), err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, ch, nil
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Redacted()
}

// interrupted is closed on Ctrl-C or SIGTERM.
func interrupted() <-chan struct{} {
	ch := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; close(ch) }()
	return ch
}

// streamOffset reads --offset: a number is an offset (negative: the last
// N), an RFC 3339 time a timestamp, anything else goes as it is (first,
// last, next, 1h).
func streamOffset(s string) any {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t
	}
	return s
}

func consumeCommand() *cli.Command {
	return &cli.Command{
		Name: "consume", Usage: "consume from a queue, printing messages until Ctrl-C (or --count)", ArgsUsage: "QUEUE",
		Description: "Examples:\n   warrenctl consume orders\n   warrenctl --format json consume --count 100 orders > orders.jsonl\n" +
			"   warrenctl consume --offset first events      # a stream, from its start (also last, next, an offset, -N for the last N, 1h, an RFC 3339 time)\n" +
			"   warrenctl consume --name audit events        # a named stream consumer: resumes after what it acked last time",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Usage: "stop after this many messages (0: until Ctrl-C)"},
			&cli.StringFlag{Name: "offset", Usage: "a stream's x-stream-offset: first, last, next, an offset, -N (the last N), an interval such as 1h, or an RFC 3339 time"},
			&cli.StringFlag{Name: "name", Usage: "a stream consumer's name (x-stream-consumer-name): it resumes after what the last consumer of that name acked"},
			&cli.IntFlag{Name: "prefetch", Value: 100},
			&cli.BoolFlag{Name: "no-ack", Usage: "auto-ack (messages are gone once sent, even if this tool dies)"},
		},
		Action: func(c *cli.Context) error {
			queue, err := oneArg(c, "queue name")
			if err != nil {
				return err
			}
			conn, ch, err := dial(c, "warrenctl consume")
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := ch.Qos(c.Int("prefetch"), 0, false); err != nil {
				return err
			}
			args := amqp.Table{}
			if o := c.String("offset"); o != "" {
				args["x-stream-offset"] = streamOffset(o)
			}
			if n := c.String("name"); n != "" {
				args["x-stream-consumer-name"] = n
			}
			ds, err := ch.Consume(queue, "", c.Bool("no-ack"), false, false, false, args)
			if err != nil {
				return err
			}
			stop := interrupted()
			closed := conn.NotifyClose(make(chan *amqp.Error, 1))
			var n atomic.Int64
			limit := int64(c.Int("count"))
			ticker := time.NewTicker(time.Second)
			defer ticker.Stop()
			enc := json.NewEncoder(os.Stdout)
			for {
				select {
				case d, ok := <-ds:
					if !ok {
						return fmt.Errorf("the consumer was cancelled (queue deleted?)")
					}
					if off, ok := d.Headers["x-stream-offset"]; ok && globals.format != "json" {
						fmt.Printf("%v\t", off)
					}
					if globals.format == "json" {
						enc.Encode(map[string]any{"routing_key": d.RoutingKey, "exchange": d.Exchange, "redelivered": d.Redelivered,
							"headers": d.Headers, "content_type": d.ContentType, "payload": string(d.Body)})
					} else {
						fmt.Printf("%s\t%s\n", d.RoutingKey, d.Body)
					}
					if !c.Bool("no-ack") {
						d.Ack(false)
					}
					if n.Add(1) == limit {
						fmt.Fprintf(os.Stderr, "consumed %d messages\n", n.Load())
						return nil
					}
				case <-ticker.C:
					if limit > 0 {
						fmt.Fprintf(os.Stderr, "\rconsumed %d/%d", n.Load(), limit)
					}
				case e := <-closed:
					if e != nil {
						return fmt.Errorf("connection closed by the broker: %s", e.Reason)
					}
					return nil
				case <-stop:
					fmt.Fprintf(os.Stderr, "\nconsumed %d messages\n", n.Load())
					return nil
				}
			}
		},
	}
}
