package exchange

import (
	"slices"
	"strings"

	"github.com/warren-mq/warren/amqp"
)

// topic routes by a trie of pattern words. A routing key is split on '.';
// "" has zero words and empty words are words ("a..c" has three). In a
// pattern, "*" matches exactly one word (possibly empty) and "#" zero or more.
type topic[D comparable] struct {
	bindingSet[D]
	root *topicNode[D]
}

type topicNode[D comparable] struct {
	words map[string]*topicNode[D]
	star  *topicNode[D]
	hash  *topicNode[D]
	dests []D // one entry per binding ending here
}

// nextWord splits the first word off rest. more is false when rest held the
// last word.
func nextWord(rest string) (word, tail string, more bool) {
	if i := strings.IndexByte(rest, '.'); i >= 0 {
		return rest[:i], rest[i+1:], true
	}
	return rest, "", false
}

func (t *topic[D]) Add(b Binding[D]) bool {
	if !t.add(b) {
		return false
	}
	n := t.root
	if b.Key != "" {
		for rest, more := b.Key, true; more; {
			var w string
			w, rest, more = nextWord(rest)
			n = n.child(w)
		}
	}
	n.dests = append(n.dests, b.Dest)
	return true
}

func (n *topicNode[D]) child(w string) *topicNode[D] {
	var p **topicNode[D]
	switch w {
	case "*":
		p = &n.star
	case "#":
		p = &n.hash
	default:
		if c, ok := n.words[w]; ok {
			return c
		}
		if n.words == nil {
			n.words = map[string]*topicNode[D]{}
		}
		c := &topicNode[D]{}
		n.words[w] = c
		return c
	}
	if *p == nil {
		*p = &topicNode[D]{}
	}
	return *p
}

func (n *topicNode[D]) empty() bool {
	return len(n.dests) == 0 && len(n.words) == 0 && n.star == nil && n.hash == nil
}

func (t *topic[D]) Remove(b Binding[D]) bool {
	if !t.remove(b) {
		return false
	}
	var words []string
	if b.Key != "" {
		words = strings.Split(b.Key, ".")
	}
	t.root.remove(words, b.Dest)
	return true
}

// remove deletes one dest entry at the end of the path and prunes empty nodes.
func (n *topicNode[D]) remove(words []string, dest D) {
	if len(words) == 0 {
		if i := slices.Index(n.dests, dest); i >= 0 {
			n.dests = slices.Delete(n.dests, i, i+1)
		}
		return
	}
	w := words[0]
	var c *topicNode[D]
	switch w {
	case "*":
		c = n.star
	case "#":
		c = n.hash
	default:
		c = n.words[w]
	}
	if c == nil {
		return
	}
	c.remove(words[1:], dest)
	if !c.empty() {
		return
	}
	switch w {
	case "*":
		n.star = nil
	case "#":
		n.hash = nil
	default:
		delete(n.words, w)
	}
}

func (t *topic[D]) Match(key string, _ amqp.Table, fn func(D)) {
	st := topicMatch[D]{key: key, fn: fn}
	t.root.match(&st, key, key != "")
}

// topicMatch is the state of one Match. Patterns with several "#" can reach
// the same node at the same word many ways (exponentially many for
// "#.#.#.…"), so below a second "#" each (node, position) is walked once:
// a binding that asks for that is matched in time linear in nodes × words,
// not exponential. Patterns with at most one "#" on a path never allocate.
type topicMatch[D comparable] struct {
	key    string
	fn     func(D)
	hashes int // "#" loops we are inside
	seen   map[topicVisit[D]]struct{}
}

type topicVisit[D comparable] struct {
	n    *topicNode[D]
	pos  int
	more bool
}

// match routes the remaining words (rest, when more is true) from node n.
func (n *topicNode[D]) match(st *topicMatch[D], rest string, more bool) {
	if n.hash != nil {
		// "#" takes zero words, then one more at a time.
		h := n.hash
		r, m := rest, more
		st.hashes++
		for {
			if st.hashes < 2 || st.first(h, len(st.key)-len(r), m) {
				h.match(st, r, m)
			}
			if !m {
				break
			}
			_, r, m = nextWord(r)
		}
		st.hashes--
	}
	if !more {
		for _, d := range n.dests {
			st.fn(d)
		}
		return
	}
	w, tail, m := nextWord(rest)
	if c := n.words[w]; c != nil {
		c.match(st, tail, m)
	}
	if n.star != nil {
		n.star.match(st, tail, m)
	}
}

// first reports whether (n, pos, more) is walked for the first time.
func (st *topicMatch[D]) first(n *topicNode[D], pos int, more bool) bool {
	if st.seen == nil {
		st.seen = map[topicVisit[D]]struct{}{}
	}
	v := topicVisit[D]{n, pos, more}
	if _, ok := st.seen[v]; ok {
		return false
	}
	st.seen[v] = struct{}{}
	return true
}
