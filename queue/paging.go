package queue

// memory returns the bytes the queue's ready messages hold in memory and
// whether it has no consumers, for the budget's pager.
func (q *Queue) memory() (bytes int64, idle bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.ready.bytes, len(q.consumers) == 0
}

// shrink pages the queue's in-memory tail out until it holds at most target
// bytes: the newest entries go to the paged-out tail, which then starts
// earlier. Entries already on disk (persistent ones of a durable queue,
// ones read back from a spill) are only dropped from memory; the others are
// written out. A non-durable queue whose spool already holds a tail cannot
// put entries in front of it and keeps its memory until consumers drain
// it, as does a priority queue (its levels are not in Seq order) and a tail
// of requeued messages (their redelivered flag lives in memory only).
func (q *Queue) shrink(target int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.Journal == nil || q.deleted || q.stopped || q.spool != nil && q.disk.N > 0 {
		return
	}
	var out []Entry // newest first
	for q.ready.bytes > target {
		e, ok := q.ready.popBack()
		if !ok {
			break
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return
	}
	if q.disk.N == 0 {
		q.disk.Last = out[0].Seq
	}
	for i := len(out) - 1; i >= 0; i-- {
		e := &out[i]
		switch {
		case q.spool != nil:
			q.spool.SpoolWrite(q.ID, e.Seq, e.Msg, e.ExpiresAt)
		case e.Journaled:
			// Already in the journal's key range that Load reads.
		default:
			q.Journal.Spill(q.ID, e.Seq, e.Msg, e.ExpiresAt)
		}
		q.disk.Bytes += int64(len(e.Msg.Body))
	}
	q.disk.From = out[len(out)-1].Seq
	q.disk.N += len(out)
	q.diskHint.Store(int64(q.disk.N))
}
