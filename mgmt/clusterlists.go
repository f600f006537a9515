package mgmt

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// A cluster node's lists cover the cluster: each node lists its own
// connections, channels and consumers, and its queues with their figures;
// the node that answers asks the others (over the cluster's connections,
// server.AskPeers) and merges. A queue appears once, with the figures of
// its home node.

// peerList asks another node for its part of a list, as the requesting
// user would see it there.
type peerList struct {
	List  string   `json:"list"` // queues, connections, channels, consumers
	Vhost string   `json:"vhost,omitempty"`
	Conn  string   `json:"conn,omitempty"`
	User  string   `json:"user"`
	Tags  []string `json:"tags"`
}

// peerListWait bounds the wait for other nodes' parts of a list.
const peerListWait = 3 * time.Second

// servePeer answers another node's peerList with this node's items.
func (a *api) servePeer(req []byte) ([]byte, error) {
	var pl peerList
	if err := json.Unmarshal(req, &pl); err != nil {
		return nil, err
	}
	p := principal{name: pl.User, tags: pl.Tags}
	var items []item
	switch pl.List {
	case "queues":
		items = a.queueItems(p, pl.Vhost)
	case "connections":
		items = a.connectionItems(p, pl.Vhost)
	case "channels":
		items = a.channelItems(p, pl.Vhost, pl.Conn)
	case "consumers":
		items = a.consumerItems(p, pl.Vhost)
	case "shovels":
		items = a.shovelItems(p, pl.Vhost)
	case "federation-links":
		items = a.federationItems(p, pl.Vhost)
	default:
		return nil, fmt.Errorf("unknown list %q", pl.List)
	}
	return json.Marshal(items)
}

// gather completes local items with the other nodes' parts.
func (a *api) gather(r *http.Request, pl peerList, local []item) []item {
	if a.cluster == nil {
		return local
	}
	p := who(r)
	pl.User, pl.Tags = p.name, p.tags
	req, err := json.Marshal(pl)
	if err != nil {
		return local
	}
	ctx, cancel := context.WithTimeout(r.Context(), peerListWait)
	defer cancel()
	answers := a.b.AskPeers(ctx, req)
	if pl.List != "queues" {
		for _, ans := range answers {
			var items []item
			if json.Unmarshal(ans, &items) == nil {
				local = append(local, items...)
			}
		}
		return local
	}
	// Queues: every node lists every queue; keep the home node's entry.
	at := map[string]int{}
	for i, it := range local {
		at[fmt.Sprint(it["vhost"], "\x00", it["name"])] = i
	}
	for node, ans := range answers {
		var items []item
		if json.Unmarshal(ans, &items) != nil {
			continue
		}
		for _, it := range items {
			if it["node"] != node {
				continue
			}
			if i, ok := at[fmt.Sprint(it["vhost"], "\x00", it["name"])]; ok {
				local[i] = it
			} else {
				local = append(local, it)
			}
		}
	}
	return local
}

// toInt reads a count from a local item (int) or another node's (float64).
func toInt(v any) int {
	switch n := v.(type) {
	case int:
		return n
	case float64:
		return int(n)
	}
	return 0
}
