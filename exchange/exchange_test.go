package exchange

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
)

func route(m Matcher[string], key string, h amqp.Table) []string {
	var out []string
	m.Match(key, h, func(d string) {
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	})
	slices.Sort(out)
	return out
}

// naiveTopic is the reference matcher: a direct recursive reading of the
// rules over split words.
func naiveTopic(pattern, key string) bool {
	var p, k []string
	if pattern != "" {
		p = strings.Split(pattern, ".")
	}
	if key != "" {
		k = strings.Split(key, ".")
	}
	// Memoized on (pattern words left, key words left): several "#" would
	// otherwise make the reference exponential.
	memo := map[[2]int]bool{}
	var match func(p, k []string) bool
	match = func(p, k []string) bool {
		id := [2]int{len(p), len(k)}
		if v, ok := memo[id]; ok {
			return v
		}
		var r bool
		switch {
		case len(p) == 0:
			r = len(k) == 0
		case p[0] == "#":
			for i := 0; i <= len(k) && !r; i++ {
				r = match(p[1:], k[i:])
			}
		case p[0] == "*":
			r = len(k) > 0 && match(p[1:], k[1:])
		default:
			r = len(k) > 0 && p[0] == k[0] && match(p[1:], k[1:])
		}
		memo[id] = r
		return r
	}
	return match(p, k)
}

func TestTopicRules(t *testing.T) {
	for _, c := range []struct {
		pattern, key string
		want         bool
	}{
		{"", "", true}, {"#", "", true}, {"*", "", false}, {"*", "a", true},
		{"a.*.c", "a..c", true}, {"a.#.b", "axb", false}, {"a.#.b", "a.b", true},
		{"a.#.b", "a.x.y.b", true}, {"#.b", "b", true}, {"a.#", "a", true},
		{"A", "a", false}, {"*.*", "a.", true}, {"#.#", "a.b.c", true},
		{"a.*", "a.b.c", false}, {"*.b.#", "x.b", true},
	} {
		m, _ := NewMatcher[string](Topic)
		m.Add(Binding[string]{Dest: "q", Key: c.pattern})
		got := len(route(m, c.key, nil)) == 1
		require.Equal(t, c.want, got, "pattern %q key %q", c.pattern, c.key)
		require.Equal(t, c.want, naiveTopic(c.pattern, c.key), "reference: pattern %q key %q", c.pattern, c.key)
	}
}

func TestTopicRemovePrunes(t *testing.T) {
	m, _ := NewMatcher[string](Topic)
	b := Binding[string]{Dest: "q", Key: "a.*.#"}
	require.True(t, m.Add(b))
	require.False(t, m.Add(b), "same binding twice is one binding")
	require.Equal(t, []string{"q"}, route(m, "a.b", nil))
	require.True(t, m.Remove(b))
	require.False(t, m.Remove(b))
	require.Empty(t, route(m, "a.b", nil))
	require.True(t, m.(*topic[string]).root.empty())
}

// FuzzTopic checks the trie against the naive matcher for one pattern set.
func FuzzTopic(f *testing.F) {
	f.Add("a.*.c|#.b|#", "a.x.c")
	f.Add("*|#.#|a..b", "a..b")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, patterns, key string) {
		m, _ := NewMatcher[string](Topic)
		ps := strings.Split(patterns, "|")
		if len(ps) > 8 || len(key) > 64 {
			return
		}
		for _, p := range ps {
			m.Add(Binding[string]{Dest: p, Key: p})
		}
		got := route(m, key, nil)
		var want []string
		for _, p := range ps {
			if naiveTopic(p, key) && !slices.Contains(want, p) {
				want = append(want, p)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %q key %q: trie %q, reference %q", ps, key, got, want)
		}
		for _, p := range ps {
			m.Remove(Binding[string]{Dest: p, Key: p})
		}
		if !m.(*topic[string]).root.empty() {
			t.Fatalf("trie not empty after removing every binding")
		}
	})
}

func TestDirectAndFanout(t *testing.T) {
	d, _ := NewMatcher[string](Direct)
	d.Add(Binding[string]{Dest: "q1", Key: "k"})
	d.Add(Binding[string]{Dest: "q2", Key: "k"})
	d.Add(Binding[string]{Dest: "q2", Key: "k", Args: amqp.Table{"x": int32(1)}})
	require.Equal(t, []string{"q1", "q2"}, route(d, "k", nil))
	require.Empty(t, route(d, "other", nil))
	require.Equal(t, 3, d.Len())
	d.Remove(Binding[string]{Dest: "q2", Key: "k"})
	require.Equal(t, []string{"q1", "q2"}, route(d, "k", nil), "the binding with arguments remains")

	f, _ := NewMatcher[string](Fanout)
	f.Add(Binding[string]{Dest: "a", Key: "x"})
	f.Add(Binding[string]{Dest: "b"})
	require.Equal(t, []string{"a", "b"}, route(f, "anything", nil))
	_, ok := NewMatcher[string]("x-unknown")
	require.False(t, ok)
}

