package mgmt

import (
	"net/http"
	"strings"

	"github.com/warren-mq/warren/federation"
)

// /api/federation-links as rabbitmq_federation_management 3.10 serves it:
// the links this node runs (a cluster runs them all on its metadata
// leader), each with its state. Without a federation manager the lists are
// empty.

// listFederationLinks answers /api/federation-links[/{vhost}] and, under
// .../state/down, only the links neither running nor starting.
func (a *api) listFederationLinks(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	// In a cluster the links run on the metadata leader: ask every node.
	links := a.gather(r, peerList{List: "federation-links", Vhost: vhost}, a.federationItems(who(r), vhost))
	if strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/state/down") {
		down := links[:0]
		for _, l := range links {
			if l["status"] != "running" && l["status"] != "starting" {
				down = append(down, l)
			}
		}
		links = down
	}
	writeJSON(w, http.StatusOK, links)
}

// federationItems are this node's links as list items.
func (a *api) federationItems(p principal, vhost string) []item {
	m, _ := a.b.ComponentOf(federation.UpstreamComponent).(*federation.Manager)
	if m == nil {
		return []item{}
	}
	return visibleItems(a, p, m.Status(vhost), func(s federation.Status) string { return s.Vhost })
}

// restartFederationLink answers DELETE
// /api/federation-links/vhost/{vhost}/{id}/{node}/restart: the link starts
// over (a new connection to its upstream).
func (a *api) restartFederationLink(w http.ResponseWriter, r *http.Request) {
	m, ok := a.b.ComponentOf(federation.UpstreamComponent).(*federation.Manager)
	if !ok || !m.Restart(var_(r, "vhost"), var_(r, "id")) {
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
