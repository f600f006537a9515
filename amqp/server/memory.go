package server

import "github.com/warren-mq/warren/queue"

// DefaultMemoryBudget is the share of the memory high watermark (MemoryLimit)
// that queues' in-memory messages may use by default: the rest is left to
// unacked deliveries, connection buffers, the store's caches and the Go
// heap's own headroom, so that paging, not the memory alarm, keeps a node
// with many deep queues going.
const DefaultMemoryBudget = 1.0 / 16

// fallbackMemoryBudget applies without a memory limit.
const fallbackMemoryBudget = 256 << 20

// newBudget starts the node's memory budget; nil without a store (queues
// then live in memory only).
func newBudget(cfg *Config) *queue.Budget {
	if cfg.Store == nil {
		return nil
	}
	if cfg.MemoryBudget <= 0 {
		cfg.MemoryBudget = fallbackMemoryBudget
		if cfg.MemoryLimit > 0 {
			cfg.MemoryBudget = int64(float64(cfg.MemoryLimit) * DefaultMemoryBudget)
		}
	}
	return queue.NewBudget(cfg.MemoryBudget)
}

func (s *Server) closeBudget() {
	if s.budget != nil {
		s.budgetOnce.Do(s.budget.Close)
	}
}

// MemoryUsage reports the budget and what the queues hold in memory and on
// disk; ok is false when the node has no store (everything in memory).
func (s *Server) MemoryUsage() (u queue.Usage, ok bool) {
	if s.budget == nil {
		return u, false
	}
	return s.budget.Usage(), true
}
