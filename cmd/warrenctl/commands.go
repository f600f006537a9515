package main

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
)

// listing describes one "list" target.
type listing struct {
	path     func(cl *client, all bool) string
	cols     []column
	perVhost bool
}

var listings = map[string]listing{
	"queues": {func(cl *client, all bool) string { return vhostScoped(cl, "queues", all) },
		[]column{{"VHOST", "vhost"}, {"NAME", "name"}, {"TYPE", "type"}, {"DURABLE", "durable"}, {"READY", "messages_ready"}, {"UNACKED", "messages_unacknowledged"}, {"CONSUMERS", "consumers"}, {"POLICY", "policy"}, {"ARGUMENTS", "arguments"}}, true},
	"exchanges": {func(cl *client, all bool) string { return vhostScoped(cl, "exchanges", all) },
		[]column{{"VHOST", "vhost"}, {"NAME", "name"}, {"TYPE", "type"}, {"DURABLE", "durable"}, {"AUTO_DELETE", "auto_delete"}, {"INTERNAL", "internal"}, {"ARGUMENTS", "arguments"}}, true},
	"bindings": {func(cl *client, all bool) string { return vhostScoped(cl, "bindings", all) },
		[]column{{"VHOST", "vhost"}, {"SOURCE", "source"}, {"DESTINATION", "destination"}, {"TYPE", "destination_type"}, {"ROUTING_KEY", "routing_key"}, {"ARGUMENTS", "arguments"}, {"PROPERTIES_KEY", "properties_key"}}, true},
	"connections": {func(*client, bool) string { return "/api/connections" },
		[]column{{"NAME", "name"}, {"USER", "user"}, {"VHOST", "vhost"}, {"CHANNELS", "channels"}, {"CLIENT", "user_provided_name"}, {"TLS", "ssl"}}, false},
	"channels": {func(*client, bool) string { return "/api/channels" },
		[]column{{"NAME", "name"}, {"USER", "user"}, {"VHOST", "vhost"}, {"CONSUMERS", "consumer_count"}, {"PREFETCH", "prefetch_count"}, {"UNACKED", "messages_unacknowledged"}, {"CONFIRM", "confirm"}}, false},
	"consumers": {func(cl *client, all bool) string { return vhostScoped(cl, "consumers", all) },
		[]column{{"VHOST", "queue.vhost"}, {"QUEUE", "queue.name"}, {"TAG", "consumer_tag"}, {"ACK", "ack_required"}, {"PREFETCH", "prefetch_count"}, {"CHANNEL", "channel_details.name"}}, true},
	"users": {func(*client, bool) string { return "/api/users" },
		[]column{{"NAME", "name"}, {"TAGS", "tags"}}, false},
	"vhosts": {func(*client, bool) string { return "/api/vhosts" },
		[]column{{"NAME", "name"}, {"MESSAGES", "messages"}, {"READY", "messages_ready"}, {"UNACKED", "messages_unacknowledged"}}, false},
	"permissions": {func(*client, bool) string { return "/api/permissions" },
		[]column{{"USER", "user"}, {"VHOST", "vhost"}, {"CONFIGURE", "configure"}, {"WRITE", "write"}, {"READ", "read"}}, false},
	"policies": {func(cl *client, all bool) string { return vhostScoped(cl, "policies", all) },
		[]column{{"VHOST", "vhost"}, {"NAME", "name"}, {"PATTERN", "pattern"}, {"APPLY_TO", "apply-to"}, {"PRIORITY", "priority"}, {"DEFINITION", "definition"}}, true},
}

func vhostScoped(cl *client, kind string, all bool) string {
	if all {
		return "/api/" + kind
	}
	return "/api/" + kind + "/" + esc(cl.vhost)
}

func targets() string {
	return "queues|exchanges|bindings|connections|channels|consumers|users|vhosts|permissions|policies"
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Aliases:   []string{"ls"},
		Usage:     "list " + targets(),
		ArgsUsage: targets(),
		Description: "Examples:\n   warrenctl list queues\n   warrenctl --vhost shop list exchanges\n" +
			"   warrenctl list --all-vhosts --name '^orders' queues\n   warrenctl --format json list users",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "all-vhosts", Usage: "every vhost, not just --vhost"},
			&cli.StringFlag{Name: "name", Usage: "only names matching this regular expression"},
		},
		Action: func(c *cli.Context) error {
			what := c.Args().First()
			l, ok := listings[what]
			if c.NArg() != 1 || !ok {
				return usagef("list what? one of %s", targets())
			}
			// --name filters here: RabbitMQ's API filters by name only in
			// paged requests.
			var match *regexp.Regexp
			if n := c.String("name"); n != "" {
				re, err := regexp.Compile(n)
				if err != nil {
					return usagef("--name: %v", err)
				}
				match = re
			}
			cl := newClient(c)
			var rows []map[string]any
			if err := cl.do("GET", l.path(cl, c.Bool("all-vhosts")), nil, &rows); err != nil {
				return err
			}
			if match != nil {
				kept := rows[:0]
				for _, r := range rows {
					if name, _ := r["name"].(string); match.MatchString(name) {
						kept = append(kept, r)
					}
				}
				rows = kept
			}
			return emit(c, rows, l.cols)
		},
	}
}

