package mgmt

import (
	"net/http"

	"github.com/warren-mq/warren/shovel"
)

// /api/shovels as rabbitmq_shovel_management 3.10 serves it: the shovels
// this node runs (a cluster runs them all on its metadata leader), each with
// its state. Without a shovel manager (a broker started without one) the
// lists are empty.

// shovelStatus lists the shovels of vhost ("" for all) the user may see.
func (a *api) shovelStatus(p principal, vhost string) []shovel.Status {
	m, ok := a.b.ComponentOf(shovel.Component).(*shovel.Manager)
	out := []shovel.Status{}
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

func (a *api) listShovels(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, a.shovelStatus(who(r), vhost))
}

// getShovel answers /api/shovels/vhost/{vhost}/{name}.
func (a *api) getShovel(w http.ResponseWriter, r *http.Request) {
	for _, s := range a.shovelStatus(who(r), var_(r, "vhost")) {
		if s.Name == var_(r, "name") {
			writeJSON(w, http.StatusOK, s)
			return
		}
	}
	notFound(w)
}
