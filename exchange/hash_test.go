package exchange

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
)

func TestParseWeightAsPlugin(t *testing.T) {
	// Texts as RabbitMQ 3.10.8's plugin answers queue.bind (406).
	for _, c := range []struct {
		key  string
		want uint64
		err  string
	}{
		{"1", 1, ""}, {"+2", 2, ""}, {"10", 10, ""},
		{"abc", 0, `The binding key must be an integer: <<"abc">>`},
		{"", 0, `The binding key must be an integer: <<>>`},
		{" 2", 0, `The binding key must be an integer: <<" 2">>`},
		{"+", 0, `The binding key must be an integer: <<"+">>`},
		{"0", 0, "The binding key must be greater than 0"},
		{"-1", 0, "The binding key must be greater than 0"},
		{"-99999999999999999999", 0, "The binding key must be greater than 0"},
		{"4294967297", 0, "The binding key must be at most 4294967296"},
	} {
		w, err := ParseWeight(c.key)
		if c.err == "" {
			require.NoError(t, err, c.key)
			require.Equal(t, c.want, w, c.key)
		} else {
			require.EqualError(t, err, c.err, c.key)
		}
	}
}

func TestHashSourceOf(t *testing.T) {
	s, err := HashSourceOf(amqp.Table{"hash-header": "h"})
	require.NoError(t, err)
	require.Equal(t, HashSource{Header: "h"}, s)
	_, err = HashSourceOf(amqp.Table{"hash-header": "h", "hash-property": "message_id"})
	require.EqualError(t, err, "hash-header and hash-property are mutually exclusive")
	_, err = HashSourceOf(amqp.Table{"hash-property": "app_id"})
	require.EqualError(t, err, "Unsupported property: app_id")
	_, err = HashSourceOf(amqp.Table{"hash-header": int32(5)})
	require.Error(t, err)
	for _, p := range []string{"message_id", "correlation_id", "timestamp"} {
		_, err = HashSourceOf(amqp.Table{"hash-property": p})
		require.NoError(t, err, p)
	}
}

// chPick routes key through a consistent-hash matcher; "" when unroutable.
func chPick(m Matcher[string], key string) string {
	d, ok := m.(Picker[string]).Pick(key, nil)
	if !ok {
		return ""
	}
	return d
}

func TestConsistentHashWeightsAndStability(t *testing.T) {
	m, _ := NewMatcher[string](ConsistentHash)
	require.Equal(t, "", chPick(m, "k"), "no bindings: unroutable")
	m.Add(Binding[string]{Dest: "a", Key: "1"})
	m.Add(Binding[string]{Dest: "b", Key: "3"})
	const n = 20000
	count := map[string]int{}
	before := map[string]string{}
	for i := range n {
		k := strconv.Itoa(i)
		d := chPick(m, k)
		require.Equal(t, d, chPick(m, k), "same key, same destination")
		before[k] = d
		count[d]++
	}
	// Weight 1 against 3: a quarter of the keys, within a few percent.
	require.InDelta(t, n/4, count["a"], n*0.03)
	require.InDelta(t, 3*n/4, count["b"], n*0.03)

	// Adding a destination moves only its share, all of it to the new one.
	m.Add(Binding[string]{Dest: "c", Key: "4"})
	moved := 0
	for k, d := range before {
		now := chPick(m, k)
		if now != d {
			require.Equal(t, "c", now, "key %s moved between old destinations", k)
			moved++
		}
	}
	require.InDelta(t, n/2, moved, n*0.03, "c has half the weight")

	// Removing it puts every key back.
	m.Remove(Binding[string]{Dest: "c", Key: "4"})
	for k, d := range before {
		require.Equal(t, d, chPick(m, k))
	}
}

