package queue

// Names interns exchange names and routing keys, so that the messages of a
// deep queue share one copy of each instead of one per message. It is not
// safe for concurrent use: each publishing connection, and each batch the
// store reads back, has its own. It holds at most maxNames strings and
// starts afresh when full, so a stream of distinct keys costs no more than
// it did without it.
type Names struct {
	m map[string]string
}

const maxNames = 4096

// Intern returns a string equal to s, shared with earlier calls.
func (n *Names) Intern(s string) string {
	if s == "" {
		return ""
	}
	if v, ok := n.m[s]; ok {
		return v
	}
	n.add(s)
	return s
}

// InternBytes is Intern for a byte slice; it allocates only for a string
// it has not seen.
func (n *Names) InternBytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if v, ok := n.m[string(b)]; ok { // no allocation: the compiler converts in place
		return v
	}
	s := string(b)
	n.add(s)
	return s
}

func (n *Names) add(s string) {
	if n.m == nil || len(n.m) >= maxNames {
		n.m = make(map[string]string, 64)
	}
	n.m[s] = s
}
