package mgmt

import (
	"errors"
	"net/http"

	"github.com/warren-mq/warren/amqp/server"
)

// Operations on quorum queues' groups beyond RabbitMQ's HTTP API (which
// leaves them to rabbitmq-queues): grow and shrink a queue's members, and
// rebalance leaders across the nodes (RabbitMQ's POST /api/rebalance/queues).

// addQueueMember is POST /api/queues/{vhost}/{name}/members {"node": N}:
// 201 when N became a member, 204 when it was one.
func (a *api) addQueueMember(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	var body struct {
		Node string `json:"node"`
	}
	if err := readBody(r, &body); err != nil {
		badBody(w, err)
		return
	}
	if body.Node == "" {
		badRequest(w, "[{key_missing,node}]")
		return
	}
	changed, err := a.b.ChangeQueueMembers(var_(r, "vhost"), var_(r, "name"), body.Node, true)
	if err != nil {
		memberFailure(w, err)
		return
	}
	created(w, changed)
}

// deleteQueueMember is DELETE /api/queues/{vhost}/{name}/members/{node}.
func (a *api) deleteQueueMember(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	if _, err := a.b.ChangeQueueMembers(var_(r, "vhost"), var_(r, "name"), var_(r, "node"), false); err != nil {
		memberFailure(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// rebalanceQueues is POST /api/rebalance/queues: quorum queues' leaders
// spread over the nodes; answers {"moves": n}.
func (a *api) rebalanceQueues(w http.ResponseWriter, r *http.Request) {
	if !a.needCluster(w) {
		return
	}
	n, err := a.b.RebalanceQueues()
	if err != nil {
		amqpFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"moves": n})
}

func memberFailure(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, server.ErrNotReplicated):
		badRequest(w, "not a quorum queue of a cluster")
	case errors.Is(err, server.ErrNotFound):
		notFound(w)
	case unavailable(w, err):
	default:
		badRequest(w, err.Error())
	}
}
