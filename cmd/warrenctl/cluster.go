package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// clusterCommand manages the cluster the --url node belongs to, through
// GET /api/cluster, POST /api/cluster/join and /leave, and DELETE
// /api/cluster/nodes/{node}.
func clusterCommand() *cli.Command {
	noArgs := func(c *cli.Context) error {
		if c.NArg() > 0 {
			return usagef("%s: no arguments (the node is the one --url names)", c.Command.FullName())
		}
		return nil
	}
	return &cli.Command{
		Name:  "cluster",
		Usage: "show the cluster's nodes, add or remove one",
		Subcommands: []*cli.Command{
			{
				Name: "status", Usage: "list the nodes: name, cluster address, running, metadata leader, voter",
				Description: "Examples:\n   warrenctl cluster status\n   warrenctl --format json cluster status",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					var st struct {
						ClusterName string           `json:"cluster_name"`
						Nodes       []map[string]any `json:"nodes"`
					}
					if err := newClient(c).do("GET", "/api/cluster", nil, &st); err != nil {
						return err
					}
					if globals.format == "json" {
						return emit(c, map[string]any{"cluster_name": st.ClusterName, "nodes": st.Nodes}, nil)
					}
					for _, n := range st.Nodes {
						if name, _ := n["name"].(string); name == "" {
							// a seed that has not announced itself yet
							n["name"] = "(" + fmt.Sprint(n["addr"]) + ")"
						}
					}
					return emit(c, st.Nodes, []column{{"NAME", "name"}, {"CLUSTER_ADDRESS", "addr"}, {"RUNNING", "running"}, {"LEADER", "leader"}, {"VOTER", "voter"}})
				},
			},
			{
				Name: "join", Usage: "add the node listening on a cluster address (started with this cluster's seeds, or one that left)", ArgsUsage: "ADDRESS",
				Description: "Example: warrenctl cluster join warren4.example:25672",
				Action: func(c *cli.Context) error {
					addr, err := oneArg(c, "cluster address (host:port of the node's --cluster-listen)")
					if err != nil {
						return err
					}
					if err := newClient(c).do("POST", "/api/cluster/join", map[string]any{"address": addr}, nil); err != nil {
						return err
					}
					fmt.Printf("node at %s joined the cluster\n", addr)
					return nil
				},
			},
			{
				Name: "leave", Usage: "the --url node leaves the cluster (stop it afterwards)",
				Description: "Example: warrenctl --url http://warren3:15672 cluster leave",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if err := newClient(c).do("POST", "/api/cluster/leave", nil, nil); err != nil {
						return err
					}
					fmt.Printf("the node at %s left the cluster; stop it now\n", globals.url)
					return nil
				},
			},
			{
				Name: "forget", Usage: "remove a stopped node (by name or cluster address) from the cluster", ArgsUsage: "NODE",
				Description: "Example: warrenctl cluster forget warren3@host3",
				Action: nameAction("node name or cluster address", "node", "forgotten", func(_ *cli.Context, cl *client, name string) error {
					return cl.do("DELETE", "/api/cluster/nodes/"+esc(name), nil, nil)
				}),
			},
		},
	}
}

// quorumCommand changes quorum queues' groups (as rabbitmq-queues does)
// through POST and DELETE /api/queues/{vhost}/{name}/members and POST
// /api/rebalance/queues.
func quorumCommand() *cli.Command {
	queueNode := func(c *cli.Context) (string, string, error) {
		if c.NArg() != 2 {
			return "", "", usagef("%s: want QUEUE NODE", c.Command.FullName())
		}
		return c.Args().Get(0), c.Args().Get(1), nil
	}
	return &cli.Command{
		Name:  "quorum",
		Usage: "grow or shrink a quorum queue's members, rebalance leaders over the nodes",
		Subcommands: []*cli.Command{
			{
				Name: "add-member", Usage: "make a node a member of the queue's group (it catches up from the leader)", ArgsUsage: "QUEUE NODE",
				Description: "Example: warrenctl quorum add-member orders warren4@host4",
				Action: func(c *cli.Context) error {
					q, node, err := queueNode(c)
					if err != nil {
						return err
					}
					if err := newClient(c).do("POST", "/api/queues/"+esc(globals.vhost)+"/"+esc(q)+"/members", map[string]any{"node": node}, nil); err != nil {
						return err
					}
					fmt.Printf("%s is a member of queue %s\n", node, q)
					return nil
				},
			},
			{
				Name: "delete-member", Usage: "remove a node from the queue's group", ArgsUsage: "QUEUE NODE",
				Description: "Example: warrenctl quorum delete-member orders warren3@host3",
				Action: func(c *cli.Context) error {
					q, node, err := queueNode(c)
					if err != nil {
						return err
					}
					if err := newClient(c).do("DELETE", "/api/queues/"+esc(globals.vhost)+"/"+esc(q)+"/members/"+esc(node), nil, nil); err != nil {
						return err
					}
					fmt.Printf("%s is no longer a member of queue %s\n", node, q)
					return nil
				},
			},
			{
				Name: "rebalance", Usage: "spread the quorum queues' leaders evenly over the nodes",
				Description: "Example: warrenctl quorum rebalance",
				Action: func(c *cli.Context) error {
					if c.NArg() > 0 {
						return usagef("%s: no arguments", c.Command.FullName())
					}
					var out struct {
						Moves int `json:"moves"`
					}
					if err := newClient(c).do("POST", "/api/rebalance/queues", nil, &out); err != nil {
						return err
					}
					fmt.Printf("%d leaders moved\n", out.Moves)
					return nil
				},
			},
		},
	}
}
