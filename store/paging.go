package store

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"

	"github.com/warren-mq/warren/queue"
)

// recordBodyLen returns the body length of a message record without
// decoding it.
func recordBodyLen(rec []byte) int64 {
	if len(rec) < 1 || len(rec) < 1+int(rec[0]) {
		return 0
	}
	rec = rec[1+rec[0]:]
	if len(rec) < 1 || len(rec) < 1+int(rec[0]) {
		return 0
	}
	rec = rec[1+rec[0]:]
	if len(rec) < 4 {
		return 0
	}
	n := int64(binary.BigEndian.Uint32(rec))
	return int64(len(rec)-4) - n
}

// decodeEntry turns a stored entry into a queue entry, loading a shared
// record through cache.
func (s *Store) decodeEntry(txn *badger.Txn, seq uint64, v []byte, cache map[uint64]*queue.Message, names *queue.Names) (queue.Entry, error) {
	if len(v) < 9 {
		return queue.Entry{}, errCorrupt
	}
	e := queue.Entry{Seq: seq, ExpiresAt: int64(binary.BigEndian.Uint64(v[1:9])), Journaled: true}
	payload := v[9:]
	switch v[0] {
	case kindInline, kindSpill:
		m, err := decodeMessage(payload, names)
		if err != nil {
			return e, err
		}
		m.StoreInline = v[0] == kindInline
		e.Msg = m
		e.Spilled = v[0] == kindSpill
	case kindRef:
		if len(payload) != 8 {
			return e, errCorrupt
		}
		id := binary.BigEndian.Uint64(payload)
		m := cache[id]
		if m == nil {
			item, err := txn.Get(idKey(prefixMessage, id))
			if err != nil {
				return e, fmt.Errorf("message %d: %w", id, err)
			}
			if err := item.Value(func(rec []byte) error {
				var derr error
				m, derr = decodeMessage(rec, names)
				return derr
			}); err != nil {
				return e, fmt.Errorf("message %d: %w", id, err)
			}
			m.StoreID = id
			if cache != nil {
				cache[id] = m
			}
		}
		e.Msg = m
	default:
		return e, errCorrupt
	}
	return e, nil
}

// LoadQueue reads a queue at startup: the first window entries into memory
// (marked redelivered at or below the delivered watermark) and a summary of
// the rest, which stays on disk. It counts references to shared records and
// deletes spilled transient entries. cache shares message objects of shared
// records across queues.
func (s *Store) LoadQueue(qid uint64, window int, cache map[uint64]*queue.Message) ([]queue.Entry, queue.DiskPart, uint64, error) {
	return s.LoadQueueHead(qid, window, math.MaxInt64, cache)
}

