package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSConfig builds the configuration for an AMQPS (or HTTPS) listener from
// PEM files: the server's certificate chain and key, and optionally the CA
// bundle that client certificates must chain to. With a CA, a client may
// present a certificate (verified; its CN can log in with EXTERNAL);
// requirePeer refuses clients without one, like RabbitMQ's
// fail_if_no_peer_cert. TLS 1.2 is the minimum.
func TLSConfig(certFile, keyFile, caFile string, requirePeer bool) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate (--tls-cert) and a key (--tls-key)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		if requirePeer {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else if requirePeer {
		return nil, errors.New("requiring client certificates needs a CA bundle (--tls-ca)")
	}
	return cfg, nil
}

// peerCN is the common name of the verified client certificate of a TLS
// connection, or "" when there is none.
func peerCN(st *tls.ConnectionState) string {
	if st == nil || len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return ""
	}
	return st.VerifiedChains[0][0].Subject.CommonName
}
