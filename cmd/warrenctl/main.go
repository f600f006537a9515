// Command warrenctl is Warren's command-line tool. For now it checks a
// broker's health; the full CLI comes with the warrenctl issue.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "warrenctl",
		Usage: "manage a Warren broker",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:15672", EnvVars: []string{"WARREN_URL"}, Usage: "management base URL"},
		},
		Commands: []*cli.Command{{
			Name:      "health",
			Usage:     "check that the broker answers",
			UsageText: "warrenctl health\n\nExample: warrenctl --url http://127.0.0.1:15672 health",
			Action: func(c *cli.Context) error {
				hc := http.Client{Timeout: 5 * time.Second}
				resp, err := hc.Get(c.String("url") + "/api/health/checks/alive")
				if err != nil {
					return fmt.Errorf("broker unreachable: %w", err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("broker answered %s", resp.Status)
				}
				fmt.Print(string(body))
				return nil
			},
		}},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "warrenctl:", err)
		os.Exit(1)
	}
}