func TestHeadersRules(t *testing.T) {
	for _, c := range []struct {
		name string
		args amqp.Table
		hdrs amqp.Table
		want bool
	}{
		{"no args matches all", nil, nil, true},
		{"only x-match all matches all", amqp.Table{"x-match": "all"}, amqp.Table{"a": "b"}, true},
		{"only x-match any matches nothing", amqp.Table{"x-match": "any"}, amqp.Table{"a": "b"}, false},
		{"all needs every one", amqp.Table{"a": "1", "b": "2"}, amqp.Table{"a": "1"}, false},
		{"all with both", amqp.Table{"a": "1", "b": "2"}, amqp.Table{"a": "1", "b": "2", "c": "3"}, true},
		{"any with one", amqp.Table{"x-match": "any", "a": "1", "b": "2"}, amqp.Table{"b": "2"}, true},
		{"x- ignored by all", amqp.Table{"x-foo": "1", "a": "1"}, amqp.Table{"a": "1"}, true},
		{"x- matched by all-with-x", amqp.Table{"x-match": "all-with-x", "x-foo": "1"}, amqp.Table{"a": "1"}, false},
		{"x- matched by any-with-x", amqp.Table{"x-match": "any-with-x", "x-foo": "1"}, amqp.Table{"x-foo": "1"}, true},
		{"void matches presence", amqp.Table{"a": nil}, amqp.Table{"a": int32(5)}, true},
		{"void needs presence", amqp.Table{"a": nil}, amqp.Table{}, false},
		{"ints across widths", amqp.Table{"n": int32(5000)}, amqp.Table{"n": int64(5000)}, true},
		{"string never equals number", amqp.Table{"n": "5"}, amqp.Table{"n": int32(5)}, false},
		{"case sensitive", amqp.Table{"a": "X"}, amqp.Table{"a": "x"}, false},
	} {
		m, _ := NewMatcher[string](Headers)
		m.Add(Binding[string]{Dest: "q", Args: c.args})
		require.Equal(t, c.want, len(route(m, "", c.hdrs)) == 1, c.name)
	}
	require.True(t, ValidXMatch("any-with-x"))
	require.False(t, ValidXMatch("some"))
	require.False(t, ValidXMatch(int32(1)))
}

func BenchmarkTopicMatch(b *testing.B) {
	m, _ := NewMatcher[string](Topic)
	for _, p := range []string{"a.*.c", "a.#", "#.c", "x.y.z", "*.*.*", "stock.us.#", "stock.*.nyse"} {
		m.Add(Binding[string]{Dest: p, Key: p})
	}
	n := 0
	fn := func(string) { n++ }
	b.ReportAllocs()
	for b.Loop() {
		m.Match("stock.us.nyse", nil, fn)
	}
}

func BenchmarkDirectMatch(b *testing.B) {
	m, _ := NewMatcher[string](Direct)
	for _, k := range []string{"a", "b", "c", "orders", "payments"} {
		m.Add(Binding[string]{Dest: k, Key: k})
	}
	n := 0
	fn := func(string) { n++ }
	b.ReportAllocs()
	for b.Loop() {
		m.Match("orders", nil, fn)
	}
}

// TestTopicManyHashes: a binding with many "#" and a long key route in
// time linear in the trie and the key (exponential before: 6 "#" and 100
// words took 33 s, holding the vhost's routing lock).
func TestTopicManyHashes(t *testing.T) {
	m, _ := NewMatcher[string](Topic)
	p := strings.Repeat("#.", 30) + "x"
	m.Add(Binding[string]{Dest: "many", Key: p})
	m.Add(Binding[string]{Dest: "star", Key: strings.Repeat("#.*.", 10) + "#"})
	key := strings.Repeat("a.", 500) + "b"
	require.Equal(t, []string{"star"}, route(m, key, nil))
	require.Equal(t, []string{"many", "star"}, route(m, key+".x", nil))
	require.True(t, naiveTopic(p, key+".x"))
	require.False(t, naiveTopic(p, key))
}
