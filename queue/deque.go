package queue

import (
	"sort"
	"sync/atomic"
)

// chunkSize entries per chunk, so a deep queue grows by linking chunks
// instead of copying one huge slice: 255 entries of 32 bytes and the chunk's
// own fields fill exactly Go's 8 KiB size class (256 would spill into the
// 9.25 KiB class and waste 13%).
const chunkSize = 255

type chunk struct {
	e          [chunkSize]Entry
	head, tail int
	next       *chunk
}

// deque is the ready list. Entries that were never delivered sit in a
// chunked FIFO in Seq order; requeued entries sit in a small slice sorted by
// Seq. Every requeued entry was popped from the FIFO earlier, so its Seq is
// below every Seq still in the FIFO: popping the requeued slice first and
// then the FIFO yields Seq order, which is how a requeued message returns to
// its original position.
type deque struct {
	requeued   []Entry
	head, tail *chunk
	n          int // entries in the FIFO
	spare      *chunk
	// lenHint mirrors len() for lock-free reads (flow control's fast path).
	lenHint atomic.Int64
}

func (d *deque) len() int { return len(d.requeued) + d.n }

func (d *deque) sync() { d.lenHint.Store(int64(d.len())) }

func (d *deque) push(e Entry) {
	if d.tail == nil || d.tail.tail == chunkSize {
		c := d.spare
		if c != nil {
			d.spare = nil
		} else {
			c = new(chunk)
		}
		if d.tail == nil {
			d.head, d.tail = c, c
		} else {
			d.tail.next = c
			d.tail = c
		}
	}
	d.tail.e[d.tail.tail] = e
	d.tail.tail++
	d.n++
	d.sync()
}

// peek returns the head entry; the deque must not be empty.
func (d *deque) peek() *Entry {
	if len(d.requeued) > 0 {
		return &d.requeued[0]
	}
	return &d.head.e[d.head.head]
}

// pop removes and returns the head entry; the deque must not be empty.
func (d *deque) pop() Entry {
	defer d.sync()
	if len(d.requeued) > 0 {
		e := d.requeued[0]
		d.requeued[0] = Entry{}
		d.requeued = d.requeued[1:]
		if len(d.requeued) == 0 {
			d.requeued = nil
		}
		return e
	}
	c := d.head
	e := c.e[c.head]
	c.e[c.head] = Entry{}
	c.head++
	d.n--
	if c.head == c.tail {
		if c == d.tail {
			c.head, c.tail = 0, 0 // keep the last chunk for reuse
		} else {
			d.head = c.next
			c.next, c.head, c.tail = nil, 0, 0
			d.spare = c
		}
	}
	return e
}

// insert puts a requeued entry back at its Seq position.
func (d *deque) insert(e Entry) {
	i := sort.Search(len(d.requeued), func(i int) bool { return d.requeued[i].Seq > e.Seq })
	d.requeued = append(d.requeued, Entry{})
	copy(d.requeued[i+1:], d.requeued[i:])
	d.requeued[i] = e
	d.sync()
}

func (d *deque) clear() int {
	n := d.len()
	d.requeued = nil
	d.head, d.tail, d.spare, d.n = nil, nil, nil, 0
	d.sync()
	return n
}

func (d *deque) each(fn func(*Entry)) {
	d.eachWhile(func(e *Entry) bool { fn(e); return true })
}

// eachWhile visits entries in delivery order until fn returns false.
func (d *deque) eachWhile(fn func(*Entry) bool) bool {
	for i := range d.requeued {
		if !fn(&d.requeued[i]) {
			return false
		}
	}
	for c := d.head; c != nil; c = c.next {
		for i := c.head; i < c.tail; i++ {
			if !fn(&c.e[i]) {
				return false
			}
		}
	}
	return true
}

// backOK reports whether the FIFO part is non-empty (popBack may be called).
func (d *deque) backOK() bool { return d.n > 0 }

// back returns the last entry of the FIFO part; backOK must be true.
func (d *deque) back() *Entry { return &d.tail.e[d.tail.tail-1] }

// popBack removes the last entry of the FIFO part, for paging a queue's
// in-memory tail out; backOK must be true. Finding the chunk before the
// tail walks the list, which is rare and bounded by the chunk count.
func (d *deque) popBack() Entry {
	defer d.sync()
	c := d.tail
	c.tail--
	e := c.e[c.tail]
	c.e[c.tail] = Entry{}
	d.n--
	if c.head == c.tail {
		if c == d.head {
			c.head, c.tail = 0, 0
		} else {
			p := d.head
			for p.next != c {
				p = p.next
			}
			p.next, d.tail = nil, p
			c.head, c.tail = 0, 0
			d.spare = c
		}
	}
	return e
}
