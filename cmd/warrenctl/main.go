// Command warrenctl is Warren's command-line tool: it lists, declares and
// deletes topology, publishes, gets and consumes messages, exports and
// imports definitions through the management API (AMQP where it must), and
// generates load (perf).
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	app := newApp()
	args, err := flagsAnywhere(app, os.Args)
	if err == nil {
		err = app.Run(args)
	}
	if err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintln(os.Stderr, "warrenctl:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "warrenctl:", oneLine(err.Error()))
		os.Exit(1)
	}
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "warrenctl",
		Usage: "manage a Warren (or RabbitMQ) broker through its management API",
		Description: "Examples:\n" +
			"   warrenctl list queues\n" +
			"   warrenctl declare queue --durable --arg x-max-length=1000 orders\n" +
			"   warrenctl publish --exchange amq.default --routing-key orders 'hello'\n" +
			"   warrenctl --format json get --count 5 orders",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:15672", EnvVars: []string{"WARREN_URL"}, Usage: "management API base URL"},
			&cli.StringFlag{Name: "user", Aliases: []string{"u"}, Value: "guest", EnvVars: []string{"WARREN_USER"}, Usage: "user name"},
			&cli.StringFlag{Name: "password", Aliases: []string{"p"}, Value: "guest", EnvVars: []string{"WARREN_PASSWORD"}, Usage: "password"},
			&cli.StringFlag{Name: "vhost", Value: "/", EnvVars: []string{"WARREN_VHOST"}, Usage: "virtual host"},
			&cli.StringFlag{Name: "format", Value: "table", EnvVars: []string{"WARREN_FORMAT"}, Usage: "output: table or json"},
			&cli.StringFlag{Name: "amqp-url", EnvVars: []string{"WARREN_AMQP_URL"}, Usage: "AMQP URL for consume and perf (default: the AMQP listener that GET /api/overview lists, else the management host on port 5672, with --user, --password and --vhost)"},
		},
		Before: func(c *cli.Context) error {
			if f := c.String("format"); f != "table" && f != "json" {
				return usagef("--format must be table or json, not %q", f)
			}
			globals.url, globals.user, globals.password = c.String("url"), c.String("user"), c.String("password")
			globals.vhost, globals.format, globals.amqpURL = c.String("vhost"), c.String("format"), c.String("amqp-url")
			return nil
		},
		Commands: []*cli.Command{
			listCommand(), declareCommand(), deleteCommand(), purgeCommand(), publishCommand(), getCommand(),
			consumeCommand(), definitionsCommand(), closeCommand(), overviewCommand(), healthCommand(), perfCommand(), traceCommand(), federationCommand(),
			clusterCommand(),
			quorumCommand(),
			shovelCommand(),
			streamCommand(),
		},
		ExitErrHandler: func(*cli.Context, error) {},
	}
}

// usageError is a mistake on the command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(s), " ")
}
