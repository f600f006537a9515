package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/urfave/cli/v2"
)

// amqpURL is --amqp-url, or the management host on port 5672 with the
// management credentials and --vhost.
func amqpURL() (string, error) {
	if u := globals.amqpURL; u != "" {
		return u, nil
	}
	mu, err := url.Parse(globals.url)
	if err != nil || mu.Host == "" {
		return "", usagef("bad --url %q", globals.url)
	}
	u := url.URL{Scheme: "amqp", User: url.UserPassword(globals.user, globals.password),
		Host: net.JoinHostPort(mu.Hostname(), "5672"), Path: "/" + globals.vhost}
	if mu.Scheme == "https" {
		u.Scheme, u.Host = "amqps", net.JoinHostPort(mu.Hostname(), "5671")
	}
	u.RawPath = "/" + url.PathEscape(globals.vhost)
	return u.String(), nil
}

// dial opens an AMQP connection named name and a channel on it.
func dial(c *cli.Context, name string) (*amqp.Connection, *amqp.Channel, error) {
	u, err := amqpURL()
	if err != nil {
		return nil, nil, err
	}
	conn, err := amqp.DialConfig(u, amqp.Config{Properties: amqp.Table{"connection_name": name}, Dial: amqp.DefaultDial(10 * time.Second)})
	if err != nil {
		return nil, nil, fmt.Errorf("AMQP connection to %s failed: %v", redact(u), err)
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

func consumeCommand() *cli.Command {
	return &cli.Command{
		Name: "consume", Usage: "consume from a queue, printing messages until Ctrl-C (or --count)", ArgsUsage: "QUEUE",
		Description: "Examples:\n   warrenctl consume orders\n   warrenctl --format json consume --count 100 orders > orders.jsonl",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Usage: "stop after this many messages (0: until Ctrl-C)"},
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
			ds, err := ch.Consume(queue, "", c.Bool("no-ack"), false, false, false, nil)
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
