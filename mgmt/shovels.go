package mgmt

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/warren-mq/warren/shovel"
)

// /api/shovels as rabbitmq_shovel_management 3.10 serves it: every shovel
// that runs, each with its state and node. A cluster runs them all on its
// metadata leader; any node lists them (gather asks the others). Without a
// shovel manager (a broker started without one) the lists are empty.

// shovelItems is this node's part of /api/shovels.
func (a *api) shovelItems(p principal, vhost string) []item {
	m, _ := a.b.ComponentOf(shovel.Component).(*shovel.Manager)
	if m == nil {
		return []item{}
	}
	return visibleItems(a, p, m.Status(vhost), func(s shovel.Status) string { return s.Vhost })
}

// allShovels lists the shovels of vhost ("" for all) on every node.
func (a *api) allShovels(r *http.Request, vhost string) []item {
	l := a.gather(r, peerList{List: "shovels", Vhost: vhost}, a.shovelItems(who(r), vhost))
	slices.SortFunc(l, func(x, y item) int {
		return cmp.Or(strings.Compare(fmt.Sprint(x["vhost"]), fmt.Sprint(y["vhost"])), strings.Compare(fmt.Sprint(x["name"]), fmt.Sprint(y["name"])))
	})
	return l
}

func (a *api) listShovels(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if vhost != "" && !a.vhostExists(vhost) {
		notFound(w)
		return
	}
	writeJSON(w, http.StatusOK, a.allShovels(r, vhost))
}

// getShovel answers GET /api/shovels/vhost/{vhost}/{name} as RabbitMQ
// 3.10 does: 404 for a shovel that does not run, else the vhost's list (not
// the one shovel: observed on 3.10.8).
func (a *api) getShovel(w http.ResponseWriter, r *http.Request) {
	l := a.allShovels(r, var_(r, "vhost"))
	for _, s := range l {
		if s["name"] == var_(r, "name") {
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