// LoadQueueHead is LoadQueue with the head also bounded by maxBytes as
// queue.Cost counts them (at least one entry is read): a restart reads back only
// what the memory budget holds. The rest is only counted, without copying
// or decoding its values, which is what makes a restart with a deep backlog
// fast; the queue reads it as its consumers reach it.
func (s *Store) LoadQueueHead(qid uint64, window int, maxBytes int64, cache map[uint64]*queue.Message) ([]queue.Entry, queue.DiskPart, uint64, error) {
	var headBytes int64
	var es []queue.Entry
	var disk queue.DiskPart
	var watermark uint64
	var spilled [][]byte
	var names queue.Names
	refs := map[uint64]int32{}
	err := s.db.View(func(txn *badger.Txn) error {
		if item, err := txn.Get(idKey(prefixDelivered, qid)); err == nil {
			item.Value(func(v []byte) error {
				if len(v) == 8 {
					watermark = binary.BigEndian.Uint64(v)
				}
				return nil
			})
		}
		prefix := idKey(prefixEntry, qid)
		// No prefetch: values of small messages sit in the LSM tree next to
		// their keys, so reading the ones needed costs no copy.
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			k := item.Key()
			if len(k) != 17 {
				return fmt.Errorf("bad entry key %x", k)
			}
			seq := binary.BigEndian.Uint64(k[9:])
			err := item.Value(func(v []byte) error {
				if len(v) < 9 {
					return errCorrupt
				}
				switch v[0] {
				case kindSpill:
					spilled = append(spilled, item.KeyCopy(nil))
					return nil
				case kindRef:
					if len(v) == 17 {
						refs[binary.BigEndian.Uint64(v[9:])]++
					}
				}
				if len(es) < window && headBytes < maxBytes && disk.N == 0 {
					e, err := s.decodeEntry(txn, seq, v, cache, &names)
					if err != nil {
						return err
					}
					e.Redelivered = seq <= watermark
					es = append(es, e)
					headBytes += queue.Cost(&e)
					return nil
				}
				if disk.N == 0 {
					disk.From = seq
				}
				disk.N++
				disk.Last = seq
				if v[0] == kindInline {
					disk.Bytes += recordBodyLen(v[9:])
				} else if item, err := txn.Get(idKey(prefixMessage, binary.BigEndian.Uint64(v[9:]))); err == nil {
					item.Value(func(rec []byte) error { disk.Bytes += recordBodyLen(rec); return nil })
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
		}
		if len(es) > 0 {
			rs := loadReturns(txn, qid, es[0].Seq, es[len(es)-1].Seq)
			for i := range es {
				es[i].Returns = rs[es[i].Seq]
				es[i].ReturnsJournaled = es[i].Returns > 0
			}
		}
		return nil
	})
	if err != nil {
		return nil, disk, 0, fmt.Errorf("store: loading queue %d from %s: %w", qid, s.dir, err)
	}
	s.mu.Lock()
	for id, n := range refs {
		s.shared[id] += n
	}
	for _, k := range spilled {
		s.deleteLocked(k)
	}
	s.mu.Unlock()
	return es, disk, watermark, nil
}

// Load implements queue.Journal: the next entries of a paged-out queue.
func (s *Store) Load(qid, from uint64, max int) ([]queue.Entry, error) {
	s.Flush() // entries still in the pending batch must be readable
	var es []queue.Entry
	var names queue.Names
	cache := map[uint64]*queue.Message{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: min(max, 1000), Prefix: idKey(prefixEntry, qid)})
		defer it.Close()
		for it.Seek(entryKey(qid, from)); it.Valid() && len(es) < max; it.Next() {
			item := it.Item()
			seq := binary.BigEndian.Uint64(item.Key()[9:])
			if err := item.Value(func(v []byte) error {
				e, err := s.decodeEntry(txn, seq, v, cache, &names)
				es = append(es, e)
				return err
			}); err != nil {
				return fmt.Errorf("entry %d: %w", seq, err)
			}
		}
		if len(es) > 0 {
			rs := loadReturns(txn, qid, es[0].Seq, es[len(es)-1].Seq)
			for i := range es {
				es[i].Returns = rs[es[i].Seq]
				es[i].ReturnsJournaled = es[i].Returns > 0
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: paging in queue %d from %s: %w", qid, s.dir, err)
	}
	return es, nil
}

// DropFrom implements queue.Journal.
func (s *Store) DropFrom(qid, from uint64) {
	s.Flush()
	type dead struct {
		key []byte
		ref uint64
	}
	var ds []dead
	s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: idKey(prefixEntry, qid)})
		defer it.Close()
		for it.Seek(entryKey(qid, from)); it.Valid(); it.Next() {
			d := dead{key: it.Item().KeyCopy(nil)}
			it.Item().Value(func(v []byte) error {
				if len(v) == 17 && v[0] == kindRef {
					d.ref = binary.BigEndian.Uint64(v[9:])
				}
				return nil
			})
			ds = append(ds, d)
		}
		return nil
	})
	var returns [][]byte
	s.db.View(func(txn *badger.Txn) error {
		for seq := range loadReturns(txn, qid, from, ^uint64(0)) {
			k := entryKey(qid, seq)
			k[0] = prefixReturns
			returns = append(returns, k)
		}
		return nil
	})
	s.mu.Lock()
	for _, d := range ds {
		s.deleteLocked(d.key)
		if d.ref != 0 {
			s.unrefLocked(d.ref)
		}
	}
	for _, k := range returns {
		s.deleteLocked(k)
	}
	s.mu.Unlock()
	s.kick()
}

// Sweep deletes what no live queue refers to: entries and watermarks of
// queues not in live, and message records that no loaded entry counts.
// Call it after LoadQueue for every live queue.
func (s *Store) Sweep(live map[uint64]bool) error {
	var dead [][]byte
	s.mu.Lock()
	shared := make(map[uint64]bool, len(s.shared))
	for id := range s.shared {
		shared[id] = true
	}
	s.mu.Unlock()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for _, p := range []byte{prefixEntry, prefixDelivered, prefixReturns, prefixMessage} {
			for it.Seek([]byte{p}); it.ValidForPrefix([]byte{p}); {
				k := it.Item().Key()
				if len(k) < 9 {
					it.Next()
					continue
				}
				id := binary.BigEndian.Uint64(k[1:9])
				if p != prefixMessage && live[id] {
					// A live queue's keys are all kept: skip its range in
					// one seek instead of visiting each of its entries.
					it.Seek(idKey(p, id+1))
					continue
				}
				if p == prefixMessage && !shared[id] || p != prefixMessage {
					dead = append(dead, it.Item().KeyCopy(nil))
				}
				it.Next()
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
	}
	s.Flush()
	return nil
}
