package wal

import (
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
)

// replay rebuilds each group's state from its snapshot file and the records
// of the segments, oldest first.
type replay struct {
	groups map[uint64]*replayGroup
	snaps  map[uint64]snapFile
}

type replayGroup struct {
	snap      *pb.Snapshot // from the snapshot file; nil if none
	snapIndex uint64
	received  bool // the snapshot file replaced the log
	sawMarker bool // a marker at or above snapIndex was replayed
	hs        *pb.HardState
	ents      []*pb.Entry // entries above snapIndex, consecutive
}

func newReplay(snaps map[uint64]snapFile) *replay {
	rp := &replay{groups: make(map[uint64]*replayGroup), snaps: snaps}
	for g, sf := range snaps {
		rp.groups[g] = &replayGroup{
			snap:      sf.snap,
			snapIndex: sf.snap.GetMetadata().GetIndex(),
			received:  sf.received,
		}
	}
	return rp
}

func (rp *replay) group(g uint64) *replayGroup {
	rg := rp.groups[g]
	if rg == nil {
		rg = &replayGroup{}
		rp.groups[g] = rg
	}
	return rg
}

func (rp *replay) apply(r Record) error {
	switch r.Kind {
	case KindRemove:
		delete(rp.groups, r.Group)
		return nil
	case KindHardState:
		rp.group(r.Group).hs = r.HardState
		return nil
	case KindSnapshot:
		rg := rp.group(r.Group)
		if r.Index >= rg.snapIndex && rg.snap != nil {
			rg.sawMarker = true
		}
		if r.Replace {
			rg.ents = nil
			return nil
		}
		rg.truncateUpTo(r.Index)
		return nil
	case KindEntries:
		if len(r.Entries) == 0 {
			return nil
		}
		rg := rp.group(r.Group)
		first := r.Entries[0].GetIndex()
		// A write starting at first replaces everything from first on, even
		// when all of it is at or below the snapshot (the log was rewritten).
		rg.truncateFrom(first)
		for _, e := range r.Entries {
			idx := e.GetIndex()
			if idx <= rg.snapIndex {
				continue
			}
			want := rg.snapIndex + 1
			if n := len(rg.ents); n > 0 {
				want = rg.ents[n-1].GetIndex() + 1
			}
			if idx != want {
				return fmt.Errorf("%w: group %d: entry %d follows %d", ErrCorrupt, r.Group, idx, want-1)
			}
			rg.ents = append(rg.ents, e)
		}
		return nil
	}
	return fmt.Errorf("%w: kind %d", ErrCorrupt, r.Kind)
}

// truncateFrom drops entries with index >= first.
func (rg *replayGroup) truncateFrom(first uint64) {
	for len(rg.ents) > 0 && rg.ents[len(rg.ents)-1].GetIndex() >= first {
		rg.ents = rg.ents[:len(rg.ents)-1]
	}
}

// truncateUpTo drops entries with index <= upto.
func (rg *replayGroup) truncateUpTo(upto uint64) {
	i := 0
	for i < len(rg.ents) && rg.ents[i].GetIndex() <= upto {
		i++
	}
	rg.ents = rg.ents[i:]
}

func (rp *replay) finish() (map[uint64]*GroupState, error) {
	out := make(map[uint64]*GroupState, len(rp.groups))
	for g, rg := range rp.groups {
		// A snapshot received from the leader replaced the log. If the crash
		// came after its file was saved but before its marker was durable,
		// every entry recorded so far predates it and is void.
		if rg.received && !rg.sawMarker {
			rg.ents = nil
		}
		if len(rg.ents) > 0 && rg.ents[0].GetIndex() != rg.snapIndex+1 {
			return nil, fmt.Errorf("%w: group %d: log starts at %d after snapshot %d",
				ErrCorrupt, g, rg.ents[0].GetIndex(), rg.snapIndex)
		}
		hs := rg.hs
		if rg.snapIndex > 0 {
			// The commit index is never below the snapshot: raft requires it.
			if hs == nil {
				hs = &pb.HardState{}
			}
			if hs.GetCommit() < rg.snapIndex || hs.GetTerm() < rg.snap.GetMetadata().GetTerm() {
				hs = &pb.HardState{
					Term:   new(max(hs.GetTerm(), rg.snap.GetMetadata().GetTerm())),
					Vote:   new(hs.GetVote()),
					Commit: new(max(hs.GetCommit(), rg.snapIndex)),
				}
			}
		}
		out[g] = &GroupState{Snapshot: rg.snap, HardState: hs, Entries: rg.ents}
	}
	return out, nil
}
