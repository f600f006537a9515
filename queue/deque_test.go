package queue

import (
	"math/rand"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDequeAgainstSortedSlice drives the deque with random pushes, pops and
// requeues of popped entries, and checks it always pops the lowest Seq.
func TestDequeAgainstSortedSlice(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var d deque
	var ref []uint64 // Seqs present
	var out []Entry  // popped, may be requeued
	seq := uint64(0)
	for step := 0; step < 20000; step++ {
		switch r := rng.Intn(10); {
		case r < 5:
			seq++
			d.push(Entry{Seq: seq})
			ref = append(ref, seq)
		case r < 8 && d.len() > 0:
			e := d.pop()
			slices.Sort(ref)
			require.Equal(t, ref[0], e.Seq, "step %d", step)
			ref = ref[1:]
			out = append(out, e)
		case len(out) > 0:
			i := rng.Intn(len(out))
			e := out[i]
			out = slices.Delete(out, i, i+1)
			d.insert(e)
			ref = append(ref, e.Seq)
		}
		require.Equal(t, len(ref), d.len())
		require.Equal(t, int64(len(ref)), d.lenHint.Load())
	}
	n := 0
	d.each(func(*Entry) { n++ })
	require.Equal(t, d.len(), n)
	require.Equal(t, n, d.clear())
	require.Equal(t, 0, d.len())
}
