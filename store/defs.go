package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/warren-mq/warren/queue"
)

// Definition kinds, the byte after 'd' in a definition key.
const (
	KindExchange byte = 'e'
	KindQueue    byte = 'q'
	KindBinding  byte = 'b'
	KindVhost    byte = 'v'
	KindUser     byte = 'u'
)

func defKey(kind byte, name string) []byte {
	k := make([]byte, 0, 2+len(name))
	return append(append(k, prefixDef, kind), name...)
}

// PutDef adds a definition write to the pending batch. Call Flush before
// answering the client so that the change is on disk before its -ok.
func (s *Store) PutDef(kind byte, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encoding %c %q: %w", kind, name, err)
	}
	s.mu.Lock()
	s.putLocked(defKey(kind, name), b)
	s.mu.Unlock()
	s.kick()
	return nil
}

// DeleteDef adds a definition removal to the pending batch.
func (s *Store) DeleteDef(kind byte, name string) {
	s.mu.Lock()
	s.deleteLocked(defKey(kind, name))
	s.mu.Unlock()
	s.kick()
}

// Defs calls fn with each stored definition of a kind, in key order.
func (s *Store) Defs(kind byte, fn func(name string, raw []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{prefixDef, kind}
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[2:])
			if err := item.Value(func(v []byte) error { return fn(name, v) }); err != nil {
				return fmt.Errorf("store: definition %c %q in %s: %w", kind, name, s.dir, err)
			}
		}
		return nil
	})
}

// LoadQueue reads a durable queue's entries in seq order. Messages shared
// by several queues are loaded once through msgs (by store id), which the
// caller keeps across queues and hands to Sweep afterwards.
func (s *Store) LoadQueue(qid uint64, msgs map[uint64]*queue.Message) ([]queue.Entry, error) {
	var es []queue.Entry
	err := s.db.View(func(txn *badger.Txn) error {
		var watermark uint64
		if item, err := txn.Get(idKey(prefixDelivered, qid)); err == nil {
			item.Value(func(v []byte) error {
				if len(v) == 8 {
					watermark = binary.BigEndian.Uint64(v)
				}
				return nil
			})
		}
		prefix := idKey(prefixEntry, qid)
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 1000, Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 17 {
				return fmt.Errorf("store: bad entry key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[9:])
			var id uint64
			var inline *queue.Message
			if err := item.Value(func(v []byte) error {
				switch {
				case len(v) == 8:
					id = binary.BigEndian.Uint64(v)
					return nil
				case len(v) > 1 && v[0] == inlineMarker:
					var err error
					inline, err = decodeMessage(v[1:])
					return err
				}
				return errCorrupt
			}); err != nil {
				return fmt.Errorf("entry %d of queue %d: %w", seq, qid, err)
			}
			if inline != nil {
				inline.StoreInline, inline.StoreRefs = true, 1
				es = append(es, queue.Entry{Msg: inline, Seq: seq, Redelivered: seq <= watermark, Journaled: true})
				continue
			}
			m := msgs[id]
			if m == nil {
				mi, err := txn.Get(idKey(prefixMessage, id))
				if err == badger.ErrKeyNotFound {
					s.log.Sugar().Warnf("queue %d entry %d refers to missing message %d; dropped", qid, seq, id)
					continue
				}
				if err != nil {
					return err
				}
				if err := mi.Value(func(v []byte) error {
					var derr error
					m, derr = decodeMessage(v)
					return derr
				}); err != nil {
					return fmt.Errorf("message %d: %w", id, err)
				}
				m.StoreID = id
				msgs[id] = m
			}
			m.StoreRefs++
			es = append(es, queue.Entry{Msg: m, Seq: seq, Redelivered: seq <= watermark, Journaled: true})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: loading queue %d from %s: %w", qid, s.dir, err)
	}
	return es, nil
}

// Sweep deletes what no live queue refers to: entries and watermarks of
// queues not in live, and message records not in msgs.
func (s *Store) Sweep(live map[uint64]bool, msgs map[uint64]*queue.Message) error {
	var dead [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for _, p := range []byte{prefixEntry, prefixDelivered, prefixMessage} {
			for it.Seek([]byte{p}); it.ValidForPrefix([]byte{p}); it.Next() {
				k := it.Item().Key()
				if len(k) < 9 {
					continue
				}
				id := binary.BigEndian.Uint64(k[1:9])
				if p == prefixMessage && msgs[id] == nil || p != prefixMessage && !live[id] {
					dead = append(dead, it.Item().KeyCopy(nil))
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: sweeping %s: %w", s.dir, err)
	}
	if len(dead) > 0 {
		s.log.Sugar().Infof("removing %d unreferenced records", len(dead))
		s.mu.Lock()
		for _, k := range dead {
			s.deleteLocked(k)
		}
		s.mu.Unlock()
		s.Flush()
	}
	return nil
}

// DeleteQueue removes a durable queue's watermark; its entries leave
// through Remove as the queue empties, and any left behind by unacked
// deliveries are swept at the next start.
func (s *Store) DeleteQueue(qid uint64) {
	s.mu.Lock()
	s.deleteLocked(idKey(prefixDelivered, qid))
	delete(s.delivered, qid)
	s.mu.Unlock()
	s.kick()
}
