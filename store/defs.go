package store

import (
	"encoding/json"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Definition kinds, the byte after 'd' in a definition key.
const (
	KindExchange byte = 'e'
	KindQueue    byte = 'q'
	KindBinding  byte = 'b'
	KindVhost    byte = 'v'
	KindUser     byte = 'u'
	KindPolicy   byte = 'p'
	KindGlobal   byte = 'g' // global parameters
	KindParam    byte = 'r' // vhost runtime parameters of components (shovels)
	KindMeta     byte = 'i' // the cluster metadata log index applied
	KindDedup    byte = 'x' // ids a deduplicating durable exchange remembers
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