func declareCommand() *cli.Command {
	argFlag := &cli.StringSliceFlag{Name: "arg", Usage: "argument key=value (repeat; numbers and booleans are typed)"}
	return &cli.Command{
		Name:  "declare",
		Usage: "declare a queue, exchange, binding, user, vhost, permission or policy",
		Subcommands: []*cli.Command{
			{
				Name: "queue", Usage: "declare a queue", ArgsUsage: "NAME",
				Description: "Examples:\n   warrenctl declare queue --durable --arg x-max-length=1000 --arg x-dead-letter-exchange=dlx orders\n" +
					"   warrenctl declare queue --type stream --arg x-max-age=7D events",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "durable", Usage: "survive restarts"}, &cli.BoolFlag{Name: "auto-delete", Usage: "delete when the last consumer goes"},
					&cli.StringFlag{Name: "type", Usage: "classic, quorum or stream (x-queue-type; quorum and stream queues are durable)"}, argFlag},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "queue name")
					if err != nil {
						return err
					}
					args, err := parsePairs("arg", c.StringSlice("arg"))
					if err != nil {
						return err
					}
					durable := c.Bool("durable")
					if t := c.String("type"); t != "" {
						if args == nil {
							args = map[string]any{}
						}
						args["x-queue-type"] = t
						durable = durable || t == "quorum" || t == "stream"
					}
					cl := newClient(c)
					if err := cl.do("PUT", cl.vpath("queues", name), map[string]any{"durable": durable, "auto_delete": c.Bool("auto-delete"), "arguments": args}, nil); err != nil {
						return err
					}
					fmt.Printf("queue %s declared in vhost %s\n", name, cl.vhost)
					return nil
				},
			},
			{
				Name: "exchange", Usage: "declare an exchange", ArgsUsage: "NAME",
				Description: "Examples:\n   warrenctl declare exchange --type topic --durable events\n" +
					"   warrenctl declare exchange --type x-delayed-message --arg x-delayed-type=direct --durable retries\n" +
					"   warrenctl declare exchange --type x-consistent-hash --arg hash-header=user --durable shards\n" +
					"   warrenctl declare exchange --arg x-message-deduplication=true --arg x-cache-size=100000 --durable orders",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "type", Value: "direct", Usage: "direct, fanout, topic, headers, x-delayed-message, x-consistent-hash, x-modulus-hash or x-random"},
					&cli.BoolFlag{Name: "durable"}, &cli.BoolFlag{Name: "auto-delete"}, &cli.BoolFlag{Name: "internal"}, argFlag,
				},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "exchange name")
					if err != nil {
						return err
					}
					args, err := parsePairs("arg", c.StringSlice("arg"))
					if err != nil {
						return err
					}
					cl := newClient(c)
					body := map[string]any{"type": c.String("type"), "durable": c.Bool("durable"), "auto_delete": c.Bool("auto-delete"), "internal": c.Bool("internal"), "arguments": args}
					if err := cl.do("PUT", cl.vpath("exchanges", name), body, nil); err != nil {
						return err
					}
					fmt.Printf("exchange %s (%s) declared in vhost %s\n", name, c.String("type"), cl.vhost)
					return nil
				},
			},
			{
				Name: "binding", Usage: "bind a queue or exchange to an exchange",
				Description: "Example: warrenctl declare binding --source events --destination orders --routing-key 'order.*'",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "source", Required: true, Usage: "source exchange"},
					&cli.StringFlag{Name: "destination", Required: true, Usage: "destination queue or exchange"},
					&cli.StringFlag{Name: "destination-type", Value: "queue", Usage: "queue or exchange"},
					&cli.StringFlag{Name: "routing-key"}, argFlag,
				},
				Action: func(c *cli.Context) error {
					dt, err := destType(c.String("destination-type"))
					if err != nil {
						return err
					}
					args, err := parsePairs("arg", c.StringSlice("arg"))
					if err != nil {
						return err
					}
					cl := newClient(c)
					path := "/api/bindings/" + esc(cl.vhost) + "/e/" + esc(c.String("source")) + "/" + dt + "/" + esc(c.String("destination"))
					if err := cl.do("POST", path, map[string]any{"routing_key": c.String("routing-key"), "arguments": args}, nil); err != nil {
						return err
					}
					fmt.Printf("bound %s %s to exchange %s with key %q\n", c.String("destination-type"), c.String("destination"), c.String("source"), c.String("routing-key"))
					return nil
				},
			},
			{
				Name: "user", Usage: "create or update a user", ArgsUsage: "NAME",
				Description: "Example: warrenctl declare user --password s3cret --tags management,policymaker alice",
				Flags:       []cli.Flag{&cli.StringFlag{Name: "password", Usage: "password (hashed by the broker)"}, &cli.StringFlag{Name: "password-hash", Usage: "a RabbitMQ SHA-256 password hash instead"}, &cli.StringFlag{Name: "tags", Usage: "comma-separated tags"}},
				Action: nameAction("user name", "user", "saved", func(c *cli.Context, cl *client, name string) error {
					body := map[string]any{"tags": c.String("tags")}
					if p := c.String("password"); p != "" {
						body["password"] = p
					} else if h := c.String("password-hash"); h != "" {
						body["password_hash"] = h
					}
					return cl.do("PUT", "/api/users/"+esc(name), body, nil)
				}),
			},
			{
				Name: "vhost", Usage: "create a virtual host", ArgsUsage: "NAME",
				Description: "Example: warrenctl declare vhost staging",
				Action: nameAction("vhost name", "vhost", "declared", func(_ *cli.Context, cl *client, name string) error {
					return cl.do("PUT", "/api/vhosts/"+esc(name), nil, nil)
				}),
			},
			{
				Name: "permission", Usage: "set a user's permissions on --vhost", ArgsUsage: "USER",
				Description: "Example: warrenctl --vhost staging declare permission --configure '^app-' --write '.*' --read '.*' alice",
				Flags:       []cli.Flag{&cli.StringFlag{Name: "configure", Value: ".*"}, &cli.StringFlag{Name: "write", Value: ".*"}, &cli.StringFlag{Name: "read", Value: ".*"}},
				Action: func(c *cli.Context) error {
					user, err := oneArg(c, "user name")
					if err != nil {
						return err
					}
					cl := newClient(c)
					body := map[string]any{"configure": c.String("configure"), "write": c.String("write"), "read": c.String("read")}
					if err := cl.do("PUT", "/api/permissions/"+esc(cl.vhost)+"/"+esc(user), body, nil); err != nil {
						return err
					}
					fmt.Printf("permissions of %s on vhost %s set\n", user, cl.vhost)
					return nil
				},
			},
			{
				Name: "policy", Usage: "create or replace a policy on --vhost", ArgsUsage: "NAME",
				Description: "Example: warrenctl declare policy --pattern '^orders' --apply-to queues --priority 1 --definition max-length=10000 --definition dead-letter-exchange=dlx cap-orders",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "pattern", Required: true, Usage: "regular expression on names"},
					&cli.StringFlag{Name: "apply-to", Value: "all", Usage: "all, queues or exchanges"},
					&cli.IntFlag{Name: "priority"},
					&cli.StringSliceFlag{Name: "definition", Required: true, Usage: "key=value (repeat)"},
				},
				Action: func(c *cli.Context) error {
					name, err := oneArg(c, "policy name")
					if err != nil {
						return err
					}
					def, err := parsePairs("definition", c.StringSlice("definition"))
					if err != nil {
						return err
					}
					cl := newClient(c)
					body := map[string]any{"pattern": c.String("pattern"), "apply-to": c.String("apply-to"), "priority": c.Int("priority"), "definition": def}
					if err := cl.do("PUT", cl.vpath("policies", name), body, nil); err != nil {
						return err
					}
					fmt.Printf("policy %s set on vhost %s\n", name, cl.vhost)
					return nil
				},
			},
		},
	}
}