func TestConsistentHashSources(t *testing.T) {
	m, _ := NewMatcher[string](ConsistentHash)
	SetHashSource(m, HashSource{Header: "h"})
	for i := range 8 {
		m.Add(Binding[string]{Dest: strconv.Itoa(i), Key: "10"})
	}
	p := func(h amqp.Table) string {
		d, _ := m.(Picker[string]).Pick("ignored", &amqp.Properties{Headers: h})
		return d
	}
	require.Equal(t, p(amqp.Table{"h": int8(7)}), p(amqp.Table{"h": int64(7)}), "integers by value")
	require.Equal(t, p(amqp.Table{"h": "x"}), p(amqp.Table{"h": []byte("x")}))
	// The routing key does not take part; a missing header is one fixed value.
	seen := map[string]bool{}
	for i := range 200 {
		d, _ := m.(Picker[string]).Pick(strconv.Itoa(i), &amqp.Properties{})
		seen[d] = true
	}
	require.Len(t, seen, 1)
	seen = map[string]bool{}
	for i := range 200 {
		seen[p(amqp.Table{"h": strconv.Itoa(i)})] = true
	}
	require.Len(t, seen, 8, "header values spread")

	SetHashSource(m, HashSource{Property: "timestamp"})
	ts := func(sec int64) string {
		d, _ := m.(Picker[string]).Pick("k", &amqp.Properties{Flags: amqp.FlagTimestamp, Timestamp: time.Unix(sec, 0)})
		return d
	}
	seen = map[string]bool{}
	for i := range 200 {
		require.Equal(t, ts(int64(i)), ts(int64(i)))
		seen[ts(int64(i))] = true
	}
	require.Len(t, seen, 8)
	SetHashSource(m, HashSource{Property: "message_id"})
	id := func(s string) string {
		d, _ := m.(Picker[string]).Pick("k", &amqp.Properties{Flags: amqp.FlagMessageID, MessageID: s})
		return d
	}
	require.Equal(t, id("abc"), id("abc"))
}

func TestModulusAndRandom(t *testing.T) {
	m, _ := NewMatcher[string](ModulusHash)
	require.Equal(t, "", chPick(m, "k"))
	for i := range 4 {
		m.Add(Binding[string]{Dest: strconv.Itoa(i), Key: "any key"})
	}
	seen := map[string]bool{}
	for i := range 400 {
		k := strconv.Itoa(i)
		require.Equal(t, chPick(m, k), chPick(m, k))
		seen[chPick(m, k)] = true
	}
	require.Len(t, seen, 4)

	r, _ := NewMatcher[string](Random)
	require.Equal(t, "", chPick(r, "k"))
	r.Add(Binding[string]{Dest: "a", Key: "x"})
	r.Add(Binding[string]{Dest: "b", Key: "y"})
	count := map[string]int{}
	for range 2000 {
		require.Len(t, route(r, "z", nil), 1, "one destination per message")
		count[chPick(r, "x")]++
	}
	require.InDelta(t, 1000, count["a"], 150)
	require.InDelta(t, 1000, count["b"], 150)
}

// naiveRing is the reference for consistentHash: one slot per bucket, in
// binding order, rebuilt from scratch.
type naiveRing struct {
	dests   []string
	weights []int
}

func (n *naiveRing) pick(key string) string {
	var slots []string
	for i, d := range n.dests {
		for range n.weights[i] {
			slots = append(slots, d)
		}
	}
	if len(slots) == 0 {
		return ""
	}
	return slots[JumpHash(hashString(key), int64(len(slots)))]
}

// FuzzConsistentHash drives adds and removes and checks every pick against
// the naive ring. ops: each byte adds (even) or removes (odd) destination
// byte/2%8 with weight byte%5+1.
func FuzzConsistentHash(f *testing.F) {
	f.Add([]byte{0, 2, 4, 1, 6}, "key")
	f.Add([]byte{8, 10, 9, 12, 3}, "")
	f.Add([]byte{0, 0, 1, 1}, "a.b")
	f.Fuzz(func(t *testing.T, ops []byte, key string) {
		if len(ops) > 32 {
			return
		}
		m, _ := NewMatcher[string](ConsistentHash)
		ref := &naiveRing{}
		for _, op := range ops {
			d, w := fmt.Sprint(op/2%8), int(op%5)+1
			b := Binding[string]{Dest: d, Key: strconv.Itoa(w)}
			if op%2 == 0 {
				if m.Add(b) {
					ref.dests = append(ref.dests, d)
					ref.weights = append(ref.weights, w)
				}
			} else if m.Remove(b) {
				for i := range ref.dests {
					if ref.dests[i] == d && ref.weights[i] == w {
						ref.dests = append(ref.dests[:i], ref.dests[i+1:]...)
						ref.weights = append(ref.weights[:i], ref.weights[i+1:]...)
						break
					}
				}
			}
			for _, k := range []string{key, key + "x", "y" + key} {
				if got, want := chPick(m, k), ref.pick(k); got != want {
					t.Fatalf("ops %v key %q: ranges %q, reference %q", ops, k, got, want)
				}
			}
		}
	})
}

func BenchmarkConsistentHashPick(b *testing.B) {
	m, _ := NewMatcher[string](ConsistentHash)
	for i := range 16 {
		m.Add(Binding[string]{Dest: strconv.Itoa(i), Key: "10"})
	}
	p := m.(Picker[string])
	b.ReportAllocs()
	for b.Loop() {
		p.Pick("order.12345", nil)
	}
}
