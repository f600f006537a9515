package multiraft

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// streamSM is a cpSM that also streams its whole state (SnapshotStreamer).
// hook, when set, is called by a source's WriteTo after every value it
// writes, with the bytes written so far.
type streamSM struct {
	cpSM
	opens, streamRestores int
	hook                  func(written int)
}

func (s *streamSM) OpenSnapshot() (SnapshotSource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens++
	return &mapSource{disk: maps.Clone(s.disk), hook: s.hook}, nil
}

// mapSource writes cpSM's whole-state format from a copy of the disk.
type mapSource struct {
	disk   map[uint64]string
	hook   func(int)
	closed bool
}

func (m *mapSource) WriteTo(w io.Writer) (int64, error) {
	var total int64
	n, err := w.Write([]byte("F"))
	total += int64(n)
	for _, i := range slices.Sorted(maps.Keys(m.disk)) {
		if err != nil {
			return total, err
		}
		b := binary.AppendUvarint(nil, i)
		b = binary.AppendUvarint(b, uint64(len(m.disk[i])))
		b = append(b, m.disk[i]...)
		n, err = w.Write(b)
		total += int64(n)
		if m.hook != nil {
			m.hook(int(total))
		}
	}
	return total, err
}

func (m *mapSource) Close() error {
	if m.closed {
		return errors.New("closed twice")
	}
	m.closed = true
	return nil
}

func (s *streamSM) RestoreFrom(r io.Reader) error {
	br := bufio.NewReader(r)
	if c, err := br.ReadByte(); err != nil || c != 'F' {
		return errors.New("bad streamed snapshot")
	}
	disk := map[uint64]string{}
	for {
		i, err := binary.ReadUvarint(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return err
		}
		v := make([]byte, n)
		if _, err := io.ReadFull(br, v); err != nil {
			return err
		}
		disk[i] = string(v)
	}
	s.mu.Lock()
	s.disk = disk
	s.streamRestores++
	s.mu.Unlock()
	return nil
}

// streamCluster is a 3-node cluster running group 1 on streamSMs whose
// "disks" outlive restarts, with snapshots in chunks of 4 KiB and a
// single-frame limit of 32 KiB.
type streamCluster struct {
	*testCluster
	disks map[uint64]map[uint64]string
	sms   map[uint64]*streamSM
}

func newStreamCluster(t *testing.T, perNode func(uint64, *Config)) *streamCluster {
	c := &streamCluster{
		testCluster: newTestClusterPerNode(t, 3, func(cfg *Config) {
			cfg.SnapshotEntries = 16
			cfg.CompactKeep = -1
			cfg.CompactHold = -1 // a stopped follower looks live for a moment
			cfg.SnapshotChunkSize = 4 << 10
			cfg.MaxSnapshotFrame = 32 << 10
			cfg.SnapshotIdleTimeout = time.Second
		}, perNode),
		disks: map[uint64]map[uint64]string{1: {}, 2: {}, 3: {}},
		sms:   map[uint64]*streamSM{},
	}
	for id := uint64(1); id <= 3; id++ {
		c.startSM(id, all3())
	}
	return c
}

func (c *streamCluster) startSM(id uint64, peers []uint64) {
	sm := &streamSM{cpSM: cpSM{disk: c.disks[id]}}
	if _, err := c.nodes[id].h.StartGroup(1, peers, sm); err != nil {
		c.t.Fatal(err)
	}
	c.sms[id] = sm
}

// stop stops node id, keeping its state machine's disk.
func (c *streamCluster) stop(id uint64) {
	c.testCluster.stop(id)
	if sm := c.sms[id]; sm != nil {
		sm.mu.Lock()
		c.disks[id] = sm.disk
		sm.mu.Unlock()
	}
}

// restart stops node id and starts it again on its data.
func (c *streamCluster) restart(id uint64) {
	c.stop(id)
	c.start(id)
	c.startSM(id, nil)
}

// propose proposes n values of size bytes through the leader.
func (c *streamCluster) propose(prefix string, n, size int) {
	c.t.Helper()
	for i := range n {
		v := fmt.Sprintf("%s%d-", prefix, i)
		v += strings.Repeat("x", max(size-len(v), 0))
		if err := c.proposeAnywhere(1, v); err != nil {
			c.t.Fatal(err)
		}
	}
}

// distinct counts node id's distinct values (a proposal retried after a
// lost leadership may have committed twice).
func (c *streamCluster) distinct(id uint64) int {
	seen := map[string]bool{}
	for _, v := range c.sms[id].values() {
		seen[v] = true
	}
	return len(seen)
}

// waitSame waits until the alive nodes hold n distinct values each, the
// same.
func (c *streamCluster) waitSame(n int) {
	c.t.Helper()
	var alive []uint64
	for id := uint64(1); id <= 3; id++ {
		if c.nodes[id].alive {
			alive = append(alive, id)
		}
	}
	waitFor(c.t, 20*time.Second, func() bool {
		for _, id := range alive {
			if c.distinct(id) != n {
				return false
			}
		}
		return slices.Equal(c.sms[alive[0]].values(), c.sms[alive[len(alive)-1]].values()) &&
			slices.Equal(c.sms[alive[0]].values(), c.sms[alive[1]].values())
	}, fmt.Sprintf("%d values, the same, on %v", n, alive))
}

