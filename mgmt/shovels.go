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

// getShovel answers GET /api/shovels/vhost/{vhost}/{name} as RabbitMQ
// 3.10 does: 404 for a shovel that does not run, else the vhost's list (not
// the one shovel: observed on 3.10.8).
func (a *api) getShovel(w http.ResponseWriter, r *http.Request) {
	l := a.shovelStatus(who(r), var_(r, "vhost"))
	for _, s := range l {
		if s.Name == var_(r, "name") {
			writeJSON(w, http.StatusOK, l)
			return
		}
	}
	notFound(w)
}

// restartShovel answers DELETE /api/shovels/vhost/{vhost}/{name}/restart:
// the shovel reconnects at once (RabbitMQ's restart).
func (a *api) restartShovel(w http.ResponseWriter, r *http.Request) {
	m, ok := a.b.ComponentOf(shovel.Component).(*shovel.Manager)
	if !ok || !m.Restart(var_(r, "vhost"), var_(r, "name")) {
		notFound(w)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
