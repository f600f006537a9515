package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// federationCommand manages federation upstreams (runtime parameters of
// component federation-upstream, as rabbitmqctl set_parameter
// federation-upstream does) and shows the links (/api/federation-links).
// A policy with federation-upstream-set=all (or federation-upstream=NAME)
// federates the exchanges and queues it matches: warrenctl declare policy.
func federationCommand() *cli.Command {
	upstreamCols := []column{{"VHOST", "vhost"}, {"NAME", "name"}, {"URI", "value.uri"}, {"EXCHANGE", "value.exchange"},
		{"QUEUE", "value.queue"}, {"MAX_HOPS", "value.max-hops"}, {"ACK_MODE", "value.ack-mode"}}
	linkCols := []column{{"VHOST", "vhost"}, {"TYPE", "type"}, {"EXCHANGE", "exchange"}, {"QUEUE", "queue"},
		{"UPSTREAM", "upstream"}, {"URI", "uri"}, {"STATUS", "status"}, {"ERROR", "error"}, {"SINCE", "timestamp"}}
	return &cli.Command{
		Name:  "federation",
		Usage: "add, list and delete federation upstreams; show federation links",
		Description: "Examples:\n   warrenctl federation upstream add --uri amqp://user:pass@other-host --max-hops 1 other\n" +
			"   warrenctl declare policy --pattern '^orders$' --apply-to exchanges --definition federation-upstream-set=all fed-orders\n" +
			"   warrenctl federation links\n   warrenctl federation upstream delete other",
		Subcommands: []*cli.Command{
			{
				Name: "upstream", Usage: "manage the upstreams of --vhost",
				Subcommands: []*cli.Command{
					{
						Name: "add", Usage: "create or replace an upstream", ArgsUsage: "NAME",
						Flags: []cli.Flag{
							&cli.StringSliceFlag{Name: "uri", Required: true, Usage: "upstream AMQP URI (repeat for several, tried in turn); amqps:// takes RabbitMQ's TLS query options"},
							&cli.StringFlag{Name: "exchange", Usage: "upstream exchange (default: the federated exchange's name)"},
							&cli.StringFlag{Name: "queue", Usage: "upstream queue (default: the federated queue's name)"},
							&cli.IntFlag{Name: "prefetch-count", Usage: "unacknowledged messages in flight per link (default 1000)"},
							&cli.Float64Flag{Name: "reconnect-delay", Usage: "seconds between reconnection attempts (default 5)"},
							&cli.IntFlag{Name: "max-hops", Usage: "how many brokers a message may cross (default 1)"},
							&cli.IntFlag{Name: "expires", Usage: "ms the upstream queue outlives a lost link (x-expires; default: forever)"},
							&cli.IntFlag{Name: "message-ttl", Usage: "ms messages wait in the upstream queue (x-message-ttl)"},
							&cli.StringFlag{Name: "ack-mode", Usage: "on-confirm (default), on-publish or no-ack"},
							&cli.BoolFlag{Name: "trust-user-id", Usage: "keep the messages' user_id"},
						},
						Action: func(c *cli.Context) error {
							name, err := oneArg(c, "upstream name")
							if err != nil {
								return err
							}
							v := map[string]any{}
							if uris := c.StringSlice("uri"); len(uris) == 1 {
								v["uri"] = uris[0]
							} else {
								v["uri"] = uris
							}
							for _, f := range []string{"exchange", "queue", "ack-mode"} {
								if c.IsSet(f) {
									v[f] = c.String(f)
								}
							}
							for _, f := range []string{"prefetch-count", "max-hops", "expires", "message-ttl"} {
								if c.IsSet(f) {
									v[f] = c.Int(f)
								}
							}
							if c.IsSet("reconnect-delay") {
								v["reconnect-delay"] = c.Float64("reconnect-delay")
							}
							if c.IsSet("trust-user-id") {
								v["trust-user-id"] = c.Bool("trust-user-id")
							}
							cl := newClient(c)
							if err := cl.do("PUT", cl.vpath("parameters/federation-upstream", name), map[string]any{"value": v}, nil); err != nil {
								return err
							}
							fmt.Printf("federation upstream %s set on vhost %s\n", name, cl.vhost)
							return nil
						},
					},
					{
						Name: "list", Usage: "list the upstreams of --vhost",
						Action: func(c *cli.Context) error {
							cl := newClient(c)
							var rows []map[string]any
							if err := cl.do("GET", cl.vpath("parameters/federation-upstream"), nil, &rows); err != nil {
								return err
							}
							return emit(c, rows, upstreamCols)
						},
					},
					{
						Name: "delete", Usage: "delete an upstream (its links stop)", ArgsUsage: "NAME",
						Action: func(c *cli.Context) error {
							name, err := oneArg(c, "upstream name")
							if err != nil {
								return err
							}
							cl := newClient(c)
							if err := cl.do("DELETE", cl.vpath("parameters/federation-upstream", name), nil, nil); err != nil {
								return err
							}
							fmt.Printf("federation upstream %s deleted from vhost %s\n", name, cl.vhost)
							return nil
						},
					},
				},
			},
			{
				Name: "links", Usage: "show the federation links of --vhost (or all with --all-vhosts) and their state",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "all-vhosts", Usage: "every vhost, not just --vhost"}},
				Action: func(c *cli.Context) error {
					cl := newClient(c)
					path := "/api/federation-links/" + esc(cl.vhost)
					if c.Bool("all-vhosts") {
						path = "/api/federation-links"
					}
					var rows []map[string]any
					if err := cl.do("GET", path, nil, &rows); err != nil {
						return err
					}
					return emit(c, rows, linkCols)
				},
			},
		},
	}
}
