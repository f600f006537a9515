// Command declare measures how fast a broker (a cluster, through one of its
// nodes) declares durable queues, each bound to a durable direct exchange:
// one connection, -channels channels declaring in parallel, each one queue
// after another (queue.declare then queue.bind, waiting for each -ok).
// It then checks that every node listed in -verify-http (management API
// base URLs) lists every queue and binding, optionally deletes them, and
// prints one JSON line with the results.
//
//	go run ./integration/bench/declare -url amqp://guest:guest@127.0.0.1:5790/ -n 10000 -channels 4 \
//	  -verify-http http://127.0.0.1:15790,http://127.0.0.1:15791,http://127.0.0.1:15792
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type nodeCheck struct {
	URL      string  `json:"url"`
	Queues   int     `json:"queues"`
	Bindings int     `json:"bindings"`
	Error    string  `json:"error,omitempty"`
	Seconds  float64 `json:"seconds"`
}

type result struct {
	Label       string      `json:"label"`
	Scenario    string      `json:"scenario"`
	OK          bool        `json:"ok"`
	Queues      int         `json:"queues"`
	Channels    int         `json:"channels"`
	DeclareS    float64     `json:"declare_s"`
	QueuesPerS  float64     `json:"queues_per_s"`
	OpsPerS     float64     `json:"ops_per_s"`
	VerifyWaitS float64     `json:"verify_wait_s"`
	Nodes       []nodeCheck `json:"nodes,omitempty"`
	DeleteS     float64     `json:"delete_s,omitempty"`
	Errors      []string    `json:"errors,omitempty"`
}

func main() {
	amqpURL := flag.String("url", "amqp://guest:guest@127.0.0.1:5672/", "AMQP URL of the node to declare through")
	n := flag.Int("n", 10000, "durable queues to declare, each with one binding")
	channels := flag.Int("channels", 1, "channels declaring in parallel on the one connection")
	prefix := flag.String("prefix", fmt.Sprintf("bench-declare-%d", os.Getpid()), "queue name prefix (the exchange is PREFIX-x)")
	verify := flag.String("verify-http", "", "comma-separated management API base URLs (guest:guest): each must list every queue and binding")
	verifyTimeout := flag.Duration("verify-timeout", 30*time.Second, "how long a node may take to list them all")
	cleanup := flag.Bool("cleanup", true, "delete the queues and the exchange afterwards")
	label := flag.String("label", "", "copied into the result")
	qtype := flag.String("queue-type", "", "x-queue-type of the queues (quorum, ...)")
	flag.Parse()

	res := result{Label: *label, Scenario: "declare", Queues: *n, Channels: *channels}
	fail := func(format string, a ...any) {
		res.Errors = append(res.Errors, fmt.Sprintf(format, a...))
	}
	defer func() {
		res.OK = len(res.Errors) == 0
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
		if !res.OK {
			fmt.Fprintln(os.Stderr, "declare:", strings.Join(res.Errors, "; "))
			os.Exit(1)
		}
	}()

	conn, err := amqp.Dial(*amqpURL)
	if err != nil {
		fail("dial: %v", err)
		return
	}
	defer conn.Close()
	exch := *prefix + "-x"
	{
		ch, err := conn.Channel()
		if err != nil {
			fail("channel: %v", err)
			return
		}
		if err := ch.ExchangeDeclare(exch, "direct", true, false, false, false, nil); err != nil {
			fail("exchange.declare: %v", err)
			return
		}
		ch.Close()
	}
	qname := func(i int) string { return fmt.Sprintf("%s-%05d", *prefix, i) }

	// Each channel takes the next index until all are declared.
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	start := time.Now()
	for c := 0; c < *channels; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := conn.Channel()
			if err != nil {
				mu.Lock()
				fail("channel: %v", err)
				mu.Unlock()
				return
			}
			defer ch.Close()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				q := qname(i)
				var args amqp.Table
				if *qtype != "" {
					args = amqp.Table{"x-queue-type": *qtype}
				}
				if _, err := ch.QueueDeclare(q, true, false, false, false, args); err != nil {
					mu.Lock()
					fail("queue.declare %s: %v", q, err)
					mu.Unlock()
					return
				}
				if err := ch.QueueBind(q, q, exch, false, nil); err != nil {
					mu.Lock()
					fail("queue.bind %s: %v", q, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	res.DeclareS = time.Since(start).Seconds()
	res.QueuesPerS = float64(*n) / res.DeclareS
	res.OpsPerS = 2 * float64(*n) / res.DeclareS
	if len(res.Errors) > 0 {
		return
	}

	// Every node must list them all (each node answers from its own copy of
	// the metadata, or aggregates: either way the whole set must show).
	if *verify != "" {
		vstart := time.Now()
		for _, base := range strings.Split(*verify, ",") {
			nc := nodeCheck{URL: base}
			t0 := time.Now()
			deadline := time.Now().Add(*verifyTimeout)
			for {
				nc.Queues, nc.Bindings, err = count(base, *prefix, exch)
				nc.Error = ""
				if err != nil {
					nc.Error = err.Error()
				}
				if (err == nil && nc.Queues == *n && nc.Bindings == *n) || time.Now().After(deadline) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			nc.Seconds = time.Since(t0).Seconds()
			if nc.Queues != *n || nc.Bindings != *n {
				fail("%s lists %d queues and %d bindings of %d (%s)", base, nc.Queues, nc.Bindings, *n, nc.Error)
			}
			res.Nodes = append(res.Nodes, nc)
		}
		res.VerifyWaitS = time.Since(vstart).Seconds()
	}

	if *cleanup {
		dstart := time.Now()
		next.Store(0)
		for c := 0; c < *channels; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := conn.Channel()
				if err != nil {
					mu.Lock()
					fail("channel: %v", err)
					mu.Unlock()
					return
				}
				defer ch.Close()
				for {
					i := int(next.Add(1)) - 1
					if i >= *n {
						return
					}
					if _, err := ch.QueueDelete(qname(i), false, false, false); err != nil {
						mu.Lock()
						fail("queue.delete %s: %v", qname(i), err)
						mu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
		if ch, err := conn.Channel(); err == nil {
			if err := ch.ExchangeDelete(exch, false, false); err != nil {
				fail("exchange.delete: %v", err)
			}
		}
		res.DeleteS = time.Since(dstart).Seconds()
	}
}

// count asks one node's management API for the queues named PREFIX-* in
// vhost / and the bindings whose source is exch.
func count(base, prefix, exch string) (queues, bindings int, err error) {
	var qs []struct {
		Name string `json:"name"`
	}
	if err := getJSON(base+"/api/queues/%2F?columns=name", &qs); err != nil {
		return 0, 0, err
	}
	for _, q := range qs {
		if strings.HasPrefix(q.Name, prefix+"-") && q.Name != prefix+"-x" {
			queues++
		}
	}
	var bs []struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	}
	if err := getJSON(base+"/api/exchanges/%2F/"+url.PathEscape(exch)+"/bindings/source", &bs); err != nil {
		return queues, 0, err
	}
	for _, b := range bs {
		if b.Source == exch {
			bindings++
		}
	}
	return queues, bindings, nil
}

var client = &http.Client{Timeout: 60 * time.Second}

func getJSON(u string, v any) error {
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth("guest", "guest")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", u, resp.StatusCode, strings.TrimSpace(string(b[:min(len(b), 200)])))
	}
	return json.Unmarshal(b, v)
}
