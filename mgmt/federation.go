package mgmt

import (
	"net/http"

	"github.com/warren-mq/warren/federation"
)

// /api/federation-links as rabbitmq_federation_management 3.10 serves it:
// the links this node runs (a cluster runs them all on its metadata
// leader), each with its state. Without a federation manager the lists are
// empty.

func (a *api) federationLinks(p principal, vhost string) []federation.Status {
	m, ok := a.b.ComponentOf(federation.UpstreamComponent).(*federation.Manager)
	out := []federation.Status{}
	if !ok {
		return out
	}
	for _, s := range m.Status(vhost) {
		if a.vhostVisible(p, s.Vhost) {
			out = append(out, s)
		}
	}
	return out
}

func (a *api) listFederationLinks(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, a.federationLinks(who(r), vhost))
}
