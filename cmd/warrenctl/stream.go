package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// streamCommand shows a stream's log, its consumers' positions and its
// named consumers' stored offsets (/api/queues/{vhost}/{name}).
func streamCommand() *cli.Command {
	return &cli.Command{
		Name: "stream", Usage: "show a stream: its offsets, segments, consumers' lag and named consumers' stored offsets", ArgsUsage: "QUEUE",
		Description: "Examples:\n   warrenctl stream events\n   warrenctl consume --name audit --offset first events   # a named consumer: resumes where it stopped\n" +
			"   warrenctl stream --forget audit events                # forget a name's stored offset",
		Flags: []cli.Flag{&cli.StringFlag{Name: "forget", Usage: "forget this named consumer's stored offset"}},
		Action: func(c *cli.Context) error {
			q, err := oneArg(c, "stream name")
			if err != nil {
				return err
			}
			if name := c.String("forget"); name != "" {
				if err := newClient(c).do("DELETE", "/api/queues/"+esc(globals.vhost)+"/"+esc(q)+"/consumer-offsets/"+esc(name), nil, nil); err != nil {
					return err
				}
				fmt.Printf("stream %s forgot consumer %s\n", q, name)
				return nil
			}
			var it map[string]any
			if err := newClient(c).do("GET", "/api/queues/"+esc(globals.vhost)+"/"+esc(q), nil, &it); err != nil {
				return err
			}
			if it["type"] != "stream" {
				return fmt.Errorf("queue %s is not a stream (type %v)", q, it["type"])
			}
			if globals.format == "json" {
				return emit(c, map[string]any{"name": it["name"], "vhost": it["vhost"], "messages": it["messages"], "message_bytes": it["message_bytes"],
					"segments": it["segments"], "first_offset": it["first_offset"], "last_offset": it["last_offset"],
					"stream_consumers": it["stream_consumers"], "consumer_offsets": it["consumer_offsets"]}, nil)
			}
			if err := emitKV(c, it, []column{{"MESSAGES", "messages"}, {"BYTES", "message_bytes"}, {"SEGMENTS", "segments"},
				{"FIRST OFFSET", "first_offset"}, {"LAST OFFSET", "last_offset"}}); err != nil {
				return err
			}
			fmt.Println()
			if err := emit(c, rows(it["stream_consumers"]), []column{{"CONSUMER TAG", "consumer_tag"}, {"NAME", "name"}, {"NEXT OFFSET", "offset"}, {"LAG", "lag"}}); err != nil {
				return err
			}
			fmt.Println()
			return emit(c, rows(it["consumer_offsets"]), []column{{"NAMED CONSUMER", "name"}, {"STORED OFFSET", "offset"}, {"ON DISK", "synced_offset"}})
		},
	}
}

// rows turns a JSON list of objects into emit's rows.
func rows(v any) []map[string]any {
	list, _ := v.([]any)
	out := make([]map[string]any, 0, len(list))
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}
