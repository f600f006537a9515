// Command nullbroker is the least an AMQP 0-9-1 broker can do for
// amqpbench's transient, latency and fanout scenarios: it answers the handshake and the
// synchronous methods, and hands each message published to the default
// exchange straight to the consumer of the queue its routing key names, and
// each message published to another exchange to the consumers of every
// queue bound to it (fanout) — no queues, routing tables, flow control or
// persistence. amqpbench against it shows the client's own ceiling on this
// machine, to set Warren's figures against (docs/benchmarks.md).
//
//	go run ./integration/bench/nullbroker -listen 127.0.0.1:5699
package main

import (
	"bufio"
	"flag"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/warren-mq/warren/amqp"
)

type conn struct {
	nc   net.Conn
	mu   sync.Mutex
	out  []byte
	kick chan struct{}
}

func (c *conn) send(fn func([]byte) []byte) {
	c.mu.Lock()
	c.out = fn(c.out)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *conn) writeLoop() {
	var spare []byte
	for range c.kick {
		c.mu.Lock()
		buf := c.out
		c.out = spare[:0]
		c.mu.Unlock()
		if len(buf) > 0 {
			if _, err := c.nc.Write(buf); err != nil {
				return
			}
		}
		spare = buf[:0]
	}
}

type consumer struct {
	c   *conn
	ch  uint16
	tag string
	seq atomic.Uint64
}

var (
	consumersMu sync.RWMutex
	consumers   = map[string]*consumer{}
	bindings    = map[string][]string{} // exchange -> bound queues (fanout)
	names       atomic.Uint64
)

func main() {
	listen := flag.String("listen", "127.0.0.1:5699", "listen address")
	flag.Parse()
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("null broker on %s", l.Addr())
	for {
		nc, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(nc)
	}
}

func serve(nc net.Conn) {
	defer nc.Close()
	c := &conn{nc: nc, kick: make(chan struct{}, 1)}
	go c.writeLoop()
	defer close(c.kick)
	br := bufio.NewReaderSize(nc, 64<<10)
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return
	}
	fr := amqp.NewFrameReader(br, 131072)
	method := func(ch uint16, m amqp.Method) {
		c.send(func(b []byte) []byte { return amqp.AppendMethodFrame(b, ch, m) })
	}
	method(0, &amqp.ConnectionStart{VersionMajor: 0, VersionMinor: 9, Mechanisms: "PLAIN", Locales: "en_US",
		ServerProperties: amqp.Table{"product": "null", "capabilities": amqp.Table{"publisher_confirms": true, "basic.nack": true}}})
	confirm := map[uint16]uint64{} // channel -> publish count, in confirm mode
	var pub struct {
		ch       uint16
		exchange string
		key      string
		hdr      []byte
		body     []byte
		size     uint64
	}
	deliver := func() {
		consumersMu.RLock()
		queues := []string{pub.key}
		if pub.exchange != "" {
			queues = bindings[pub.exchange] // fanout: every bound queue
		}
		for _, q := range queues {
			cons := consumers[q]
			if cons == nil {
				continue
			}
			tag := cons.seq.Add(1)
			hdr, body, ex, key := pub.hdr, pub.body, pub.exchange, pub.key
			cons.c.send(func(b []byte) []byte {
				b = amqp.AppendMethodFrame(b, cons.ch, &amqp.BasicDeliver{ConsumerTag: cons.tag, DeliveryTag: tag, Exchange: ex, RoutingKey: key})
				return amqp.AppendContent(b, cons.ch, hdr, body, 131072)
			})
		}
		consumersMu.RUnlock()
		if n, ok := confirm[pub.ch]; ok {
			confirm[pub.ch] = n + 1
			method(pub.ch, &amqp.BasicAck{DeliveryTag: n + 1})
		}
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f.Type {
		case amqp.FrameHeader:
			pub.hdr = append([]byte(nil), f.Payload...)
			pub.size = amqp.HeaderBodySize(f.Payload)
			pub.body = make([]byte, 0, pub.size)
			if pub.size == 0 {
				deliver()
			}
			continue
		case amqp.FrameBody:
			pub.body = append(pub.body, f.Payload...)
			if uint64(len(pub.body)) == pub.size {
				deliver()
			}
			continue
		case amqp.FrameMethod:
		default:
			continue
		}
		m, err := amqp.DecodeMethod(f.Payload)
		if err != nil {
			return
		}
		ch := f.Channel
		switch m := m.(type) {
		case *amqp.ConnectionStartOk:
			method(0, &amqp.ConnectionTune{ChannelMax: 2047, FrameMax: 131072})
		case *amqp.ConnectionOpen:
			method(0, &amqp.ConnectionOpenOk{})
		case *amqp.ConnectionClose:
			method(0, &amqp.ConnectionCloseOk{})
			return
		case *amqp.ChannelOpen:
			method(ch, &amqp.ChannelOpenOk{})
		case *amqp.ChannelClose:
			method(ch, &amqp.ChannelCloseOk{})
		case *amqp.QueueDeclare:
			name := m.Queue
			if name == "" {
				name = "null-" + strconv.FormatUint(names.Add(1), 10)
			}
			method(ch, &amqp.QueueDeclareOk{Queue: name})
		case *amqp.QueueDelete:
			method(ch, &amqp.QueueDeleteOk{})
		case *amqp.QueuePurge:
			method(ch, &amqp.QueuePurgeOk{})
		case *amqp.QueueBind:
			consumersMu.Lock()
			bindings[m.Exchange] = append(bindings[m.Exchange], m.Queue)
			consumersMu.Unlock()
			method(ch, &amqp.QueueBindOk{})
		case *amqp.ExchangeDeclare:
			method(ch, &amqp.ExchangeDeclareOk{})
		case *amqp.ExchangeDelete:
			method(ch, &amqp.ExchangeDeleteOk{})
		case *amqp.BasicQos:
			method(ch, &amqp.BasicQosOk{})
		case *amqp.ConfirmSelect:
			confirm[ch] = 0
			method(ch, &amqp.ConfirmSelectOk{})
		case *amqp.BasicConsume:
			tag := m.ConsumerTag
			if tag == "" {
				tag = "null-ctag-" + strconv.FormatUint(names.Add(1), 10)
			}
			consumersMu.Lock()
			consumers[m.Queue] = &consumer{c: c, ch: ch, tag: tag}
			consumersMu.Unlock()
			method(ch, &amqp.BasicConsumeOk{ConsumerTag: tag})
		case *amqp.BasicCancel:
			method(ch, &amqp.BasicCancelOk{ConsumerTag: m.ConsumerTag})
		case *amqp.BasicPublish:
			pub.ch, pub.exchange, pub.key = ch, m.Exchange, m.RoutingKey
		}
	}
}
