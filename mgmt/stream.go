package mgmt

import (
	"net/http"

	"github.com/warren-mq/warren/amqp/server"
)

// streamItem shows a stream queue as RabbitMQ does (type stream, its
// messages, members and readers), plus Warren's view of its log: the
// first and last offsets kept, its segments, each consumer's position
// and lag, and the named consumers' stored offsets.
func streamItem(it item, q server.QueueInfo) {
	s := q.Stream
	it["type"] = "stream"
	it["leader"], it["members"], it["online"] = q.Node, []string{q.Node}, []string{q.Node}
	if q.Members != nil { // replicated on a cluster
		it["members"], it["online"] = q.Members, q.Online
	}
	it["readers"] = map[string]any{q.Node: len(q.Consumers)}
	it["messages"], it["messages_ready"], it["messages_unacknowledged"] = s.Messages, s.Messages, 0
	it["message_bytes"] = s.Bytes
	it["segments"] = s.Segments
	it["first_offset"], it["last_offset"] = s.First, s.Last
	if s.Messages == 0 {
		it["last_offset"] = nil
	}
	readers := make([]item, 0, len(s.Consumers))
	for _, c := range s.Consumers {
		r := item{"consumer_tag": c.Tag, "offset": c.Offset, "lag": c.Lag}
		if c.Name != "" {
			r["name"] = c.Name
		}
		readers = append(readers, r)
	}
	it["stream_consumers"] = readers
	// Named consumers' stored offsets (where each name resumes) and what
	// of them is on disk, connected or not.
	tracked := make([]item, 0, len(s.Tracking))
	for _, t := range s.Tracking {
		tracked = append(tracked, item{"name": t.Name, "offset": t.Offset, "synced_offset": t.Synced})
	}
	it["consumer_offsets"] = tracked
	for _, k := range []string{"exclusive_consumer_tag", "idle_since", "owner_pid_details", "consumer_utilisation",
		"backing_queue_status", "messages_paged_out", "head_message_timestamp"} {
		delete(it, k)
	}
}

// forgetStreamConsumer is DELETE
// /api/queues/{vhost}/{name}/consumer-offsets/{consumer} (Warren's): the
// stream forgets a named consumer's stored offset, so names that will not
// come back do not stay for the stream's life.
func (a *api) forgetStreamConsumer(w http.ResponseWriter, r *http.Request) {
	vhost := var_(r, "vhost")
	if !a.vhostVisible(who(r), vhost) {
		notFound(w)
		return
	}
	found, err := a.b.ForgetStreamConsumer(who(r).name, vhost, var_(r, "name"), var_(r, "consumer"))
	switch {
	case err != nil:
		amqpFailure(w, err)
	case !found:
		notFound(w)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}
