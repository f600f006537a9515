package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/warren-mq/warren/amqp/server"
)

// testPKI is a throwaway CA with a server certificate for 127.0.0.1 and
// localhost, and client certificates, as PEM files in a temp dir.
type testPKI struct {
	dir                  string
	ca, cert, key        string // CA bundle, server cert and key
	clientCert, clientKy string // client certificate with CN=guest
	pool                 *x509.CertPool
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert := newCert(t, "Warren test CA", nil, nil, true)
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	p.ca = writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	writeKey(t, dir, "ca.key", caKey)
	k, c := newCert(t, "localhost", caCert, caKey, false)
	p.cert = writePEM(t, dir, "server.pem", "CERTIFICATE", c.Raw)
	p.key = writeKey(t, dir, "server.key", k)
	p.clientCert, p.clientKy = p.client(t, "guest", caCert, caKey)
	return p
}

// client issues a client certificate with the given CN, signed by ca.
func (p *testPKI) client(t testing.TB, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string) {
	k, c := newCert(t, cn, ca, caKey, false)
	return writePEM(t, p.dir, cn+".pem", "CERTIFICATE", c.Raw), writeKey(t, p.dir, cn+".key", k)
}

func newCert(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Warren tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	} else {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return key, cert
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

func writeKey(t testing.TB, dir, name string, k *ecdsa.PrivateKey) string {
	der, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return writePEM(t, dir, name, "EC PRIVATE KEY", der)
}

// startTLSBroker serves plain AMQP and AMQPS; url is the amqps:// one.
func startTLSBroker(t testing.TB, p *testPKI, requirePeer bool) (b *broker, amqpsAddr string) {
	t.Helper()
	tcfg, err := server.TLSConfig(p.cert, p.key, p.ca, requirePeer)
	require.NoError(t, err)
	b = startBroker(t, server.Config{Logger: zaptest.NewLogger(t, zaptest.Level(zapWarn))})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go b.Serve(tls.NewListener(l, tcfg))
	return b, l.Addr().String()
}

func TestTLS(t *testing.T) {
	warrenOnly(t, "serves TLS with a test PKI (server.TLSConfig, Server.Connections)")
	p := newPKI(t)
	b, addr := startTLSBroker(t, p, false)
	url := "amqps://guest:guest@" + addr + "/"

	t.Run("password over TLS", func(t *testing.T) {
		c, err := amqp.DialTLS(url, &tls.Config{RootCAs: p.pool})
		require.NoError(t, err)
		defer c.Close()
		ch, err := c.Channel()
		require.NoError(t, err)
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		require.NoError(t, err)
		body := strings.Repeat("x", 300_000) // several TLS records
		require.NoError(t, ch.PublishWithContext(context.Background(), "", q.Name, false, false, amqp.Publishing{Body: []byte(body)}))
		require.Equal(t, body, getBody(t, ch, q.Name))
		var info *server.ConnectionInfo
		for _, ci := range b.Connections() {
			if ci.PeerPort == c.LocalAddr().(*net.TCPAddr).Port {
				info = &ci
			}
		}
		require.NotNil(t, info)
		require.True(t, info.SSL)
		require.Equal(t, "tlsv1.3", info.SSLProtocol)
		require.Empty(t, info.PeerCertSubject)
	})

	t.Run("EXTERNAL with a client certificate", func(t *testing.T) {
		cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKy)
		require.NoError(t, err)
		c, err := amqp.DialConfig("amqps://"+addr+"/", amqp.Config{
			SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
			TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}},
		})
		require.NoError(t, err)
		defer c.Close()
		require.Contains(t, c.Properties, "product")
		found := false
		for _, ci := range b.Connections() {
			if ci.PeerPort == c.LocalAddr().(*net.TCPAddr).Port {
				found = true
				require.Equal(t, "guest", ci.User)
				require.Contains(t, ci.PeerCertSubject, "CN=guest")
			}
		}
		require.True(t, found)
	})

	t.Run("EXTERNAL without a certificate is not offered", func(t *testing.T) {
		_, err := amqp.DialConfig("amqps://"+addr+"/", amqp.Config{
			SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
			TLSClientConfig: &tls.Config{RootCAs: p.pool},
		})
		require.ErrorIs(t, err, amqp.ErrSASL)
	})

	t.Run("EXTERNAL for an unknown CN is refused", func(t *testing.T) {
		// A certificate from the right CA for a user that does not exist.
		k, c := newCertFromPKI(t, p, "nobody")
		cert := tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k}
		_, err := amqp.DialConfig("amqps://"+addr+"/", amqp.Config{
			SASL:            []amqp.Authentication{&amqp.ExternalAuth{}},
			TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}},
		})
		amqpErr(t, err, 403)
	})

	t.Run("a certificate from another CA fails the handshake", func(t *testing.T) {
		otherKey, otherCA := newCert(t, "Other CA", nil, nil, true)
		k, c := newCert(t, "guest", otherCA, otherKey, false)
		cert := &tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: k}
		// Go's client would not offer a certificate the server's CA list
		// does not name; force it, as a hostile client would.
		force := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		_, err := amqp.DialTLS(url, &tls.Config{RootCAs: p.pool, GetClientCertificate: force})
		// The alert reaches amqp091-go as a TLS error or, under TLS 1.3 (where
		// the client finishes first), as a dead connection: either way no login.
		require.Error(t, err)
	})

	t.Run("a plain AMQP client on the TLS port is dropped, others keep working", func(t *testing.T) {
		_, err := amqp.DialConfig("amqp://guest:guest@"+addr+"/", amqp.Config{Dial: amqp.DefaultDial(2 * time.Second)})
		require.Error(t, err)
		c, err := amqp.DialTLS(url, &tls.Config{RootCAs: p.pool})
		require.NoError(t, err)
		c.Close()
	})
}

