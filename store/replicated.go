package store

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/warren-mq/warren/queue"
)

// The messages of replicated (quorum) queues, as their Raft groups' state
// machines keep them on each member node (see the package doc's key
// table). The group's log is the durable record: these writes ask for no
// sync of their own, and the state machine syncs the store (Flush) only
// when it takes a checkpoint that lets the log be trimmed.

const (
	prefixGroupMessage = 'Q' // group id → at(8) ttl(8) message record
	prefixGroupReturns = 'R' // group id → count(4): how often the message was returned
)

// GroupMessage is one message of a replicated queue's group.
type GroupMessage struct {
	ID uint64
	// At is when the leader took the message (unix ns); TTL its own
	// expiration in ms, -1 for none.
	At, TTL int64
	Returns uint32
	Msg     *queue.Message
}

// view runs fn in a read transaction unless the store is closed (a
// replicated queue's member may be stopped while the broker shuts down).
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.viewMu.RLock()
	defer s.viewMu.RUnlock()
	if s.viewClosed {
		return ErrClosed
	}
	return s.db.View(fn)
}

func groupKey(prefix byte, group, id uint64) []byte {
	k := entryKey(group, id)
	k[0] = prefix
	return k
}

// PutGroupMessage stores message id of group: val is at(8) ttl(8) and the
// message record, kept as it is (not copied; the caller must not change it).
func (s *Store) PutGroupMessage(group, id uint64, val []byte) {
	s.mu.Lock()
	s.waitRoomLocked()
	sync := s.needSync
	s.putLocked(groupKey(prefixGroupMessage, group, id), val)
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
}

// DeleteGroupMessage removes message id of group (and its return count
// when it had one).
func (s *Store) DeleteGroupMessage(group, id uint64, hadReturns bool) {
	s.mu.Lock()
	sync := s.needSync
	s.deleteLocked(groupKey(prefixGroupMessage, group, id))
	if hadReturns {
		s.deleteLocked(groupKey(prefixGroupReturns, group, id))
	}
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
}

// SetGroupReturns records how often message id of group was returned; 0
// forgets it.
func (s *Store) SetGroupReturns(group, id uint64, n uint32) {
	k := groupKey(prefixGroupReturns, group, id)
	s.mu.Lock()
	sync := s.needSync
	if n == 0 {
		s.deleteLocked(k)
	} else {
		s.putLocked(k, binary.BigEndian.AppendUint32(nil, n))
	}
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
}

// WriteOut waits until everything queued so far is written to Badger
// (readable), without asking for a sync.
func (s *Store) WriteOut() {
	done := make(chan struct{})
	s.mu.Lock()
	s.callbacks = append(s.callbacks, func() { close(done) })
	s.mu.Unlock()
	s.kick()
	select {
	case <-done:
	case <-s.done:
	}
}

// decodeGroupValue decodes at(8) ttl(8) record.
func decodeGroupValue(id uint64, v []byte, names *queue.Names) (GroupMessage, error) {
	if len(v) < 16 {
		return GroupMessage{}, errCorrupt
	}
	m, err := decodeMessage(v[16:], names)
	if err != nil {
		return GroupMessage{}, err
	}
	return GroupMessage{ID: id, At: int64(binary.BigEndian.Uint64(v)), TTL: int64(binary.BigEndian.Uint64(v[8:])), Msg: m}, nil
}

// LoadGroupMessages reads group's messages from id from on, in id order:
// up to max of them and, past the first, up to maxBytes as queue.Cost
// counts them.
func (s *Store) LoadGroupMessages(group, from uint64, max int, maxBytes int64) ([]GroupMessage, error) {
	s.WriteOut()
	var out []GroupMessage
	var names queue.Names
	var bytes int64
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(max, 1000), Prefix: idKey(prefixGroupMessage, group)})
		defer it.Close()
		for it.Seek(groupKey(prefixGroupMessage, group, from)); it.Valid() && len(out) < max && (len(out) == 0 || bytes < maxBytes); it.Next() {
			item := it.Item()
			id := binary.BigEndian.Uint64(item.Key()[9:])
			if err := item.Value(func(v []byte) error {
				gm, err := decodeGroupValue(id, v, &names)
				if err != nil {
					return err
				}
				out = append(out, gm)
				bytes += queue.Cost(&queue.Entry{Msg: gm.Msg})
				return nil
			}); err != nil {
				return fmt.Errorf("message %d: %w", id, err)
			}
		}
		if len(out) > 0 {
			rs := loadGroupReturns(txn, group, out[0].ID, out[len(out)-1].ID)
			for i := range out {
				out[i].Returns = rs[out[i].ID]
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading group %d from %s: %w", group, s.dir, err)
	}
	return out, nil
}

// loadGroupReturns reads group's return counts for ids in [from, to].
func loadGroupReturns(txn *badger.Txn, group, from, to uint64) map[uint64]uint32 {
	var m map[uint64]uint32
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: idKey(prefixGroupReturns, group)})
	defer it.Close()
	for it.Seek(groupKey(prefixGroupReturns, group, from)); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) != 17 {
			continue
		}
		id := binary.BigEndian.Uint64(k[9:])
		if id > to {
			break
		}
		it.Item().Value(func(v []byte) error {
			if len(v) == 4 {
				if m == nil {
					m = map[uint64]uint32{}
				}
				m[id] = binary.BigEndian.Uint32(v)
			}
			return nil
		})
	}
	return m
}

