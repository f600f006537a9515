// Command failover measures how long a three-node cluster's quorum queue
// takes to confirm again after its leader's node is killed: a publisher on
// a node that does not lead publishes persistent messages one at a time
// with confirms, the leader's process gets SIGKILL, and the time from the
// kill to the next confirm is the figure. Run by integration/bench/cluster.sh
// (FAILOVER=1) against Warren and RabbitMQ alike; prints one JSON line.
//
//	failover -urls amqp://A,amqp://B,amqp://C -apis http://A,http://B,http://C \
//	  -names nodeA,nodeB,nodeC -pids PIDA,PIDB,PIDC
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	urls := flag.String("urls", "", "AMQP URLs of the three nodes, comma-separated")
	apis := flag.String("apis", "", "management API base URLs of the three nodes, same order")
	names := flag.String("names", "", "node names, same order")
	pids := flag.String("pids", "", "node process ids, same order")
	label := flag.String("label", "", "broker label for the result")
	wait := flag.Duration("timeout", 60*time.Second, "give up after this long without a confirm")
	flag.Parse()
	res, err := run(strings.Split(*urls, ","), strings.Split(*apis, ","), strings.Split(*names, ","), strings.Split(*pids, ","), *wait)
	res["label"] = *label
	if err != nil {
		res["ok"], res["error"] = false, err.Error()
	} else {
		res["ok"] = true
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if err != nil {
		os.Exit(1)
	}
}

func leaderOf(api, q string) (string, error) {
	req, _ := http.NewRequest("GET", api+"/api/queues/%2F/"+q, nil)
	req.SetBasicAuth("guest", "guest")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		Leader string `json:"leader"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", err
	}
	return v.Leader, nil
}

func run(urls, apis, names, pids []string, wait time.Duration) (map[string]any, error) {
	res := map[string]any{}
	q := fmt.Sprintf("failover-%d", time.Now().UnixNano())
	c0, err := amqp.Dial(urls[0])
	if err != nil {
		return res, err
	}
	ch0, err := c0.Channel()
	if err != nil {
		return res, err
	}
	if _, err := ch0.QueueDeclare(q, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		return res, err
	}
	c0.Close()
	var leader string
	for range 100 {
		if leader, _ = leaderOf(apis[1], q); leader != "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	li := -1
	for i, n := range names {
		if n == leader {
			li = i
		}
	}
	if li < 0 || li >= len(pids) {
		return res, fmt.Errorf("leader %q is not among %v", leader, names)
	}
	pid, err := strconv.Atoi(pids[li])
	if err != nil {
		return res, err
	}
	res["leader"] = leader
	pubURL := urls[(li+1)%len(urls)] // a node that does not lead
	c, err := amqp.Dial(pubURL)
	if err != nil {
		return res, err
	}
	defer c.Close()
	ch, err := c.Channel()
	if err != nil {
		return res, err
	}
	if err := ch.Confirm(false); err != nil {
		return res, err
	}
	publish := func(ctx context.Context) (bool, error) {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false,
			amqp.Publishing{Body: []byte("x"), DeliveryMode: amqp.Persistent})
		if err != nil {
			return false, err
		}
		return dc.WaitContext(ctx)
	}
	// Steady state first.
	for range 200 {
		if ok, err := publish(context.Background()); err != nil || !ok {
			return res, fmt.Errorf("before the kill: ok %v, %v", ok, err)
		}
	}
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return res, err
	}
	deadline := killed.Add(wait)
	attempts := 0
	for time.Now().Before(deadline) {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, err := publish(ctx)
		cancel()
		if err == nil && ok {
			res["seconds_to_next_confirm"] = time.Since(killed).Seconds()
			res["attempts"] = attempts
			res["publisher"] = pubURL
			return res, nil
		}
		if err != nil && c.IsClosed() {
			return res, fmt.Errorf("the publisher's connection closed: %v", err)
		}
	}
	return res, fmt.Errorf("no confirm within %v of the kill", wait)
}
