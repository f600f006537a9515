package integration

import (
	"encoding/binary"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/warren-mq/warren/amqp"
	"github.com/warren-mq/warren/amqp/server"
)

// The whole publish → route → queue → deliver path of a real broker over
// loopback TCP, driven by raw frames so that the client side allocates
// nothing: allocs/op is the broker's allocations per message. The 4x4
// case spreads 4 publishing and 4 consuming connections over 16 queues and
// reports the process's CPU cores (the raw clients cost little of it), to
// show the broker using both cores.
//
//	go test -run '^$' -bench PublishDeliver -benchmem ./integration
func BenchmarkPublishDeliver(b *testing.B) {
	b.Run("transient", func(b *testing.B) { benchPublishDeliver(b, 1, 1, 1, 0) })
	b.Run("ack", func(b *testing.B) { benchPublishDeliver(b, 1, 1, 1, 100) })
	b.Run("4x4-16queues", func(b *testing.B) { benchPublishDeliver(b, 4, 4, 16, 0) })
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchPublishDeliver publishes 16-byte messages from np connections to nq
// queues and consumes them on nc connections (publisher and consumer i
// take queues i, i+n, ...): auto-ack when prefetch is 0, else manual acks
// (multiple, every prefetch/2 deliveries) with that prefetch.
func benchPublishDeliver(b *testing.B, np, nc, nq, prefetch int) {
	br := startBroker(b, server.Config{})
	qname := func(i int) string { return fmt.Sprintf("hotpath-%d", i) }
	dial := func() *rawConn {
		c := dialChannel(b, br)
		c.nc.SetDeadline(time.Now().Add(time.Minute))
		return c
	}

	cons := make([]*rawConn, nc)
	for i := range cons {
		c := dial()
		if prefetch > 0 {
			c.send(1, &amqp.BasicQos{PrefetchCount: uint16(prefetch)})
			c.next()
		}
		for q := i; q < nq; q += nc {
			c.send(1, &amqp.QueueDeclare{Queue: qname(q)})
			c.next()
			c.send(1, &amqp.BasicConsume{Queue: qname(q), ConsumerTag: qname(q), NoAck: prefetch == 0})
			_, ok := c.next().(*amqp.BasicConsumeOk)
			require.True(b, ok)
		}
		cons[i] = c
	}
	// Each publisher writes one batch of 100 publishes, round-robin over
	// its queues, again and again.
	const batch = 100
	pubs := make([]*rawConn, np)
	frames := make([][]byte, np)
	header := amqp.AppendContentHeader(nil, 16, &amqp.Properties{})
	for i := range pubs {
		p := dial()
		var qs []string
		for q := i; q < nq; q += np {
			qs = append(qs, qname(q))
		}
		for j := range batch {
			frames[i] = amqp.AppendMethodFrame(frames[i], 1, &amqp.BasicPublish{RoutingKey: qs[j%len(qs)]})
			frames[i] = amqp.AppendContent(frames[i], 1, header, make([]byte, 16), 131072)
		}
		pubs[i] = p
	}
	rounds := (b.N/np + batch - 1) / batch
	want := rounds * batch * np

	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	errc := make(chan error, np+nc)
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := p.nc.Write(frames[i]); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	got := 0
	for _, c := range cons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ack []byte
			n := 0
			for {
				mu.Lock()
				done := got >= want
				mu.Unlock()
				if done {
					return
				}
				f, err := c.fr.ReadFrame()
				if err != nil {
					mu.Lock()
					done := got >= want
					mu.Unlock()
					if !done {
						errc <- err
					}
					return
				}
				if f.Type != amqp.FrameMethod {
					continue
				}
				if cls, mid, _ := amqp.MethodIDs(f.Payload); cls != amqp.ClassBasic || mid != 60 {
					errc <- fmt.Errorf("unexpected method %d.%d", cls, mid)
					return
				}
				n++
				mu.Lock()
				got++
				if got == want {
					// The last one: wake the consumers still reading.
					for _, o := range cons {
						o.nc.SetReadDeadline(time.Now())
					}
				}
				mu.Unlock()
				if prefetch > 0 && n%(prefetch/2) == 0 {
					// basic.deliver: consumer-tag (shortstr) then the delivery tag.
					tag := binary.BigEndian.Uint64(f.Payload[5+int(f.Payload[4]):])
					ack = amqp.AppendMethodFrame(ack[:0], 1, &amqp.BasicAck{DeliveryTag: tag, Multiple: true})
					if _, err := c.nc.Write(ack); err != nil {
						errc <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(want)/secs, "msg/s")
	b.ReportMetric((cpuTime()-cpu0).Seconds()/secs, "cores")
}
