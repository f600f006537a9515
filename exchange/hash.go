package exchange

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"

	"github.com/warren-mq/warren/amqp"
)

// Kinds that route each message to one destination at most.
const (
	// ConsistentHash is the rabbitmq_consistent_hash_exchange plugin's type:
	// the binding key is a weight, and a hash of the routing key (or of the
	// header or property the exchange's arguments name) picks a destination
	// by jump consistent hashing over the weighted buckets.
	ConsistentHash = "x-consistent-hash"
	// ModulusHash is RabbitMQ 4.3's built-in type: hash(routing key) mod
	// the number of bindings; binding keys are ignored.
	ModulusHash = "x-modulus-hash"
	// Random is the rabbitmq_random_exchange plugin's type: one bound
	// destination at random; routing and binding keys are ignored.
	Random = "x-random"
)

// Picker is a matcher that routes a message to at most one destination.
// Pick looks at the routing key, the headers and, for a consistent-hash
// exchange hashing on a property, at props (nil is read as no properties).
// The server calls Pick once per message with the message's own routing key,
// as the plugins route on the first routing key only (CC keys add no copy).
type Picker[D comparable] interface {
	Matcher[D]
	Pick(key string, props *amqp.Properties) (D, bool)
}

// HashSource says what a consistent-hash exchange hashes: the routing key
// when both are empty, else the named header or property.
type HashSource struct {
	Header   string
	Property string
}

// HashSourceOf reads and validates the hash-header and hash-property
// arguments with the plugin's rules and texts (its validate/1): the two are
// mutually exclusive and the property is correlation_id, message_id or
// timestamp. The plugin crashes (541) on a non-string value; Warren refuses
// it with 406 like the other argument errors.
func HashSourceOf(args amqp.Table) (HashSource, error) {
	var s HashSource
	h, hasH := args["hash-header"]
	p, hasP := args["hash-property"]
	if hasH {
		v, ok := h.(string)
		if !ok {
			return s, fmt.Errorf("hash-header must be a string")
		}
		s.Header = v
	}
	if hasP {
		v, ok := p.(string)
		if !ok {
			return s, fmt.Errorf("hash-property must be a string")
		}
		s.Property = v
	}
	if hasH && hasP {
		return s, fmt.Errorf("hash-header and hash-property are mutually exclusive")
	}
	if hasP {
		switch s.Property {
		case "correlation_id", "message_id", "timestamp":
		default:
			return s, fmt.Errorf("Unsupported property: %s", s.Property)
		}
	}
	return s, nil
}

// maxWeight bounds one binding's weight. Buckets cost nothing here (a
// binding holds a range, not one entry per bucket), but the bound keeps the
// sum of weights far from overflow. RabbitMQ 3.13.15 and 4.0.20 bounded it too
// (before, a huge weight allocated a list of that many integers).
const maxWeight = 1 << 32

// ParseWeight validates a consistent-hash binding key with the plugin's
// texts (validate_binding/2: Erlang's list_to_integer, so an optional sign
// and digits; then at least 1).
func ParseWeight(key string) (uint64, error) {
	digits := key
	if len(digits) > 0 && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	ok := digits != ""
	for i := 0; i < len(digits) && ok; i++ {
		ok = digits[i] >= '0' && digits[i] <= '9'
	}
	if !ok {
		if key == "" {
			return 0, fmt.Errorf("The binding key must be an integer: <<>>")
		}
		return 0, fmt.Errorf("The binding key must be an integer: <<%q>>", key)
	}
	n, err := strconv.ParseInt(key, 10, 64)
	if err != nil && key[0] == '-' || err == nil && n < 1 {
		return 0, fmt.Errorf("The binding key must be greater than 0")
	}
	if err != nil || n > maxWeight {
		return 0, fmt.Errorf("The binding key must be at most %d", maxWeight)
	}
	return uint64(n), nil
}

// SetHashSource configures what m hashes when m is a consistent-hash
// matcher; other matchers ignore it.
func SetHashSource[D comparable](m Matcher[D], s HashSource) {
	if c, ok := m.(*consistentHash[D]); ok {
		c.src = s
	}
}

// consistentHash keeps its bindings in the order they were added, each
// owning a run of buckets as long as its weight: bucket numbers [ends[i-1],
// ends[i]) belong to list[i]. A new binding's buckets go at the end, so jump
// consistent hashing moves to it only its share of the keys and nothing
// between the others. Removing a binding shifts the later buckets down, as
// the plugin's remove_binding does.
type consistentHash[D comparable] struct {
	bindingSet[D]
	ends []uint64 // cumulative weights, parallel to list
	src  HashSource
}

func (c *consistentHash[D]) Add(b Binding[D]) bool {
	if !c.add(b) {
		return false
	}
	w, err := ParseWeight(b.Key)
	if err != nil {
		w = 0 // refused at bind time; a binding restored from elsewhere gets no buckets
	}
	var last uint64
	if n := len(c.ends); n > 0 {
		last = c.ends[n-1]
	}
	c.ends = append(c.ends, last+w)
	return true
}

func (c *consistentHash[D]) Remove(b Binding[D]) bool {
	i, ok := c.ids[idOf(b)]
	if !ok || !c.remove(b) {
		return false
	}
	var prev uint64
	if i > 0 {
		prev = c.ends[i-1]
	}
	w := c.ends[i] - prev
	c.ends = slices.Delete(c.ends, i, i+1)
	for j := i; j < len(c.ends); j++ {
		c.ends[j] -= w
	}
	return true
}

