package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// aeadSuites are the TLS 1.2 cipher suites a listener offers: ECDHE key
// exchange (forward secrecy) with an AEAD cipher, so that scanners such as
// testssl.sh find no CBC and no static RSA. TLS 1.3 suites are all AEAD and
// not configurable.
var aeadSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// tlsVersion reads tls_min_version; "" is the default, 1.2.
func tlsVersion(v string) (uint16, error) {
	switch v {
	case "", "1.2":
		return tls.VersionTLS12, nil
	case "1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tls_min_version: want \"1.2\" or \"1.3\", got %q", v)
}

// LoadTLS reads the listener's certificate, key and client CA from disk and
// returns the server TLS configuration, or nil for a plain listener. Errors
// are *Error naming the config file, line and key of the file that failed.
//
// Session tickets: nothing here sets SessionTicketKey or calls
// SetSessionTicketKeys, so crypto/tls generates ticket keys itself, rotates
// them every 24 hours and drops them after 7 days (ticketKeyRotation and
// ticketKeyLifetime in crypto/tls/common.go). Keys live in the returned
// Config, so a reload (a new Config) also starts new keys: older tickets
// then fall back to a full handshake.
func (l *Listener) LoadTLS() (*tls.Config, error) {
	if !l.TLS() {
		return nil, nil
	}
	minVersion, err := tlsVersion(l.TLSMinVersion)
	if err != nil {
		return nil, l.errorf("tls_min_version", "listener %q: %v", l.Name, err)
	}
	certPEM, err := os.ReadFile(l.TLSCert)
	if err != nil {
		return nil, l.errorf("tls_cert", "listener %q: read certificate: %v", l.Name, err)
	}
	keyPEM, err := os.ReadFile(l.TLSKey)
	if err != nil {
		return nil, l.errorf("tls_key", "listener %q: read key: %v", l.Name, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, l.errorf("tls_cert", "listener %q: load certificate %s and key %s: %v", l.Name, l.TLSCert, l.TLSKey, err)
	}
	tc := &tls.Config{
		MinVersion:   minVersion,
		Certificates: []tls.Certificate{cert},
	}
	if minVersion < tls.VersionTLS13 {
		tc.CipherSuites = aeadSuites
	}
	if l.TLSClientCA != "" {
		pool, err := loadCA(l.TLSClientCA)
		if err != nil {
			return nil, l.errorf("tls_client_ca", "listener %q: %v", l.Name, err)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// errorf is an Error at one of the listener's keys.
func (l *Listener) errorf(k, format string, args ...any) *Error {
	p := key(k)
	if l.src != nil {
		p = listenerKey(l.index, k)
	}
	return l.src.errorf(p, format, args...)
}

func loadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
