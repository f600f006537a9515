package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A snapshot file, snap/<group as 16 hex digits>.snap, one per group:
//
//	magic    "WSNP" then version 1 (uint8)
//	flags    uint8: 1 = received from the leader (replaced the log)
//	index    uvarint
//	term     uvarint
//	conf     uvarint length, then the ConfState in protobuf
//	data     uvarint length, then the state machine's bytes
//	crc      uint32 LE, CRC-32C of everything before it
//
// It is written to a .tmp file, fsynced, renamed over the old one, and the
// directory fsynced, so a crash leaves the old or the new file, whole.

const snapMagic = "WSNP\x01"

type snapFile struct {
	snap     *pb.Snapshot
	received bool
}

func encodeSnapshot(snap *pb.Snapshot, received bool) ([]byte, error) {
	md := snap.GetMetadata()
	conf, err := proto.Marshal(md.GetConfState())
	if err != nil {
		return nil, fmt.Errorf("wal: marshal conf state: %w", err)
	}
	b := make([]byte, 0, len(snapMagic)+32+len(conf)+len(snap.GetData()))
	b = append(b, snapMagic...)
	if received {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, md.GetIndex())
	b = binary.AppendUvarint(b, md.GetTerm())
	b = binary.AppendUvarint(b, uint64(len(conf)))
	b = append(b, conf...)
	b = binary.AppendUvarint(b, uint64(len(snap.GetData())))
	b = append(b, snap.GetData()...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crcTable)), nil
}

func decodeSnapshot(b []byte) (snapFile, error) {
	if len(b) < len(snapMagic)+1+4 || string(b[:len(snapMagic)]) != snapMagic {
		return snapFile{}, fmt.Errorf("%w: snapshot header", ErrCorrupt)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, crcTable) != sum {
		return snapFile{}, fmt.Errorf("%w: snapshot CRC mismatch", ErrCorrupt)
	}
	d := decoder{b: body[len(snapMagic):]}
	flags := d.byte()
	index, term := d.uvarint(), d.uvarint()
	conf := d.bytes()
	data := d.bytes()
	if d.err != nil || len(d.b) != 0 || flags > 1 {
		return snapFile{}, fmt.Errorf("%w: snapshot body", ErrCorrupt)
	}
	cs := &pb.ConfState{}
	if err := proto.Unmarshal(conf, cs); err != nil {
		return snapFile{}, fmt.Errorf("%w: snapshot conf state: %w", ErrCorrupt, err)
	}
	snap := &pb.Snapshot{
		Data:     append([]byte(nil), data...),
		Metadata: &pb.SnapshotMetadata{Index: new(index), Term: new(term), ConfState: cs},
	}
	return snapFile{snap: snap, received: flags == 1}, nil
}

func (w *WAL) snapPath(group uint64) string {
	return filepath.Join(w.dir, "snap", fmt.Sprintf("%016x.snap", group))
}

// loadSnapshots reads every snap/*.snap file and removes leftover .tmp files.
func (w *WAL) loadSnapshots() (map[uint64]snapFile, error) {
	dir := filepath.Join(w.dir, "snap")
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	out := make(map[uint64]snapFile)
	for _, de := range names {
		name := de.Name()
		if strings.HasSuffix(name, ".tmp") {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("wal: remove unfinished snapshot: %w", err)
			}
			continue
		}
		hex, ok := strings.CutSuffix(name, ".snap")
		if !ok {
			continue
		}
		group, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("wal: %w", err)
		}
		sf, err := decodeSnapshot(b)
		if err != nil {
			return nil, fmt.Errorf("wal: %s: %w", name, err)
		}
		out[group] = sf
	}
	return out, nil
}

// writeFileSync writes path atomically: tmp file, fsync, rename, fsync dir.
func writeFileSync(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