func (c *consistentHash[D]) Match(key string, h amqp.Table, fn func(D)) {
	if d, ok := c.pick(key, h, nil); ok {
		fn(d)
	}
}

func (c *consistentHash[D]) Pick(key string, p *amqp.Properties) (D, bool) {
	var h amqp.Table
	if p != nil {
		h = p.Headers
	}
	return c.pick(key, h, p)
}

func (c *consistentHash[D]) pick(key string, h amqp.Table, p *amqp.Properties) (D, bool) {
	var zero D
	n := len(c.ends)
	if n == 0 || c.ends[n-1] == 0 {
		return zero, false
	}
	var k uint64
	switch {
	case c.src.Header != "":
		v, ok := h[c.src.Header]
		k = hashValue(v, ok)
	case c.src.Property != "":
		k = hashProperty(p, c.src.Property)
	default:
		k = hashString(key)
	}
	b := uint64(JumpHash(k, int64(c.ends[n-1])))
	i := sort.Search(n, func(i int) bool { return c.ends[i] > b })
	return c.list[i].Dest, true
}

// JumpHash maps key to a bucket in [0, n): Lamping and Veach, "A Fast,
// Minimal Memory, Consistent Hash Algorithm" (2014), the algorithm the
// plugin uses since 3.7.8. Growing n to n+1 moves only 1/(n+1) of the keys,
// all of them into the new bucket.
func JumpHash(key uint64, n int64) int64 {
	var b, j int64 = -1, 0
	for j < n {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return b
}

// Hash inputs: FNV-1a with a type tag, then a 64-bit finalizer so that
// short, similar keys spread over the jump hash's input. Stable across
// restarts and machines (no per-process seed), so a key keeps its queue.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

func hashString(s string) uint64 { return mix(fnvString(fnvOffset^'s', s)) }

// hashValue hashes a header value: strings and byte arrays by content,
// integers by value whatever their width; a missing header hashes to one
// fixed value, so such messages all go to one destination (the plugin
// hashes Erlang's undefined: observed on 3.10.8, 40 messages without the
// header all reached one of four queues).
func hashValue(v any, present bool) uint64 {
	if !present {
		return mix(fnvOffset ^ 'u')
	}
	switch v := v.(type) {
	case string:
		return hashString(v)
	case []byte:
		return mix(fnvString(fnvOffset^'s', string(v)))
	}
	if n, ok := amqp.Int(v); ok {
		return mix(uint64(n) ^ 'i'<<56)
	}
	return mix(fnvString(fnvOffset^'o', CanonicalArgs(amqp.Table{"": v})))
}

// hashProperty hashes message_id, correlation_id or the timestamp (which
// the plugin hashes as its decimal text); an absent property hashes like a
// missing header.
func hashProperty(p *amqp.Properties, name string) uint64 {
	if p == nil {
		return hashValue(nil, false)
	}
	switch name {
	case "message_id":
		if p.Flags&amqp.FlagMessageID != 0 {
			return hashString(p.MessageID)
		}
	case "correlation_id":
		if p.Flags&amqp.FlagCorrelationID != 0 {
			return hashString(p.CorrelationID)
		}
	case "timestamp":
		if p.Flags&amqp.FlagTimestamp != 0 {
			var buf [24]byte
			return hashString(string(strconv.AppendInt(buf[:0], p.Timestamp.Unix(), 10)))
		}
	}
	return hashValue(nil, false)
}

// modulusHash picks list[hash(routing key) mod len(list)]: stable while the
// bindings stay the same, but adding one moves most keys (unlike
// x-consistent-hash).
type modulusHash[D comparable] struct{ bindingSet[D] }

func (m *modulusHash[D]) Add(b Binding[D]) bool    { return m.add(b) }
func (m *modulusHash[D]) Remove(b Binding[D]) bool { return m.remove(b) }
func (m *modulusHash[D]) Match(key string, _ amqp.Table, fn func(D)) {
	if d, ok := m.Pick(key, nil); ok {
		fn(d)
	}
}

func (m *modulusHash[D]) Pick(key string, _ *amqp.Properties) (D, bool) {
	var zero D
	if len(m.list) == 0 {
		return zero, false
	}
	return m.list[hashString(key)%uint64(len(m.list))].Dest, true
}

// random picks any binding's destination with equal chance, as the
// plugin's route/2 does (rand:uniform over the bindings, whatever their
// keys; no binding: unroutable, observed on 3.10.8 as a 312 return).
type random[D comparable] struct{ bindingSet[D] }

func (r *random[D]) Add(b Binding[D]) bool    { return r.add(b) }
func (r *random[D]) Remove(b Binding[D]) bool { return r.remove(b) }
func (r *random[D]) Match(key string, _ amqp.Table, fn func(D)) {
	if d, ok := r.Pick(key, nil); ok {
		fn(d)
	}
}

func (r *random[D]) Pick(string, *amqp.Properties) (D, bool) {
	var zero D
	if len(r.list) == 0 {
		return zero, false
	}
	// math/rand/v2's top-level functions are safe for concurrent use and
	// allocation-free; routing holds only a read lock.
	return r.list[rand.IntN(len(r.list))].Dest, true
}