func destType(s string) (string, error) {
	switch s {
	case "queue", "q":
		return "q", nil
	case "exchange", "e":
		return "e", nil
	}
	return "", usagef("--destination-type must be queue or exchange, not %q", s)
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", usagef("%s: expected one %s (see --help)", c.Command.FullName(), what)
	}
	return c.Args().First(), nil
}

// nameAction is the action of a command that takes one NAME, makes one
// request about it and reports "KIND NAME DONE".
func nameAction(what, kind, done string, req func(c *cli.Context, cl *client, name string) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		name, err := oneArg(c, what)
		if err != nil {
			return err
		}
		if err := req(c, newClient(c), name); err != nil {
			return err
		}
		fmt.Printf("%s %s %s\n", kind, name, done)
		return nil
	}
}

func deleteCommand() *cli.Command {
	simple := func(kind, what, example string, path func(cl *client, name string) string) *cli.Command {
		return &cli.Command{
			Name: kind, Usage: "delete a " + kind, ArgsUsage: "NAME", Description: "Example: " + example,
			Action: nameAction(what, kind, "deleted", func(_ *cli.Context, cl *client, name string) error {
				return cl.do("DELETE", path(cl, name), nil, nil)
			}),
		}
	}
	return &cli.Command{
		Name:  "delete",
		Usage: "delete a queue, exchange, binding, user, vhost or policy",
		Subcommands: []*cli.Command{
			simple("queue", "queue name", "warrenctl delete queue orders", func(cl *client, n string) string { return cl.vpath("queues", n) }),
			simple("exchange", "exchange name", "warrenctl delete exchange events", func(cl *client, n string) string { return cl.vpath("exchanges", n) }),
			simple("user", "user name", "warrenctl delete user alice", func(_ *client, n string) string { return "/api/users/" + esc(n) }),
			simple("vhost", "vhost name", "warrenctl delete vhost staging", func(_ *client, n string) string { return "/api/vhosts/" + esc(n) }),
			simple("policy", "policy name", "warrenctl delete policy cap-orders", func(cl *client, n string) string { return cl.vpath("policies", n) }),
			{
				Name: "binding", Usage: "delete a binding",
				Description: "Example: warrenctl delete binding --source events --destination orders --routing-key 'order.*'",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "source", Required: true}, &cli.StringFlag{Name: "destination", Required: true},
					&cli.StringFlag{Name: "destination-type", Value: "queue"}, &cli.StringFlag{Name: "routing-key"},
				},
				Action: func(c *cli.Context) error {
					dt, err := destType(c.String("destination-type"))
					if err != nil {
						return err
					}
					cl := newClient(c)
					base := "/api/bindings/" + esc(cl.vhost) + "/e/" + esc(c.String("source")) + "/" + dt + "/" + esc(c.String("destination"))
					var bs []map[string]any
					if err := cl.do("GET", base, nil, &bs); err != nil {
						return err
					}
					n := 0
					for _, b := range bs {
						if b["routing_key"] == c.String("routing-key") {
							if err := cl.do("DELETE", base+"/"+b["properties_key"].(string), nil, nil); err != nil {
								return err
							}
							n++
						}
					}
					if n == 0 {
						return fmt.Errorf("404 not found: no binding from %s to %s with key %q", c.String("source"), c.String("destination"), c.String("routing-key"))
					}
					fmt.Printf("%d binding(s) deleted\n", n)
					return nil
				},
			},
		},
	}
}

