package mgmt

// addMemory adds the memory budget for queued messages and what the queues
// hold in memory and paged out to disk to a node's fields (RabbitMQ's
// per-queue names, summed over the node).
func (a *api) addMemory(n map[string]any) {
	u, ok := a.b.MemoryUsage()
	if !ok {
		return
	}
	n["message_memory_budget"] = u.Limit
	n["message_bytes_ram"] = u.MemoryBytes
	n["messages_ram"] = u.MemoryMessages
	n["message_bytes_paged_out"] = u.PagedBytes
	n["messages_paged_out"] = u.PagedMessages
	n["queues_paging"] = u.QueuesPaging
}
