package integration

import (
	"testing"
	"time"
)

// waitForOr is waitFor that adds what explain says (a status, a log) when
// it times out.
func waitForOr(t *testing.T, what string, cond func() bool, explain func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s\n%s", what, explain())
}
