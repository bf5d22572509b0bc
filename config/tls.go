package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// LoadTLS reads the listener's certificate, key and client CA from disk and
// returns the server TLS configuration, or nil for a plain listener. Errors
// name the listener and the file.
func (l *Listener) LoadTLS() (*tls.Config, error) {
	if !l.TLS() {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(l.TLSCert, l.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("listener %q: load certificate %s and key %s: %w", l.Name, l.TLSCert, l.TLSKey, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	if l.TLSClientCA != "" {
		pem, err := os.ReadFile(l.TLSClientCA)
		if err != nil {
			return nil, fmt.Errorf("listener %q: read tls_client_ca: %w", l.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("listener %q: tls_client_ca %s holds no PEM certificate", l.Name, l.TLSClientCA)
		}
		tc.ClientCAs = pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// Check does everything a start would short of binding sockets: the
// configuration is already validated; this loads every TLS file.
func (c *Config) Check() error {
	for i := range c.Listeners {
		if _, err := c.Listeners[i].LoadTLS(); err != nil {
			return err
		}
	}
	return nil
}
