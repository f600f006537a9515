package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

const kindEcho, kindNote, kindFail = FirstUserKind + 1, FirstUserKind + 2, FirstUserKind + 3

type tnode struct {
	tr   *Transport
	addr string
	done chan error
}

func startNode(t *testing.T, id uint64, tlsCfg *tls.Config, notes chan<- string) *tnode {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := New(Config{NodeID: id, TLS: tlsCfg, Logger: zaptest.NewLogger(t), MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	tr.Handle(kindEcho, func(from uint64, p []byte, reply func([]byte, error)) {
		// Answer from another goroutine, as a handler handing work off does.
		go reply(append([]byte{byte(from)}, p...), nil)
	})
	tr.Handle(kindNote, func(from uint64, p []byte, reply func([]byte, error)) { notes <- string(p) })
	tr.Handle(kindFail, func(from uint64, p []byte, reply func([]byte, error)) { reply(nil, errors.New("no such queue")) })
	n := &tnode{tr: tr, addr: l.Addr().String(), done: make(chan error, 1)}
	go func() { n.done <- tr.Serve(l) }()
	t.Cleanup(func() { n.close(t) })
	return n
}

func (n *tnode) close(t *testing.T) {
	if n.tr.Close() != nil {
		t.Error("close failed")
	}
	if err := <-n.done; err != nil && !errors.Is(err, ErrClosed) {
		t.Errorf("serve: %v", err)
	}
	n.done <- nil // a second close finds it already done
}

func waitConnected(t *testing.T, tr *Transport, peer uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !tr.Connected(peer) {
		if time.Now().After(deadline) {
			t.Fatalf("node %d never connected to %d", tr.NodeID(), peer)
		}
		time.Sleep(2 * time.Millisecond) // polling a condition the transport does not signal
	}
}

func testPair(t *testing.T, tlsCfg *tls.Config) {
	notes := make(chan string, 16)
	a := startNode(t, 1, tlsCfg, notes)
	b := startNode(t, 2, tlsCfg, notes)
	a.tr.AddPeer(2, b.addr)
	b.tr.AddPeer(1, a.addr) // the higher ID never dials; this only records the address
	waitConnected(t, a.tr, 2)
	waitConnected(t, b.tr, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Both directions share the one connection.
	for _, c := range []struct {
		from *Transport
		to   uint64
	}{{a.tr, 2}, {b.tr, 1}} {
		resp, err := c.from.Request(ctx, c.to, kindEcho, []byte("hi"))
		if err != nil || !bytes.Equal(resp, []byte{byte(c.from.NodeID()), 'h', 'i'}) {
			t.Fatalf("echo from %d: %q, %v", c.from.NodeID(), resp, err)
		}
	}
	_, err := a.tr.Request(ctx, 2, kindFail, nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Text != "no such queue" {
		t.Fatalf("failing request: %v", err)
	}
	if err := b.tr.Send(1, kindNote, []byte("note")); err != nil {
		t.Fatal(err)
	}
	if got := <-notes; got != "note" {
		t.Fatalf("note %q", got)
	}
	if _, err := a.tr.Request(ctx, 2, FirstUserKind+9, nil); err == nil {
		t.Fatal("request of an unregistered kind succeeded")
	}
	if err := a.tr.Send(3, kindNote, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("send to unknown peer: %v", err)
	}
}

func TestRequestResponse(t *testing.T) { testPair(t, nil) }

func TestTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warren-node"},
		DNSNames: []string{"warren-node"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
		ServerName: "warren-node", MinVersion: tls.VersionTLS13,
	}
	testPair(t, cfg)
}

func TestReconnectAfterPeerRestart(t *testing.T) {
	notes := make(chan string, 16)
	a := startNode(t, 1, nil, notes)
	b := startNode(t, 2, nil, notes)
	a.tr.AddPeer(2, b.addr)
	waitConnected(t, a.tr, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b.close(t)
	deadline := time.Now().Add(10 * time.Second)
	for a.tr.Connected(2) {
		if time.Now().After(deadline) {
			t.Fatal("connection to a closed peer stays up")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := a.tr.Request(ctx, 2, kindEcho, nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("request to a down peer: %v", err)
	}
	b2 := startNode(t, 2, nil, notes)
	a.tr.AddPeer(2, b2.addr) // the restarted peer listens elsewhere
	waitConnected(t, a.tr, 2)
	if _, err := a.tr.Request(ctx, 2, kindEcho, []byte("x")); err != nil {
		t.Fatalf("after reconnect: %v", err)
	}
}

func FuzzDecodeHeader(f *testing.F) {
	f.Add(AppendFrame(nil, kindEcho, FlagRequest, 7, []byte("abc")))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeader(b, 1<<20)
		if err != nil {
			return
		}
		if h.Length > 1<<20 {
			t.Fatalf("length %d passed the bound", h.Length)
		}
		enc := AppendFrame(nil, h.Kind, h.Flags, h.ID, make([]byte, h.Length))
		if !bytes.Equal(enc[:HeaderSize], b[:HeaderSize]) {
			t.Fatal("header does not round-trip")
		}
	})
}