func purgeCommand() *cli.Command {
	return &cli.Command{
		Name: "purge", Usage: "purge a queue's ready messages",
		Description: "Example: warrenctl purge queue orders",
		Subcommands: []*cli.Command{{
			Name: "queue", ArgsUsage: "NAME", Usage: "purge a queue", Description: "Example: warrenctl purge queue orders",
			Action: nameAction("queue name", "queue", "purged", func(_ *cli.Context, cl *client, name string) error {
				return cl.do("DELETE", cl.vpath("queues", name, "contents"), nil, nil)
			}),
		}},
	}
}

func publishCommand() *cli.Command {
	return &cli.Command{
		Name: "publish", Usage: "publish one message (the body is an argument, or - for stdin)", ArgsUsage: "[BODY | -]",
		Description: "Examples:\n   warrenctl publish --exchange amq.default --routing-key orders 'hello'\n" +
			"   echo '{\"id\": 1}' | warrenctl publish --exchange events --routing-key order.created --property content_type=application/json --header x-delay=5000 -",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "exchange", Aliases: []string{"e"}, Value: "amq.default", Usage: "exchange (amq.default is the default exchange)"},
			&cli.StringFlag{Name: "routing-key", Aliases: []string{"k"}},
			&cli.StringSliceFlag{Name: "property", Usage: "property key=value: content_type, delivery_mode, priority, correlation_id, reply_to, expiration, message_id, type, user_id, app_id"},
			&cli.StringSliceFlag{Name: "header", Usage: "header key=value (repeat)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usagef("publish: one body at most (quote it, or use - for stdin)")
			}
			body := c.Args().First()
			if body == "-" {
				data, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				body = string(data)
			}
			props, err := parsePairs("property", c.StringSlice("property"))
			if err != nil {
				return err
			}
			for _, k := range []string{"content_type", "content_encoding", "correlation_id", "reply_to", "expiration", "message_id", "type", "user_id", "app_id"} {
				if v, ok := props[k]; ok {
					props[k] = fmt.Sprint(v) // strings even when they look like numbers
				}
			}
			headers, err := parsePairs("header", c.StringSlice("header"))
			if err != nil {
				return err
			}
			if len(headers) > 0 {
				props["headers"] = headers
			}
			payload, encoding := body, "string"
			if !isUTF8(body) {
				payload, encoding = base64.StdEncoding.EncodeToString([]byte(body)), "base64"
			}
			cl := newClient(c)
			var res struct{ Routed bool }
			if err := cl.do("POST", cl.vpath("exchanges", c.String("exchange"), "publish"), map[string]any{
				"routing_key": c.String("routing-key"), "payload": payload, "payload_encoding": encoding, "properties": props}, &res); err != nil {
				return err
			}
			if !res.Routed {
				fmt.Println("published, but not routed to any queue")
				return nil
			}
			fmt.Println("published and routed")
			return nil
		},
	}
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func getCommand() *cli.Command {
	return &cli.Command{
		Name: "get", Usage: "get messages from a queue", ArgsUsage: "QUEUE",
		Description: "Examples:\n   warrenctl get orders\n   warrenctl get --count 10 --ack-mode ack orders   (takes them)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "count", Aliases: []string{"n"}, Value: 1},
			&cli.StringFlag{Name: "ack-mode", Value: "requeue", Usage: "requeue (look, then put back) or ack (take)"},
		},
		Action: func(c *cli.Context) error {
			name, err := oneArg(c, "queue name")
			if err != nil {
				return err
			}
			mode := map[string]string{"requeue": "ack_requeue_true", "ack": "ack_requeue_false"}[c.String("ack-mode")]
			if mode == "" {
				return usagef("--ack-mode must be requeue or ack, not %q", c.String("ack-mode"))
			}
			if c.Int("count") < 1 {
				return usagef("--count must be at least 1")
			}
			cl := newClient(c)
			var msgs []map[string]any
			if err := cl.do("POST", cl.vpath("queues", name, "get"), map[string]any{"count": c.Int("count"), "ackmode": mode, "encoding": "auto"}, &msgs); err != nil {
				return err
			}
			if len(msgs) == 0 && globals.format == "table" {
				fmt.Println("the queue is empty")
				return nil
			}
			return emit(c, msgs, []column{{"ROUTING_KEY", "routing_key"}, {"EXCHANGE", "exchange"}, {"REDELIVERED", "redelivered"},
				{"PROPERTIES", "properties"}, {"PAYLOAD", "payload"}, {"BYTES", "payload_bytes"}})
		},
	}
}