// newCertFromPKI issues a client certificate from p's CA (reloaded from disk).
func newCertFromPKI(t testing.TB, p *testPKI, cn string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	caPair, err := tls.LoadX509KeyPair(p.ca, filepath.Join(p.dir, "ca.key"))
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caPair.Certificate[0])
	require.NoError(t, err)
	return newCert(t, cn, ca, caPair.PrivateKey.(*ecdsa.PrivateKey), false)
}

func TestTLSRequirePeerCertificate(t *testing.T) {
	warrenOnly(t, "serves TLS with a test PKI (server.TLSConfig)")
	p := newPKI(t)
	_, addr := startTLSBroker(t, p, true)
	_, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool})
	require.Error(t, err, "no client certificate")
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKy)
	require.NoError(t, err)
	c, err := amqp.DialTLS("amqps://guest:guest@"+addr+"/", &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	c.Close()
}

func TestTLSConfigErrors(t *testing.T) {
	warrenOnly(t, "checks Warren's TLS configuration errors; no broker involved")
	p := newPKI(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))
	for _, tc := range []struct {
		name            string
		cert, key, ca   string
		requirePeer     bool
		wantErrContains string
	}{
		{"no key", p.cert, "", "", false, "needs both a certificate"},
		{"missing cert file", "/nonexistent/cert.pem", p.key, "", false, "/nonexistent/cert.pem"},
		{"garbage cert", garbage, p.key, "", false, "garbage.pem"},
		{"key does not match", p.cert, p.clientKy, "", false, "private key does not match"},
		{"missing CA", p.cert, p.key, "/nonexistent/ca.pem", false, "reading CA bundle"},
		{"garbage CA", p.cert, p.key, garbage, false, "holds no PEM certificate"},
		{"peer verification without CA", p.cert, p.key, "", true, "needs a CA bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.TLSConfig(tc.cert, tc.key, tc.ca, tc.requirePeer)
			require.ErrorContains(t, err, tc.wantErrContains)
		})
	}
}

// TestBinaryTLSListeners runs bin/warren with AMQPS and HTTPS, and checks a
// bad certificate file stops it at startup with an error naming the file.
func TestBinaryTLSListeners(t *testing.T) {
	warrenOnly(t, "starts bin/warren with TLS listeners")
	bin := buildWarren(t)
	p := newPKI(t)
	cmd := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--amqps-listen", "127.0.0.1:0",
		"--https-listen", "127.0.0.1:0", "--tls-cert", p.cert, "--tls-key", p.key, "--tls-ca", p.ca, "--data-dir", t.TempDir())
	addrs := runWarrenListeners(t, cmd, "AMQP", "AMQPS", "HTTPS")
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c, err := amqp.DialTLS("amqps://guest:guest@"+addrs["AMQPS"]+"/", &tls.Config{RootCAs: p.pool})
	require.NoError(t, err)
	c.Close()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}, Timeout: 5 * time.Second}
	resp, err := hc.Get("https://" + addrs["HTTPS"] + "/api/health/checks/alive")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)
	// /api/overview names the TLS listeners as RabbitMQ does.
	req, err := http.NewRequest("GET", "https://"+addrs["HTTPS"]+"/api/overview", nil)
	require.NoError(t, err)
	req.SetBasicAuth("guest", "guest")
	resp, err = hc.Do(req)
	require.NoError(t, err)
	var overview struct {
		Listeners []struct {
			Protocol string
			Port     int
		}
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&overview))
	resp.Body.Close()
	got := map[string]string{}
	for _, l := range overview.Listeners {
		got[l.Protocol] = "127.0.0.1:" + strconv.Itoa(l.Port)
	}
	require.Equal(t, map[string]string{"amqp": addrs["AMQP"], "amqp/ssl": addrs["AMQPS"], "https": addrs["HTTPS"]}, got)
	// TLS 1.1 is refused.
	_, err = tls.Dial("tcp", addrs["AMQPS"], &tls.Config{RootCAs: p.pool, MaxVersion: tls.VersionTLS11})
	require.Error(t, err)

	out, err := exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--amqps-listen", "127.0.0.1:0",
		"--tls-cert", "/nonexistent/server.pem", "--tls-key", p.key, "--data-dir", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "/nonexistent/server.pem")
	out, err = exec.Command(bin, "--amqp-listen", "127.0.0.1:0", "--http-listen", "", "--prometheus-listen", "", "--amqps-listen", "127.0.0.1:0",
		"--data-dir", t.TempDir()).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--tls-cert")
}
