package queue

// readyList holds a queue's ready messages: one deque, or one per priority
// level for a priority queue (x-max-priority). Higher levels pop first;
// within a level it is FIFO, and a requeued message returns to its place in
// its own level.
type readyList struct {
	levels []deque
	n      int
	// fair is a quorum queue's two levels (RabbitMQ 4.x): priorities 0-4
	// and none are normal, above 4 high, and high is served two to one
	// rather than strictly first; highRun counts the highs served in a row.
	fair    bool
	highRun int
	// bytes is what the entries cost in memory (cost), mirrored into
	// budget when the queue shares one.
	bytes  int64
	budget *Budget
}

func newReadyList(maxPriority int) readyList {
	return readyList{levels: make([]deque, maxPriority+1)}
}

// newFairList is a quorum queue's ready list: two levels, high served two
// to one.
func newFairList() readyList {
	return readyList{levels: make([]deque, 2), fair: true}
}

// level is the priority level of e: a message without a priority counts as
// 0, one above the maximum as the maximum.
func (r *readyList) level(e *Entry) int {
	if len(r.levels) == 1 {
		return 0
	}
	p, ok := e.Msg.Priority()
	if !ok {
		return 0
	}
	if r.fair {
		if p > 4 {
			return 1
		}
		return 0
	}
	return min(int(p), len(r.levels)-1)
}

func (r *readyList) len() int { return r.n }

// approxLen may be read without the queue lock.
func (r *readyList) approxLen() int64 {
	var n int64
	for i := range r.levels {
		n += r.levels[i].lenHint.Load()
	}
	return n
}

func (r *readyList) charge(n int64) {
	r.bytes += n
	if r.budget != nil {
		r.budget.add(n)
	}
}

func (r *readyList) push(e Entry) {
	r.levels[r.level(&e)].push(e)
	r.n++
	r.charge(Cost(&e))
}

func (r *readyList) insert(e Entry) {
	r.levels[r.level(&e)].insert(e)
	r.n++
	r.charge(Cost(&e))
}

// top returns the highest non-empty level; the list must not be empty.
func (r *readyList) top() *deque {
	if r.fair && r.highRun >= 2 && r.levels[0].len() > 0 {
		return &r.levels[0]
	}
	for i := len(r.levels) - 1; i > 0; i-- {
		if r.levels[i].len() > 0 {
			return &r.levels[i]
		}
	}
	return &r.levels[0]
}

func (r *readyList) peek() *Entry { return r.top().peek() }

func (r *readyList) pop() Entry {
	r.n--
	d := r.top()
	if r.fair {
		if d == &r.levels[1] {
			r.highRun++
		} else {
			r.highRun = 0
		}
	}
	e := d.pop()
	r.charge(-Cost(&e))
	return e
}

// popBack removes the newest entry that was never requeued, for paging the
// in-memory tail out; ok is false when there is none. Only for a list of
// one level: a priority queue's levels are not in Seq order.
func (r *readyList) popBack() (e Entry, ok bool) {
	d := &r.levels[0]
	if len(r.levels) != 1 || !d.backOK() {
		return e, false
	}
	if b := d.back(); b.Redelivered || b.Returns > 0 {
		return e, false
	}
	e = d.popBack()
	r.n--
	r.charge(-Cost(&e))
	return e, true
}

func (r *readyList) clear() int {
	n := r.n
	for i := range r.levels {
		r.levels[i].clear()
	}
	r.n = 0
	r.charge(-r.bytes)
	return n
}

// eachWhile visits entries in delivery order until fn returns false.
func (r *readyList) eachWhile(fn func(*Entry) bool) {
	for i := len(r.levels) - 1; i >= 0; i-- {
		if !r.levels[i].eachWhile(fn) {
			return
		}
	}
}

func (r *readyList) each(fn func(*Entry)) {
	for i := len(r.levels) - 1; i >= 0; i-- {
		r.levels[i].each(fn)
	}
}
