package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// shovelCommand manages dynamic shovels through PUT and DELETE
// /api/parameters/shovel/{vhost}/{name} and GET /api/shovels: RabbitMQ's
// format, so it works against RabbitMQ with rabbitmq_shovel too.
func shovelCommand() *cli.Command {
	return &cli.Command{
		Name:  "shovel",
		Usage: "add, list or delete dynamic shovels (move messages between brokers)",
		Subcommands: []*cli.Command{
			{
				Name: "add", Usage: "add (or replace) a shovel in --vhost", ArgsUsage: "NAME",
				Description: "URIs are RabbitMQ's: amqp://user:pass@host:port/vhost, amqps:// with ?cacertfile=...&verify=verify_peer,\n" +
					"   and amqp:// without a host for the broker the shovel runs in. Repeat --src-uri or --dest-uri to try several in turn.\n" +
					"Examples:\n" +
					"   warrenctl shovel add --src-uri amqp://guest:guest@rabbit:5672 --src-queue orders \\\n" +
					"       --dest-uri amqp:// --dest-queue orders --src-delete-after queue-length move-orders\n" +
					"   warrenctl shovel add --src-uri amqp:// --src-exchange events --src-exchange-key '#' \\\n" +
					"       --dest-uri amqps://u:p@dr.example/%2F?cacertfile=/etc/ca.pem --dest-exchange events to-dr",
				Flags: []cli.Flag{
					&cli.StringSliceFlag{Name: "src-uri", Usage: "source URI (repeat for several)", Required: true},
					&cli.StringFlag{Name: "src-queue", Usage: "source queue (declared durable if missing)"},
					&cli.StringFlag{Name: "src-exchange", Usage: "source exchange (instead of --src-queue: a queue of the shovel's own bound to it)"},
					&cli.StringFlag{Name: "src-exchange-key", Usage: "binding key for --src-exchange"},
					&cli.StringSliceFlag{Name: "dest-uri", Usage: "destination URI (repeat for several)", Required: true},
					&cli.StringFlag{Name: "dest-queue", Usage: "destination queue (declared durable if missing)"},
					&cli.StringFlag{Name: "dest-exchange", Usage: "destination exchange (default: the one each message was published to)"},
					&cli.StringFlag{Name: "dest-exchange-key", Usage: "routing key at the destination (default: the message's)"},
					&cli.StringFlag{Name: "ack-mode", Value: "on-confirm", Usage: "on-confirm (no loss), on-publish or no-ack"},
					&cli.IntFlag{Name: "src-prefetch-count", Value: 1000, Usage: "unacknowledged messages in flight"},
					&cli.StringFlag{Name: "src-delete-after", Value: "never", Usage: "never, queue-length (move what is there now, then delete the shovel) or a count"},
					&cli.Float64Flag{Name: "reconnect-delay", Value: 5, Usage: "seconds between attempts after a failure"},
					&cli.BoolFlag{Name: "dest-add-forward-headers", Usage: "add the x-shovelled header"},
				},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "shovel name")
					if err != nil {
						return err
					}
					v := map[string]any{"ack-mode": c.String("ack-mode"), "src-prefetch-count": c.Int("src-prefetch-count"),
						"reconnect-delay": c.Float64("reconnect-delay")}
					uris := func(flag string) any {
						l := c.StringSlice(flag)
						if len(l) == 1 {
							return l[0]
						}
						out := make([]any, len(l))
						for i, u := range l {
							out[i] = u
						}
						return out
					}
					v["src-uri"], v["dest-uri"] = uris("src-uri"), uris("dest-uri")
					for _, f := range []string{"src-queue", "src-exchange", "src-exchange-key", "dest-queue", "dest-exchange", "dest-exchange-key"} {
						if c.IsSet(f) {
							v[f] = c.String(f)
						}
					}
					if c.Bool("dest-add-forward-headers") {
						v["dest-add-forward-headers"] = true
					}
					switch da := c.String("src-delete-after"); da {
					case "never", "queue-length":
						v["src-delete-after"] = da
					default:
						var n int64
						if _, err := fmt.Sscan(da, &n); err != nil || n < 0 {
							return usagef("--src-delete-after: never, queue-length or a count, not %q", da)
						}
						v["src-delete-after"] = n
					}
					cl := newClient(c)
					if err := cl.do("PUT", cl.vpath("parameters/shovel", name), map[string]any{"value": v}, nil); err != nil {
						return err
					}
					fmt.Printf("shovel %s added\n", name)
					return nil
				},
			},
			{
				Name: "list", Aliases: []string{"ls"}, Usage: "list the shovels and their state",
				Description: "Examples:\n   warrenctl shovel list\n   warrenctl shovel list --all-vhosts",
				Flags:       []cli.Flag{&cli.BoolFlag{Name: "all-vhosts", Usage: "every vhost, not just --vhost"}},
				Action: func(c *cli.Context) error {
					cl := newClient(c)
					path := "/api/shovels/" + esc(cl.vhost)
					if c.Bool("all-vhosts") {
						path = "/api/shovels"
					}
					var l []map[string]any
					if err := cl.do("GET", path, nil, &l); err != nil {
						return err
					}
					for _, s := range l {
						s["source"] = endpoint(s, "src")
						s["destination"] = endpoint(s, "dest")
					}
					return emit(c, l, []column{{"VHOST", "vhost"}, {"NAME", "name"}, {"STATE", "state"}, {"SOURCE", "source"},
						{"DESTINATION", "destination"}, {"SINCE", "timestamp"}, {"REASON", "reason"}})
				},
			},
			{
				Name: "delete", Usage: "delete a shovel (its unacknowledged messages go back to the source)", ArgsUsage: "NAME",
				Description: "Example: warrenctl shovel delete move-orders",
				Action: nameAction("shovel name", "shovel", "deleted", func(_ *cli.Context, cl *client, name string) error {
					return cl.do("DELETE", cl.vpath("parameters/shovel", name), nil, nil)
				}),
			},
		},
	}
}

// endpoint names a running shovel's side in one column: uri queue or
// uri exchange/key.
func endpoint(s map[string]any, side string) string {
	uri, _ := s[side+"_uri"].(string)
	if q, ok := s[side+"_queue"].(string); ok {
		return strings.TrimSpace(uri + " queue " + q)
	}
	if x, ok := s[side+"_exchange"].(string); ok {
		k, _ := s[side+"_exchange_key"].(string)
		return strings.TrimSpace(uri + " exchange " + x + " " + k)
	}
	return uri
}
