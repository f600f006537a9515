package integration

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// startWarrenProcess runs the broker binary on dataDir and returns its AMQP
// address.
func startWarrenProcess(t *testing.T, bin, dataDir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--data-dir", dataDir, "--log-level", "info")
	return cmd, runWarren(t, cmd)
}

// runWarren starts cmd (the broker binary) and returns the AMQP address it
// logs once listening.
func runWarren(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	return runWarrenListeners(t, cmd, "AMQP")["AMQP"]
}

// runWarrenListeners starts cmd and waits until it logs the address of each
// named listener (AMQP, AMQPS, HTTP, HTTPS).
func runWarrenListeners(t *testing.T, cmd *exec.Cmd, names ...string) map[string]string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	addrc := make(chan [2]string, 8)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- [2]string{m[1], m[2]}
			}
		}
	}()
	addrs := map[string]string{}
	timeout := time.After(30 * time.Second)
	for len(addrs) < len(names) {
		select {
		case a := <-addrc:
			if slices.Contains(names, a[0]) {
				addrs[a[0]] = a[1]
			}
		case <-timeout:
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("broker did not start its %v listeners (got %v)", names, addrs)
		}
	}
	return addrs
}

// TestSIGKILLLosesNoConfirmedMessage publishes persistent messages with
// confirms, SIGKILLs the broker mid-stream, restarts it on the same data
// directory and checks that every confirmed message is there exactly once
// and in order, and that acked messages stay gone. WARREN_KILL_ROUNDS sets
// the number of kill/restart rounds (make kill-test runs 50).
func TestSIGKILLLosesNoConfirmedMessage(t *testing.T) {
	warrenOnly(t, "SIGKILLs and restarts bin/warren")
	rounds := 3
	if s := os.Getenv("WARREN_KILL_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		rounds = n
	}
	bin := buildWarren(t)
	dataDir := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))

	var next uint64 = 1      // next sequence number to publish
	var confirmed []uint64   // confirmed in the last round, in order
	var lastConfirmed uint64 // highest confirmed ever
	var ackedMax uint64      // highest sequence drained and acked
	totalChecked := 0
	for round := 0; round < rounds; round++ {
		cmd, addr := startWarrenProcess(t, bin, dataDir)
		conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
		require.NoError(t, err, "round %d", round)
		ch, err := conn.Channel()
		require.NoError(t, err)
		_, err = ch.QueueDeclare("kill-test", true, false, false, false, nil)
		require.NoError(t, err)

		// Drain and check what the last round left.
		var got []uint64
		for {
			d, ok, err := ch.Get("kill-test", false)
			require.NoError(t, err)
			if !ok {
				break
			}
			require.NoError(t, d.Ack(false))
			if len(d.Body) == 8 {
				got = append(got, binary.BigEndian.Uint64(d.Body))
			}
		}
		for i := 1; i < len(got); i++ {
			require.Less(t, got[i-1], got[i], "round %d: out of order or duplicated: %v", round, got[i-1:i+1])
		}
		present := map[uint64]bool{}
		for _, s := range got {
			present[s] = true
		}
		for _, s := range confirmed {
			require.True(t, present[s], "round %d: confirmed message %d lost", round, s)
		}
		if len(got) > 0 {
			require.Greater(t, got[0], ackedMax, "round %d: an acked message came back", round)
			ackedMax = got[len(got)-1]
		}
		totalChecked += len(confirmed)

		// The acks above are in the store's batch order before this
		// publish: its confirm means they are on disk too.
		require.NoError(t, ch.Confirm(false))
		confirms := ch.NotifyPublish(make(chan amqp.Confirmation, 100000))
		require.NoError(t, ch.PublishWithContext(context.Background(), "", "kill-test", false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: []byte("marker")}))
		require.True(t, (<-confirms).Ack)
		_, ok, err := ch.Get("kill-test", true) // the marker itself
		require.NoError(t, err)
		require.True(t, ok)

		// Publish until killed.
		var mu sync.Mutex
		bySeqTag := map[uint64]uint64{} // delivery tag → sequence
		confirmed = confirmed[:0]
		tag := uint64(1) // the marker was tag 1
		stop := make(chan struct{})
		pubDone := make(chan struct{})
		go func() {
			defer close(pubDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				body := make([]byte, 8)
				binary.BigEndian.PutUint64(body, next)
				mu.Lock()
				tag++
				bySeqTag[tag] = next
				mu.Unlock()
				if ch.PublishWithContext(context.Background(), "", "kill-test", false, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body}) != nil {
					return
				}
				next++
			}
		}()
		confDone, firstConfirm := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(confDone)
			for c := range confirms {
				if !c.Ack {
					continue
				}
				mu.Lock()
				if s, ok := bySeqTag[c.DeliveryTag]; ok {
					if len(confirmed) == 0 {
						close(firstConfirm)
					}
					confirmed = append(confirmed, s)
					if s > lastConfirmed {
						lastConfirmed = s
					}
				}
				mu.Unlock()
			}
		}()
		// Kill at a random moment once something is confirmed (a loaded
		// machine may take longer than the random delay to confirm any).
		select {
		case <-firstConfirm:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no confirm within 30 s", round)
		}
		time.Sleep(time.Duration(rng.Intn(200)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()
		close(stop)
		<-pubDone
		conn.Close()
		<-confDone
		mu.Lock()
		require.NotEmpty(t, confirmed, "round %d: nothing confirmed before the kill", round)
		mu.Unlock()
	}
	// A last start checks the final round.
	cmd, addr := startWarrenProcess(t, bin, dataDir)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	conn, err := amqp.Dial("amqp://guest:guest@" + addr + "/")
	require.NoError(t, err)
	defer conn.Close()
	ch, _ := conn.Channel()
	present := map[uint64]bool{}
	var prev uint64
	prev = ackedMax
	for {
		d, ok, err := ch.Get("kill-test", true)
		require.NoError(t, err)
		if !ok {
			break
		}
		s := binary.BigEndian.Uint64(d.Body)
		require.Greater(t, s, prev, "out of order, duplicated or an acked message back")
		prev = s
		present[s] = true
	}
	for _, s := range confirmed {
		require.True(t, present[s], "confirmed message %d lost", s)
	}
	totalChecked += len(confirmed)
	t.Logf("%d kill/restart rounds, %d confirmed messages checked", rounds, totalChecked)
	fmt.Fprintf(os.Stderr, "kill-test: %d rounds, %d confirmed messages checked\n", rounds, totalChecked)
}
