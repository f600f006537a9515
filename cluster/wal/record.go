package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Kind is a WAL record's kind.
type Kind uint8

// Record kinds.
const (
	// KindEntries: consecutive log entries of one group.
	KindEntries Kind = 1
	// KindHardState: a group's HardState (term, vote, commit).
	KindHardState Kind = 2
	// KindSnapshot: a marker that the group's snapshot file now holds
	// Index/Term. With Replace, the snapshot came from the leader and
	// replaced the whole log: entries written before the marker are void.
	KindSnapshot Kind = 3
	// KindRemove: the group left this node; everything before is void.
	KindRemove Kind = 4
)

// recordHeaderSize is length (uint32) + CRC-32C (uint32) of the body.
const recordHeaderSize = 8

// MaxRecordSize bounds a record body. Writers split entries across records
// so only a single entry larger than this could exceed it, and such an entry
// is refused at Append.
const MaxRecordSize = 64 << 20

// ErrCorrupt marks a record that fails its checks: a short or torn write, a
// CRC mismatch or a length out of bounds.
var ErrCorrupt = errors.New("wal: corrupt record")

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Record is one decoded WAL record.
type Record struct {
	Kind      Kind
	Group     uint64
	Entries   []*pb.Entry   // KindEntries
	HardState *pb.HardState // KindHardState
	Index     uint64        // KindSnapshot
	Term      uint64        // KindSnapshot
	Replace   bool          // KindSnapshot
}

// A record on disk:
//
//	length  uint32 LE   body length, 1..MaxRecordSize
//	crc     uint32 LE   CRC-32C (Castagnoli) of the body
//	body:
//	  kind  uint8
//	  group uvarint
//	  KindEntries:   count uvarint, then per entry:
//	                 index uvarint, term uvarint, type uint8, len uvarint, data
//	  KindHardState: term, vote, commit uvarint
//	  KindSnapshot:  index, term uvarint, flags uint8 (1 = replace)
//	  KindRemove:    nothing

// appendRecord appends a record whose body was built by fill.
func appendRecord(dst []byte, kind Kind, group uint64, fill func([]byte) []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, recordHeaderSize)...)
	dst = append(dst, byte(kind))
	dst = binary.AppendUvarint(dst, group)
	if fill != nil {
		dst = fill(dst)
	}
	body := dst[start+recordHeaderSize:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(body, crcTable))
	return dst
}

// AppendEntries appends a KindEntries record.
func AppendEntries(dst []byte, group uint64, ents []*pb.Entry) []byte {
	return appendRecord(dst, KindEntries, group, func(b []byte) []byte {
		b = binary.AppendUvarint(b, uint64(len(ents)))
		for _, e := range ents {
			b = binary.AppendUvarint(b, e.GetIndex())
			b = binary.AppendUvarint(b, e.GetTerm())
			b = append(b, byte(e.GetType()))
			b = binary.AppendUvarint(b, uint64(len(e.GetData())))
			b = append(b, e.GetData()...)
		}
		return b
	})
}

// AppendHardState appends a KindHardState record.
func AppendHardState(dst []byte, group uint64, hs *pb.HardState) []byte {
	return appendRecord(dst, KindHardState, group, func(b []byte) []byte {
		b = binary.AppendUvarint(b, hs.GetTerm())
		b = binary.AppendUvarint(b, hs.GetVote())
		return binary.AppendUvarint(b, hs.GetCommit())
	})
}

// AppendSnapshot appends a KindSnapshot marker.
func AppendSnapshot(dst []byte, group, index, term uint64, replace bool) []byte {
	return appendRecord(dst, KindSnapshot, group, func(b []byte) []byte {
		b = binary.AppendUvarint(b, index)
		b = binary.AppendUvarint(b, term)
		if replace {
			return append(b, 1)
		}
		return append(b, 0)
	})
}

// AppendRemove appends a KindRemove record.
func AppendRemove(dst []byte, group uint64) []byte {
	return appendRecord(dst, KindRemove, group, nil)
}

// AppendRecord re-encodes a decoded record.
func AppendRecord(dst []byte, r Record) []byte {
	switch r.Kind {
	case KindEntries:
		return AppendEntries(dst, r.Group, r.Entries)
	case KindHardState:
		return AppendHardState(dst, r.Group, r.HardState)
	case KindSnapshot:
		return AppendSnapshot(dst, r.Group, r.Index, r.Term, r.Replace)
	default:
		return AppendRemove(dst, r.Group)
	}
}

// DecodeRecord decodes the record at the start of b and returns it with the
// number of bytes it took. Every length is checked against what remains of b
// before anything is allocated. Entry data is copied out of b.
func DecodeRecord(b []byte) (Record, int, error) {
	if len(b) < recordHeaderSize {
		return Record{}, 0, fmt.Errorf("%w: %d bytes left, header needs %d", ErrCorrupt, len(b), recordHeaderSize)
	}
	n := binary.LittleEndian.Uint32(b)
	if n == 0 || n > MaxRecordSize || uint64(n) > uint64(len(b)-recordHeaderSize) {
		return Record{}, 0, fmt.Errorf("%w: body length %d, %d bytes left", ErrCorrupt, n, len(b)-recordHeaderSize)
	}
	body := b[recordHeaderSize : recordHeaderSize+int(n)]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return Record{}, 0, fmt.Errorf("%w: CRC mismatch", ErrCorrupt)
	}
	d := decoder{b: body[1:]}
	r := Record{Kind: Kind(body[0]), Group: d.uvarint()}
	switch r.Kind {
	case KindEntries:
		count := d.uvarint()
		// Each entry takes at least 4 bytes: bound the count before allocating.
		if count > uint64(len(d.b))/4 {
			return Record{}, 0, fmt.Errorf("%w: %d entries in %d bytes", ErrCorrupt, count, len(d.b))
		}
		r.Entries = make([]*pb.Entry, 0, count)
		for range count {
			index, term := d.uvarint(), d.uvarint()
			typ := pb.EntryType(d.byte())
			data := d.bytes()
			if d.err != nil {
				break
			}
			if _, ok := pb.EntryType_name[int32(typ)]; !ok {
				d.err = fmt.Errorf("entry type %d", typ)
				break
			}
			e := &pb.Entry{Index: new(index), Term: new(term), Type: typ.Enum()}
			if len(data) > 0 {
				e.Data = append([]byte(nil), data...)
			}
			r.Entries = append(r.Entries, e)
		}
	case KindHardState:
		term, vote, commit := d.uvarint(), d.uvarint(), d.uvarint()
		r.HardState = &pb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
	case KindSnapshot:
		r.Index, r.Term = d.uvarint(), d.uvarint()
		switch d.byte() {
		case 0:
		case 1:
			r.Replace = true
		default:
			if d.err == nil {
				d.err = errors.New("snapshot flags")
			}
		}
	case KindRemove:
	default:
		return Record{}, 0, fmt.Errorf("%w: kind %d", ErrCorrupt, r.Kind)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return Record{}, 0, fmt.Errorf("%w: kind %d: %w", ErrCorrupt, r.Kind, d.err)
	}
	return r, recordHeaderSize + int(n), nil
}

// decoder reads from a byte slice; the first failure sticks in err.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("short body")

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShort
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
