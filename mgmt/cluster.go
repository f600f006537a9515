package mgmt

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/warren-mq/warren/cluster"
)

// Cluster is the node's membership of a cluster (cluster.Node), nil on a
// single node.
type Cluster interface {
	ID() uint64
	Status() []cluster.NodeStatus
	Join(ctx context.Context, addr string) error
	Forget(ctx context.Context, id uint64) error
	Leave(ctx context.Context) error
}

// clusterNodes lists /api/nodes across the cluster: this node in full, the
// others as the metadata group knows them.
func (a *api) clusterNodes() []item {
	if a.cluster == nil {
		return []item{a.nodeInfo()}
	}
	var out []item
	for _, n := range a.cluster.Status() {
		if n.ID == a.cluster.ID() {
			it := a.nodeInfo()
			it["cluster_id"], it["cluster_address"], it["leader"] = n.ID, n.Addr, n.Leader
			out = append(out, it)
			continue
		}
		name := n.Name
		if name == "" {
			name = "(" + n.Addr + ")" // a seed that has not announced itself yet
		}
		out = append(out, item{"name": name, "type": "disc", "running": n.Running, "cluster_id": n.ID,
			"cluster_address": n.Addr, "leader": n.Leader, "amqp_address": n.AMQP})
	}
	return out
}

// clusterStatus is GET /api/cluster: the members, which runs and which
// leads the metadata group.
func (a *api) clusterStatus(w http.ResponseWriter, _ *http.Request) {
	if a.cluster == nil {
		writeJSON(w, http.StatusOK, map[string]any{"cluster_name": a.clusterName(), "nodes": []any{
			map[string]any{"name": a.nodeName, "running": true, "leader": true, "voter": true}}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"cluster_name": a.clusterName(), "nodes": a.cluster.Status()})
}

func (a *api) needCluster(w http.ResponseWriter) bool {
	if a.cluster == nil {
		badRequest(w, "this node is not part of a cluster (start it with --cluster-listen and --cluster-seeds)")
		return false
	}
	return true
}

func clusterFailure(w http.ResponseWriter, err error) {
	if errors.Is(err, cluster.ErrNoQuorum) {
		writeJSON(w, http.StatusServiceUnavailable, errBody("unavailable", err.Error()))
		return
	}
	badRequest(w, err.Error())
}

// clusterJoin is POST /api/cluster/join {"address": "host:port"}: adds the
// node listening there (started with this cluster's seeds) to the cluster.
func (a *api) clusterJoin(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	var body struct {
		Address string `json:"address"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	if body.Address == "" {
		badRequest(w, "[{key_missing,address}]")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.cluster.Join(ctx, body.Address); err != nil {
		clusterFailure(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clusterLeave is POST /api/cluster/leave: this node leaves the cluster.
func (a *api) clusterLeave(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.cluster.Leave(ctx); err != nil {
		clusterFailure(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// clusterForget is DELETE /api/cluster/nodes/{node}: removes a node (by
// name or cluster address), which should be stopped, from the cluster.
func (a *api) clusterForget(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	want := var_(r, "node")
	for _, n := range a.cluster.Status() {
		if n.Name == want || n.Addr == want {
			ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
			defer cancel()
			if err := a.cluster.Forget(ctx, n.ID); err != nil {
				clusterFailure(w, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	notFound(w)
}
