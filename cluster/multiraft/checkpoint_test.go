package multiraft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"
)

// cpSM is a Checkpointer: its state (the applied payloads by index) lives
// in a "disk" that outlives the host, written as entries apply.
type cpSM struct {
	mu       sync.Mutex
	disk     map[uint64]string
	full     int // whole states restored
	restored []byte
}

func (s *cpSM) Apply(ents []Entry) []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range ents {
		s.disk[e.Index] = string(e.Data) // the same again when applied twice
	}
	return make([]Result, len(ents))
}

func (s *cpSM) Snapshot() ([]byte, error) { return []byte("C"), nil }

func (s *cpSM) SnapshotData() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := []byte("F")
	for _, i := range slices.Sorted(maps.Keys(s.disk)) {
		b = binary.AppendUvarint(b, i)
		b = binary.AppendUvarint(b, uint64(len(s.disk[i])))
		b = append(b, s.disk[i]...)
	}
	return b, nil
}

func (s *cpSM) Restore(b []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.restored = slices.Clone(b)
	if string(b) == "C" {
		return nil
	}
	if len(b) == 0 || b[0] != 'F' {
		return errors.New("bad snapshot")
	}
	disk := map[uint64]string{}
	for b = b[1:]; len(b) > 0; {
		i, k := binary.Uvarint(b)
		n, k2 := binary.Uvarint(b[k:])
		if k <= 0 || k2 <= 0 || n > uint64(len(b)-k-k2) {
			return errors.New("bad snapshot")
		}
		disk[i] = string(b[k+k2 : k+k2+int(n)])
		b = b[k+k2+int(n):]
	}
	s.disk = disk
	s.full++
	return nil
}

func (s *cpSM) values() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, i := range slices.Sorted(maps.Keys(s.disk)) {
		if s.disk[i] != "" {
			out = append(out, s.disk[i])
		}
	}
	return out
}

// A Checkpointer's snapshots hold only its checkpoint, in memory and on
// disk; a follower that fell behind the leader's log gets the whole state
// made when it is sent, keeps a checkpoint of its own, and restarts from
// that.
func TestCheckpointerFollowerGetsStateOnDemand(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotEntries = 16
		cfg.CompactKeep = -1
		cfg.CompactHold = -1 // the stopped follower looks live for a moment
		cfg.SegmentSize = 2 << 10
	})
	disks := map[uint64]map[uint64]string{1: {}, 2: {}, 3: {}}
	sms := map[uint64]*cpSM{}
	start := func(id uint64, peers []uint64) {
		sm := &cpSM{disk: disks[id]}
		if _, err := c.nodes[id].h.StartGroup(1, peers, sm); err != nil {
			t.Fatal(err)
		}
		sms[id] = sm
	}
	for id := uint64(1); id <= 3; id++ {
		start(id, all3())
	}
	propose := func(prefix string, n int) {
		for i := range n {
			if err := c.proposeAnywhere(1, fmt.Sprintf("%s%d", prefix, i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSame := func(n int) {
		t.Helper()
		waitFor(t, 15*time.Second, func() bool {
			for id := uint64(1); id <= 3; id++ {
				sm := sms[id]
				sm.mu.Lock()
				disks[id] = sm.disk
				sm.mu.Unlock()
				if len(sm.values()) != n {
					return false
				}
			}
			return true
		}, fmt.Sprintf("%d values everywhere", n))
		for id := uint64(2); id <= 3; id++ {
			if !slices.Equal(sms[1].values(), sms[id].values()) {
				t.Fatalf("node %d differs", id)
			}
		}
	}
	propose("a", 5)
	lead := c.leader(1)
	down := lead%3 + 1
	c.stop(down)
	propose("b", 60)
	lg := c.nodes[lead].h.Group(1)
	if first, _ := lg.storage.FirstIndex(); first <= 10 {
		t.Fatalf("leader's log still starts at %d", first)
	}
	if snap, _ := lg.storage.Snapshot(); string(snap.GetData()) != "C" {
		t.Fatalf("leader keeps %q as its snapshot", snap.GetData())
	}
	c.start(down)
	start(down, nil)
	waitSame(65)
	if sms[down].full != 1 {
		t.Fatalf("follower restored %d whole states", sms[down].full)
	}
	fg := c.nodes[down].h.Group(1)
	waitFor(t, 5*time.Second, func() bool { return fg.Applied() >= 65 }, "follower's snapshot stored")
	if snap, _ := fg.storage.Snapshot(); string(snap.GetData()) != "C" {
		t.Fatalf("follower keeps %d bytes as its snapshot", len(snap.GetData()))
	}

	// Restarted, the follower restores its checkpoint, not the whole state.
	c.stop(down)
	c.start(down)
	start(down, nil)
	if got := string(sms[down].restored); got != "C" {
		t.Fatalf("restart restored %q", got)
	}
	propose("c", 3)
	waitSame(68)
}