func definitionsCommand() *cli.Command {
	return &cli.Command{
		Name: "definitions", Usage: "export or import definitions (RabbitMQ's format)",
		Subcommands: []*cli.Command{
			{
				Name: "export", ArgsUsage: "[FILE | -]", Usage: "write the broker's definitions to FILE (default stdout)",
				Description: "Example: warrenctl definitions export backup.json",
				Action: func(c *cli.Context) error {
					var raw []byte
					if err := newClient(c).do("GET", "/api/definitions", nil, &raw); err != nil {
						return err
					}
					if f := c.Args().First(); f != "" && f != "-" {
						if err := os.WriteFile(f, raw, 0o600); err != nil {
							return err
						}
						fmt.Fprintf(os.Stderr, "definitions written to %s (%d bytes)\n", f, len(raw))
						return nil
					}
					_, err := os.Stdout.Write(raw)
					return err
				},
			},
			{
				Name: "import", ArgsUsage: "FILE | -", Usage: "import definitions from FILE or stdin",
				Description: "Example: warrenctl definitions import backup.json",
				Action: func(c *cli.Context) error {
					f, err := oneArg(c, "file (or - for stdin)")
					if err != nil {
						return err
					}
					var data []byte
					if f == "-" {
						data, err = io.ReadAll(bufio.NewReader(os.Stdin))
					} else {
						data, err = os.ReadFile(f)
					}
					if err != nil {
						return err
					}
					fmt.Fprintf(os.Stderr, "importing %d bytes...\n", len(data))
					done := progress("importing")
					err = newClient(c).do("POST", "/api/definitions", data, nil)
					done()
					if err != nil {
						return err
					}
					fmt.Println("definitions imported")
					return nil
				},
			},
		},
	}
}

