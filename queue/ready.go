package queue

// readyList holds a queue's ready messages: one deque, or one per priority
// level for a priority queue (x-max-priority). Higher levels pop first;
// within a level it is FIFO, and a requeued message returns to its place in
// its own level.
type readyList struct {
	levels []deque
	n      int
}

func newReadyList(maxPriority int) readyList {
	return readyList{levels: make([]deque, maxPriority+1)}
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

func (r *readyList) push(e Entry) {
	r.levels[r.level(&e)].push(e)
	r.n++
}

func (r *readyList) insert(e Entry) {
	r.levels[r.level(&e)].insert(e)
	r.n++
}

// top returns the highest non-empty level; the list must not be empty.
func (r *readyList) top() *deque {
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
	return r.top().pop()
}

func (r *readyList) clear() int {
	n := r.n
	for i := range r.levels {
		r.levels[i].clear()
	}
	r.n = 0
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
