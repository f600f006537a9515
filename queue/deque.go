package queue

import (
	"sort"
	"sync/atomic"
)

// deque is the ready list: entries in Seq order, popped at the head, pushed at
// the tail, and reinserted by Seq on requeue.
type deque struct {
	buf  []Entry
	head int
	// lenHint mirrors len() for lock-free reads (flow control's fast path).
	lenHint atomic.Int64
}

func (d *deque) len() int { return len(d.buf) - d.head }

func (d *deque) push(e Entry) {
	d.buf = append(d.buf, e)
	d.lenHint.Store(int64(d.len()))
}

func (d *deque) peek() *Entry { return &d.buf[d.head] }

func (d *deque) pop() Entry {
	e := d.buf[d.head]
	d.buf[d.head] = Entry{}
	d.head++
	d.lenHint.Store(int64(d.len()))
	if d.head == len(d.buf) {
		d.buf, d.head = d.buf[:0], 0
	} else if d.head >= 1024 && d.head*2 >= len(d.buf) {
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf, d.head = d.buf[:n], 0
	}
	return e
}

// insert puts e back at its Seq position.
func (d *deque) insert(e Entry) {
	live := d.buf[d.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].Seq > e.Seq })
	if i == 0 && d.head > 0 {
		d.head--
		d.buf[d.head] = e
		d.lenHint.Store(int64(d.len()))
		return
	}
	d.buf = append(d.buf, Entry{})
	live = d.buf[d.head:]
	copy(live[i+1:], live[i:])
	live[i] = e
	d.lenHint.Store(int64(d.len()))
}

func (d *deque) clear() int {
	n := d.len()
	clear(d.buf)
	d.buf, d.head = d.buf[:0], 0
	d.lenHint.Store(0)
	return n
}

func (d *deque) each(fn func(*Entry)) {
	for i := d.head; i < len(d.buf); i++ {
		fn(&d.buf[i])
	}
}