func closeCommand() *cli.Command {
	return &cli.Command{
		Name: "close", Usage: "close a client connection",
		Subcommands: []*cli.Command{{
			Name: "connection", ArgsUsage: "NAME", Usage: "close a connection (its name from list connections)",
			Description: "Example: warrenctl close connection --reason 'maintenance' '127.0.0.1:50000 -> 127.0.0.1:5672'",
			Flags:       []cli.Flag{&cli.StringFlag{Name: "reason", Value: "Closed via warrenctl"}},
			Action: nameAction("connection name", "connection", "closed", func(c *cli.Context, cl *client, name string) error {
				return cl.do("DELETE", "/api/connections/"+esc(name), nil, nil, "X-Reason", c.String("reason"))
			}),
		}},
	}
}

func overviewCommand() *cli.Command {
	return &cli.Command{
		Name: "overview", Usage: "show the broker's totals and rates", Description: "Example: warrenctl overview",
		Action: func(c *cli.Context) error {
			var o map[string]any
			if err := newClient(c).do("GET", "/api/overview", nil, &o); err != nil {
				return err
			}
			return emitKV(c, o, []column{
				{"node", "node"}, {"rabbitmq_version", "rabbitmq_version"}, {"connections", "object_totals.connections"},
				{"channels", "object_totals.channels"}, {"exchanges", "object_totals.exchanges"}, {"queues", "object_totals.queues"},
				{"consumers", "object_totals.consumers"}, {"messages", "queue_totals.messages"}, {"messages_ready", "queue_totals.messages_ready"},
				{"messages_unacknowledged", "queue_totals.messages_unacknowledged"}, {"publish_rate", "message_stats.publish_details.rate"},
				{"deliver_rate", "message_stats.deliver_get_details.rate"}, {"ack_rate", "message_stats.ack_details.rate"},
			})
		},
	}
}

func healthCommand() *cli.Command {
	return &cli.Command{
		Name: "health", Usage: "check that the broker answers and has no alarm", Description: "Example: warrenctl health",
		Action: func(c *cli.Context) error {
			var res map[string]any
			if err := newClient(c).do("GET", "/api/health/checks/alarms", nil, &res); err != nil {
				return err
			}
			fmt.Println("ok")
			return nil
		},
	}
}

// progress prints "what... Ns" on stderr every second until done is called.
func progress(what string) (done func()) {
	stop := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(os.Stderr, "\r%s... %ds", what, int(time.Since(start).Seconds()))
			case <-stop:
				if time.Since(start) >= time.Second {
					fmt.Fprintln(os.Stderr)
				}
				return
			}
		}
	}()
	return func() { close(stop); <-finished }
}

// traceCommand turns firehose tracing of --vhost on or off, as rabbitmqctl
// trace_on / trace_off do.
func traceCommand() *cli.Command {
	set := func(on bool) cli.ActionFunc {
		return func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usagef("trace: no arguments (the vhost is --vhost)")
			}
			cl := newClient(c)
			if err := cl.do("PUT", "/api/vhosts/"+esc(cl.vhost), map[string]any{"tracing": on}, nil); err != nil {
				return err
			}
			state := map[bool]string{true: "on", false: "off"}[on]
			fmt.Printf("tracing %s for vhost %s: copies go to amq.rabbitmq.trace (publish.<exchange>, deliver.<queue>)\n", state, cl.vhost)
			return nil
		}
	}
	return &cli.Command{
		Name:  "trace",
		Usage: "turn firehose tracing of a vhost on or off (every publish and delivery copied to amq.rabbitmq.trace)",
		Description: "Examples:\n   warrenctl trace on --vhost /\n" +
			"   warrenctl declare queue firehose && warrenctl declare binding --source amq.rabbitmq.trace --destination firehose --routing-key '#'\n" +
			"   warrenctl trace off",
		Subcommands: []*cli.Command{
			{Name: "on", Usage: "start tracing --vhost", Action: set(true)},
			{Name: "off", Usage: "stop tracing --vhost", Action: set(false)},
		},
	}
}