// ScanGroup calls fn with the id and body length of each of group's
// messages in id order, without copying or decoding them, and returns the
// return counts: what a state machine needs in memory at a restart.
func (s *Store) ScanGroup(group uint64, fn func(id uint64, bodyLen int64)) (map[uint64]uint32, error) {
	s.WriteOut()
	var returns map[uint64]uint32
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: idKey(prefixGroupMessage, group)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := binary.BigEndian.Uint64(item.Key()[9:])
			if err := item.Value(func(v []byte) error {
				if len(v) < 16 {
					return errCorrupt
				}
				fn(id, recordBodyLen(v[16:]))
				return nil
			}); err != nil {
				return fmt.Errorf("message %d: %w", id, err)
			}
		}
		returns = loadGroupReturns(txn, group, 0, ^uint64(0))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: scanning group %d in %s: %w", group, s.dir, err)
	}
	return returns, nil
}

// GroupValues calls fn with each of group's messages as stored (at(8)
// ttl(8) record; valid only during the call), in id order.
func (s *Store) GroupValues(group uint64, fn func(id uint64, val []byte) error) error {
	s.WriteOut()
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: idKey(prefixGroupMessage, group)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := binary.BigEndian.Uint64(item.Key()[9:])
			if err := item.Value(func(v []byte) error { return fn(id, v) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: reading group %d from %s: %w", group, s.dir, err)
	}
	return nil
}

// DropGroup removes every message and return count of group.
func (s *Store) DropGroup(group uint64) error {
	s.WriteOut()
	var dead [][]byte
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for _, p := range []byte{prefixGroupMessage, prefixGroupReturns} {
			prefix := idKey(p, group)
			for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
				dead = append(dead, it.Item().KeyCopy(nil))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: dropping group %d in %s: %w", group, s.dir, err)
	}
	s.mu.Lock()
	sync := s.needSync
	for _, k := range dead {
		s.deleteLocked(k)
	}
	s.needSync = sync
	s.mu.Unlock()
	s.kick()
	return nil
}

// SweepGroups removes the messages of every group not in live (groups of
// queues deleted while this node was down).
func (s *Store) SweepGroups(live map[uint64]bool) error {
	var dead []uint64
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for _, p := range []byte{prefixGroupMessage, prefixGroupReturns} {
			for it.Seek([]byte{p}); it.ValidForPrefix([]byte{p}); {
				k := it.Item().Key()
				if len(k) < 9 {
					it.Next()
					continue
				}
				g := binary.BigEndian.Uint64(k[1:9])
				if !live[g] && (len(dead) == 0 || dead[len(dead)-1] != g) {
					dead = append(dead, g)
				}
				it.Seek(idKey(p, g+1))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: sweeping groups in %s: %w", s.dir, err)
	}
	for _, g := range dead {
		if err := s.DropGroup(g); err != nil {
			return err
		}
	}
	return nil
}

// GroupSnapshot is a consistent read of one group's messages and return
// counts: what the store held when it was opened, after everything queued
// for writing before was written out, whatever is written after. It pins
// a Badger read transaction (and keeps the store from closing) until
// Close.
type GroupSnapshot struct {
	s     *Store
	txn   *badger.Txn
	group uint64
}

// OpenGroupSnapshot opens a GroupSnapshot of group. Writes queued after it
// returns are not in it.
func (s *Store) OpenGroupSnapshot(group uint64) (*GroupSnapshot, error) {
	s.WriteOut()
	s.viewMu.RLock()
	if s.viewClosed {
		s.viewMu.RUnlock()
		return nil, ErrClosed
	}
	return &GroupSnapshot{s: s, txn: s.db.NewTransaction(false), group: group}, nil
}

// Each calls fn with each message of the snapshot in id order: its id, its
// return count (0 for none) and its value as stored (at(8) ttl(8) record;
// valid only during the call). It stops at fn's first error and returns
// it.
func (gs *GroupSnapshot) Each(fn func(id uint64, returns uint32, val []byte) error) error {
	msgs := gs.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: idKey(prefixGroupMessage, gs.group)})
	defer msgs.Close()
	rets := gs.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: idKey(prefixGroupReturns, gs.group)})
	defer rets.Close()
	rets.Rewind()
	for msgs.Rewind(); msgs.Valid(); msgs.Next() {
		item := msgs.Item()
		k := item.Key()
		if len(k) != 17 {
			continue
		}
		id := binary.BigEndian.Uint64(k[9:])
		var n uint32
		// Both prefixes sort by id: the return count, if any, is where
		// the second iterator stands once past the smaller ids.
		for ; rets.Valid(); rets.Next() {
			rk := rets.Item().Key()
			if len(rk) != 17 {
				continue
			}
			rid := binary.BigEndian.Uint64(rk[9:])
			if rid < id {
				continue
			}
			if rid == id {
				if err := rets.Item().Value(func(v []byte) error {
					if len(v) == 4 {
						n = binary.BigEndian.Uint32(v)
					}
					return nil
				}); err != nil {
					return fmt.Errorf("store: group %d in %s: returns of %d: %w", gs.group, gs.s.dir, id, err)
				}
			}
			break
		}
		if err := item.Value(func(v []byte) error { return fn(id, n, v) }); err != nil {
			return err
		}
	}
	return nil
}

// Close releases the snapshot.
func (gs *GroupSnapshot) Close() {
	if gs.txn != nil {
		gs.txn.Discard()
		gs.txn = nil
		gs.s.viewMu.RUnlock()
	}
}