// restoredStreamedOnce fails the test unless node id's state machine was
// restored once, from a streamed snapshot, and never from a single frame.
func (c *streamCluster) restoredStreamedOnce(id uint64) {
	c.t.Helper()
	sm := c.sms[id]
	sm.mu.Lock()
	streamed, whole := sm.streamRestores, sm.full
	sm.mu.Unlock()
	if streamed != 1 || whole != 0 {
		c.t.Fatalf("follower restored %d streamed and %d single-frame states; want 1 and 0", streamed, whole)
	}
}

// spoolFiles lists what node id's spool directory holds.
func (c *streamCluster) spoolFiles(id uint64) []string {
	des, err := os.ReadDir(filepath.Join(c.nodes[id].dir, "spool"))
	if err != nil {
		c.t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

// A follower down while the state grows to far more than one chunk, and
// than a single frame may carry, catches up by a snapshot streamed in
// chunks and spooled to disk; it keeps a checkpoint of its own, and its
// spool directory ends empty.
func TestStreamedSnapshotCatchUp(t *testing.T) {
	c := newStreamCluster(t, nil)
	c.propose("a", 5, 10)
	lead := c.leader(1)
	down := lead%3 + 1
	c.stop(down)
	c.propose("b", 300, 1000) // ~300 KiB: 75 chunks, 10 × the single-frame limit
	if first, _ := c.nodes[lead].h.Group(1).storage.FirstIndex(); first <= 10 {
		t.Fatalf("leader's log still starts at %d", first)
	}
	c.start(down)
	c.startSM(down, nil)
	c.waitSame(305)
	c.restoredStreamedOnce(down)
	// The sender counts its transfer once the follower has answered it.
	var streamedOut uint64
	waitFor(t, 5*time.Second, func() bool {
		streamedOut = 0
		for id := uint64(1); id <= 3; id++ {
			streamedOut += c.nodes[id].h.Stats().StreamedSnapshots
		}
		return streamedOut >= 1
	}, "the transfer counted by its sender")
	if streamedOut != 1 {
		t.Fatalf("leaders streamed %d snapshots", streamedOut)
	}
	if st := c.nodes[down].h.Stats(); st.SpooledSnapshots != 1 {
		t.Fatalf("follower spooled %d snapshots", st.SpooledSnapshots)
	}
	if files := c.spoolFiles(down); len(files) != 0 {
		t.Fatalf("spool left %v", files)
	}
	fg := c.nodes[down].h.Group(1)
	waitFor(t, 5*time.Second, func() bool {
		snap, _ := fg.storage.Snapshot()
		return string(snap.GetData()) == "C"
	}, "follower keeping its checkpoint as its snapshot")

	// The follower goes on with entries, and restarts from its checkpoint.
	c.propose("c", 20, 100)
	c.waitSame(325)
	c.restart(down)
	if got := string(c.sms[down].restored); got != "C" {
		t.Fatalf("restart restored %q", got)
	}
	c.propose("d", 3, 10)
	c.waitSame(328)
}

// holdAt makes the first source to pass at bytes, on any node, stop
// there: reached then gets the sending node, and the source goes on when
// release is closed.
func (c *streamCluster) holdAt(at int) (reached chan uint64, release chan struct{}) {
	reached, release = make(chan uint64, 1), make(chan struct{})
	var once sync.Once
	for id, sm := range c.sms {
		sm.mu.Lock()
		sm.hook = func(written int) {
			if written >= at {
				once.Do(func() {
					reached <- id
					<-release
				})
			}
		}
		sm.mu.Unlock()
	}
	return reached, release
}

// A transfer interrupted midway (the link cut, the follower restarted, the
// leader stopped) leaves no spooled file and no state behind, and a later
// one brings the follower up to date.
func TestStreamedSnapshotInterrupted(t *testing.T) {
	for _, how := range []string{"link", "follower", "leader"} {
		t.Run(how, func(t *testing.T) {
			c := newStreamCluster(t, nil)
			c.propose("a", 5, 10)
			down := c.leader(1)%3 + 1
			c.stop(down)
			c.propose("b", 200, 1000)
			reached, release := c.holdAt(100 << 10)
			c.start(down)
			c.startSM(down, nil)
			var lead uint64
			select {
			case lead = <-reached:
			case <-time.After(20 * time.Second):
				t.Fatal("no snapshot transfer started")
			}
			waitFor(t, 5*time.Second, func() bool { return len(c.spoolFiles(down)) == 1 }, "a partial snapshot spooled")
			switch how {
			case "link":
				c.isolate(down, true)
				close(release)
				time.Sleep(100 * time.Millisecond)
				c.isolate(down, false)
			case "follower":
				c.stop(down) // its transfer is dropped with its file
				close(release)
				c.start(down)
				c.startSM(down, nil)
				if files := c.spoolFiles(down); len(files) != 0 {
					t.Fatalf("restarted follower's spool holds %v", files)
				}
			case "leader":
				stopped := make(chan struct{})
				go func() {
					c.stop(lead) // waits for the transfer, held in its source
					close(stopped)
				}()
				time.Sleep(100 * time.Millisecond)
				close(release)
				<-stopped
				// The follower drops the transfer its sender abandoned
				// (and the new leader sends one of its own).
			}
			c.waitSame(205)
			waitFor(t, 5*time.Second, func() bool { return len(c.spoolFiles(down)) == 0 }, "spool emptied")
			c.restoredStreamedOnce(down)
			opens := 0
			for id := uint64(1); id <= 3; id++ {
				c.sms[id].mu.Lock()
				opens += c.sms[id].opens
				c.sms[id].mu.Unlock()
			}
			if opens < 2 {
				t.Fatalf("%d transfers for an interrupted one and its retry", opens)
			}
			if how == "leader" {
				c.start(lead)
				c.startSM(lead, nil)
				c.propose("c", 2, 10)
				c.waitSame(207)
			}
		})
	}
}

// A node that takes no chunked snapshots (an earlier version) gets the
// whole state in one frame when it fits, and cannot catch up by snapshot
// when it does not; upgraded, it gets chunks.
func TestStreamedSnapshotOldPeer(t *testing.T) {
	const old = 3
	upgraded := false
	c := newStreamCluster(t, func(id uint64, cfg *Config) {
		cfg.DisableChunkedSnapshots = id == old && !upgraded
	})
	c.propose("a", 5, 10)
	lead := c.leader(1)
	if lead == old {
		c.nodes[lead].h.Group(1).TransferLeadership(1)
		waitFor(t, 10*time.Second, func() bool { return c.leader(1) != old }, "leadership moved off the old node")
		lead = c.leader(1)
	}
	c.stop(old)
	c.propose("b", 20, 1000) // 20 KiB: fits in a frame
	c.start(old)
	c.startSM(old, nil)
	c.waitSame(25)
	c.sms[old].mu.Lock()
	streamed, whole := c.sms[old].streamRestores, c.sms[old].full
	c.sms[old].mu.Unlock()
	if streamed != 0 || whole != 1 {
		t.Fatalf("old node restored %d streamed and %d single-frame states; want 0 and 1", streamed, whole)
	}
	for id := uint64(1); id <= 3; id++ {
		if st := c.nodes[id].h.Stats(); st.StreamedSnapshots != 0 {
			t.Fatalf("node %d streamed %d snapshots", id, st.StreamedSnapshots)
		}
	}

	// Once the state is above what a frame may carry, the old node stays
	// behind; upgraded, it catches up.
	c.stop(old)
	c.propose("c", 60, 1000)
	c.start(old)
	c.startSM(old, nil)
	time.Sleep(time.Second)
	if n := c.distinct(old); n != 25 {
		t.Fatalf("old node holds %d values", n)
	}
	upgraded = true
	c.restart(old)
	c.waitSame(85)
	c.sms[old].mu.Lock()
	streamed = c.sms[old].streamRestores
	c.sms[old].mu.Unlock()
	if st := c.nodes[old].h.Stats(); st.SpooledSnapshots != 1 || streamed != 1 {
		t.Fatalf("upgraded node spooled %d snapshots and restored %d", st.SpooledSnapshots, streamed)
	}
}

func FuzzDecodeSnapFrame(f *testing.F) {
	msg := &pb.Message{Type: pb.MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(3)),
		Snapshot: &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(uint64(9)), Term: new(uint64(3)),
			ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}}
	for _, fr := range []snapFrame{
		{xfer: 7, group: 1, seq: 0},
		{xfer: 1 << 60, group: 300, seq: 5, last: true, size: 12345, crc: 0xdeadbeef, msg: msg},
	} {
		b, err := appendSnapChunkHeader(nil, &fr)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(append(b, "data"...))
	}
	f.Add(binary.AppendUvarint([]byte{snapOpAnnounce}, 1<<40))
	f.Add(binary.BigEndian.AppendUint64([]byte{snapOpAbort}, 42))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := decodeSnapFrame(b)
		if err != nil || fr.op != snapOpChunk {
			return
		}
		enc, err := appendSnapChunkHeader(nil, &fr)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeSnapFrame(append(enc, fr.data...))
		if err != nil {
			t.Fatalf("re-encoded frame: %v", err)
		}
		if again.xfer != fr.xfer || again.group != fr.group || again.seq != fr.seq || again.last != fr.last ||
			again.size != fr.size || again.crc != fr.crc || !bytes.Equal(again.data, fr.data) {
			t.Fatalf("round trip: %+v, then %+v", fr, again)
		}
	})
}
