package exchange

import (
	"fmt"
	"slices"
	"strings"

	"github.com/warren-mq/warren/amqp"
)

// Kinds of exchange that Warren routes natively.
const (
	Direct  = "direct"
	Fanout  = "fanout"
	Topic   = "topic"
	Headers = "headers"
)

// Binding is one binding from an exchange to a destination.
type Binding[D comparable] struct {
	Dest D
	Key  string
	Args amqp.Table
}

// Matcher indexes the bindings of one exchange and routes by them.
type Matcher[D comparable] interface {
	// Add adds b and reports whether it was new: a binding with the same
	// destination, key and arguments is added once.
	Add(b Binding[D]) bool
	// Remove removes the binding equal to b and reports whether it existed.
	Remove(b Binding[D]) bool
	// Match calls fn for each destination that a message with this routing
	// key and these headers goes to. fn may be called more than once for a
	// destination (overlapping topic patterns); callers deduplicate.
	Match(key string, headers amqp.Table, fn func(D))
	// Bindings lists the bindings in the order they were added.
	Bindings() []Binding[D]
	Len() int
}

// NewMatcher returns the matcher for an exchange kind, or false for a kind
// Warren does not know.
func NewMatcher[D comparable](kind string) (Matcher[D], bool) {
	switch kind {
	case Direct:
		return &direct[D]{keys: map[string][]D{}}, true
	case Fanout:
		return &fanout[D]{}, true
	case Topic:
		return &topic[D]{root: &topicNode[D]{}}, true
	case Headers:
		return &headers[D]{}, true
	case ConsistentHash:
		return &consistentHash[D]{}, true
	case ModulusHash:
		return &modulusHash[D]{}, true
	case Random:
		return &random[D]{}, true
	}
	return nil, false
}

// bindingSet is the common list of bindings with identity by
// (destination, key, canonical arguments).
type bindingSet[D comparable] struct {
	ids  map[bindingID[D]]int // index into list
	list []Binding[D]
}

type bindingID[D comparable] struct {
	dest D
	key  string
	args string
}

func idOf[D comparable](b Binding[D]) bindingID[D] {
	return bindingID[D]{dest: b.Dest, key: b.Key, args: CanonicalArgs(b.Args)}
}

func (s *bindingSet[D]) add(b Binding[D]) bool {
	id := idOf(b)
	if _, ok := s.ids[id]; ok {
		return false
	}
	if s.ids == nil {
		s.ids = map[bindingID[D]]int{}
	}
	s.ids[id] = len(s.list)
	s.list = append(s.list, b)
	return true
}

func (s *bindingSet[D]) remove(b Binding[D]) bool {
	id := idOf(b)
	i, ok := s.ids[id]
	if !ok {
		return false
	}
	delete(s.ids, id)
	s.list = slices.Delete(s.list, i, i+1)
	for j := i; j < len(s.list); j++ {
		s.ids[idOf(s.list[j])] = j
	}
	return true
}

func (s *bindingSet[D]) Bindings() []Binding[D] { return slices.Clone(s.list) }
func (s *bindingSet[D]) Len() int               { return len(s.list) }

// CanonicalArgs renders a table deterministically (keys sorted), so that two
// argument tables compare equal when their contents are equal.
func CanonicalArgs(t amqp.Table) string {
	if len(t) == 0 {
		return ""
	}
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%#v;", k, t[k])
	}
	return b.String()
}

type direct[D comparable] struct {
	bindingSet[D]
	keys map[string][]D // a destination appears once per binding
}

func (d *direct[D]) Add(b Binding[D]) bool {
	if !d.add(b) {
		return false
	}
	d.keys[b.Key] = append(d.keys[b.Key], b.Dest)
	return true
}

func (d *direct[D]) Remove(b Binding[D]) bool {
	if !d.remove(b) {
		return false
	}
	l := d.keys[b.Key]
	if i := slices.Index(l, b.Dest); i >= 0 {
		l = slices.Delete(l, i, i+1)
	}
	if len(l) == 0 {
		delete(d.keys, b.Key)
	} else {
		d.keys[b.Key] = l
	}
	return true
}

func (d *direct[D]) Match(key string, _ amqp.Table, fn func(D)) {
	for _, dest := range d.keys[key] {
		fn(dest)
	}
}

type fanout[D comparable] struct {
	bindingSet[D]
}

func (f *fanout[D]) Add(b Binding[D]) bool    { return f.add(b) }
func (f *fanout[D]) Remove(b Binding[D]) bool { return f.remove(b) }
func (f *fanout[D]) Match(_ string, _ amqp.Table, fn func(D)) {
	for i := range f.list {
		fn(f.list[i].Dest)
	}
}
