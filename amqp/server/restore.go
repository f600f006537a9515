package server

import (
	"runtime"
	"sync"

	"github.com/warren-mq/warren/queue"
	"github.com/warren-mq/warren/store"
)

// queueLoad is what a restart reads back of one durable queue.
type queueLoad struct {
	es        []queue.Entry
	disk      queue.DiskPart
	watermark uint64
}

// loadHeads reads the heads of the queues of records (and counts the rest
// of each) on every core at once: a restart with a deep backlog spends its
// time iterating the store's keys, and the queues are independent. Each
// worker shares message objects of records fanned out to several of its
// queues through its own cache.
func loadHeads(st *store.Store, records []queueRecord, window int, head int64) ([]queueLoad, error) {
	loads := make([]queueLoad, len(records))
	errs := make([]error, len(records))
	workers := min(runtime.GOMAXPROCS(0), len(records))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			cache := map[uint64]*queue.Message{}
			for i := w; i < len(records); i += workers {
				l := &loads[i]
				l.es, l.disk, l.watermark, errs[i] = st.LoadQueueHead(records[i].ID, window, head, cache)
			}
		}(w)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return loads, nil
}
