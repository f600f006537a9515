package mgmt

import "github.com/warren-mq/warren/amqp/server"

// streamItem shows a stream queue as RabbitMQ does (type stream, its
// messages, members and readers), plus Warren's view of its log: the
// first and last offsets kept, its segments, and each consumer's position
// and lag.
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
		readers = append(readers, item{"consumer_tag": c.Tag, "offset": c.Offset, "lag": c.Lag})
	}
	it["stream_consumers"] = readers
	for _, k := range []string{"exclusive_consumer_tag", "idle_since", "owner_pid_details", "consumer_utilisation",
		"backing_queue_status", "messages_paged_out", "head_message_timestamp"} {
		delete(it, k)
	}
}
