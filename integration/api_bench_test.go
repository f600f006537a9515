package integration

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp/server"
)

// BenchmarkAPIQueuesPage10k: one page of 100 queues out of 10,000, sorted
// by name, as the console asks for it (issue: under 100 ms).
func BenchmarkAPIQueuesPage10k(b *testing.B) {
	br := startBroker(b, server.Config{})
	_, ch := br.channel(b)
	for i := range 10000 {
		_, err := ch.QueueDeclare(fmt.Sprintf("queue-%05d", i), false, false, false, false, nil)
		require.NoError(b, err)
	}
	base := br.api(b)
	for _, path := range []string{"/api/queues?page=37&page_size=100&sort=name", "/api/queues?page=1&page_size=100&sort=messages&sort_reverse=true&name=queue-0"} {
		b.Run(path, func(b *testing.B) {
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodGet, base+path, nil)
				req.SetBasicAuth(br.user, br.pass)
				resp, err := http.DefaultClient.Do(req)
				require.NoError(b, err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				require.Equal(b, 200, resp.StatusCode)
			}
		})
	}
}
