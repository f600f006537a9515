package main

import (
	"fmt"

	"github.com/warren-mq/warren/amqp/server"
)

// memoryBudget turns --memory-budget into bytes. "auto" takes
// server.DefaultMemoryBudget of the memory high watermark, but at most half
// of the Go heap limit: a live heap above that limit would make the garbage
// collector run without pause. 0 and "auto" without either limit leave it
// to the server's fallback.
func memoryBudget(v string, memLimit, heapLimit uint64) (int64, error) {
	if v != "auto" {
		n, err := parseBytes(v)
		if err != nil || n > 0 && n < 1<<20 {
			return 0, fmt.Errorf("--memory-budget %q: must be auto or a size of at least 1MB", v)
		}
		return int64(n), nil
	}
	b := uint64(float64(memLimit) * server.DefaultMemoryBudget)
	if heapLimit > 0 && (b == 0 || b > heapLimit/2) {
		b = heapLimit / 2
	}
	return int64(b), nil
}
