package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/testcert"
)

type tlsFiles struct {
	dir, cert, key, ca, otherKey, garbage string
	ca_                                   *testcert.CA
}

func writeTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	f := tlsFiles{dir: t.TempDir()}
	ca, err := testcert.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	f.ca_ = ca
	srv, _ := ca.Server("relayd")
	if f.cert, f.key, err = srv.Write(f.dir, "server"); err != nil {
		t.Fatal(err)
	}
	f.ca, _ = ca.Write(f.dir, "ca")
	other, _ := ca.Server("other")
	_, f.otherKey, _ = other.Write(f.dir, "other")
	f.garbage = filepath.Join(f.dir, "garbage.pem")
	if err := os.WriteFile(f.garbage, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// LoadTLS errors name the config file, the line and the key of the file
// that failed, like every other config error.
func TestLoadTLSErrorsNameFileLineAndKey(t *testing.T) {
	f := writeTLSFiles(t)
	const head = "[[listener]]\nname = \"plain\"\naddress = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"tls\"\naddress = \"127.0.0.1:0\"\n" // lines 1-7
	tests := []struct {
		name      string
		cert, key string
		ca        string
		line      int
		key_      string
		msg       string
	}{
		{"missing cert", "missing.pem", f.key, "", 8, "listener[1].tls_cert", `listener "tls": read certificate: open ` + filepath.Join(f.dir, "missing.pem")},
		{"missing key", f.cert, "nokey.pem", "", 9, "listener[1].tls_key", `listener "tls": read key: open ` + filepath.Join(f.dir, "nokey.pem")},
		{"mismatched key", f.cert, f.otherKey, "", 8, "listener[1].tls_cert", `listener "tls": load certificate ` + f.cert + " and key " + f.otherKey},
		{"garbage cert", f.garbage, f.key, "", 8, "listener[1].tls_cert", "load certificate"},
		{"missing CA", f.cert, f.key, "missing-ca.pem", 10, "listener[1].tls_client_ca", `listener "tls": read CA: open`},
		{"CA without PEM", f.cert, f.key, f.garbage, 10, "listener[1].tls_client_ca", "holds no PEM certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := head + fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", tc.cert, tc.key)
			if tc.ca != "" {
				src += fmt.Sprintf("tls_client_ca = %q\n", tc.ca)
			}
			path := filepath.Join(f.dir, "relayd.toml")
			c, err := Parse(path, []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			for _, run := range []func() error{
				func() error { _, err := c.Listeners[1].LoadTLS(); return err },
				c.Check,
			} {
				var ce *Error
				if err := run(); !errors.As(err, &ce) {
					t.Fatalf("err = %v (%T), want *config.Error", err, err)
				}
				if ce.File != path || ce.Line != tc.line || ce.Key != tc.key_ || !strings.Contains(ce.Msg, tc.msg) {
					t.Fatalf("got %s:%d %q %q; want line %d key %q msg containing %q", ce.File, ce.Line, ce.Key, ce.Msg, tc.line, tc.key_, tc.msg)
				}
				if want := fmt.Sprintf("%s:%d: %s: listener \"tls\": ", path, tc.line, tc.key_); !strings.HasPrefix(ce.Error(), want) {
					t.Fatalf("message %q does not start with %q", ce.Error(), want)
				}
			}
		})
	}
	// A listener built in code has no file to name, and still names its key.
	l := Listener{Name: "coded", TLSCert: filepath.Join(f.dir, "none.pem"), TLSKey: f.key}
	if _, err := l.LoadTLS(); err == nil || err.Error() != `tls_cert: listener "coded": read certificate: open `+l.TLSCert+": no such file or directory" {
		t.Fatalf("coded listener: %v", err)
	}
}

func TestCheckLoadsTLSFiles(t *testing.T) {
	f := writeTLSFiles(t)
	listener := func(cert, key, ca string) *Config {
		c := Default()
		c.Listeners[0] = Listener{Name: "tls", Address: "127.0.0.1:0", TLSCert: cert, TLSKey: key, TLSClientCA: ca, Limits: c.Limits}
		return c
	}
	if err := listener(f.cert, f.key, f.ca).Check(); err != nil {
		t.Fatalf("valid TLS files: %v", err)
	}
	tc, err := listener(f.cert, f.key, f.ca).Listeners[0].LoadTLS()
	if err != nil || tc.MinVersion != tls.VersionTLS12 || tc.ClientCAs == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Fatalf("LoadTLS = %+v, %v", tc, err)
	}
	for name, c := range map[string]*Config{
		"missing cert":    listener(filepath.Join(f.dir, "missing.pem"), f.key, ""),
		"mismatched key":  listener(f.cert, f.otherKey, ""),
		"garbage cert":    listener(f.garbage, f.key, ""),
		"missing CA":      listener(f.cert, f.key, filepath.Join(f.dir, "missing-ca.pem")),
		"garbage CA file": listener(f.cert, f.key, f.garbage),
	} {
		err := c.Check()
		if err == nil || !strings.Contains(err.Error(), `listener "tls"`) {
			t.Errorf("%s: err = %v, want an error naming the listener", name, err)
		}
	}
}

// The TLS policy: only ECDHE with AEAD on TLS 1.2, tls_min_version
// enforced, automatic session ticket keys (none set here).
func TestTLSPolicyConfig(t *testing.T) {
	f := writeTLSFiles(t)
	for _, tc := range []struct {
		version string
		min     uint16
		suites  []uint16
	}{
		{"", tls.VersionTLS12, aeadSuites},
		{"1.2", tls.VersionTLS12, aeadSuites},
		{"1.3", tls.VersionTLS13, nil},
	} {
		l := Listener{Name: "tls", TLSCert: f.cert, TLSKey: f.key, TLSMinVersion: tc.version}
		c, err := l.LoadTLS()
		if err != nil {
			t.Fatal(err)
		}
		if c.MinVersion != tc.min || !slices.Equal(c.CipherSuites, tc.suites) {
			t.Errorf("%q: MinVersion %x, suites %v", tc.version, c.MinVersion, c.CipherSuites)
		}
		//lint:ignore SA1019 reading the deprecated field is the test: it must stay unset for Go to rotate ticket keys
		if c.SessionTicketsDisabled || c.SessionTicketKey != [32]byte{} {
			t.Errorf("%q: session tickets disabled or a static ticket key set", tc.version)
		}
	}
	for _, id := range aeadSuites {
		s := suiteByID(id)
		if s == nil || s.Insecure || !strings.HasPrefix(s.Name, "TLS_ECDHE_") || strings.Contains(s.Name, "CBC") {
			t.Errorf("suite %#x (%v) is not ECDHE with AEAD", id, s)
		}
	}
	if _, err := (&Listener{Name: "x", TLSCert: f.cert, TLSKey: f.key, TLSMinVersion: "1.0"}).LoadTLS(); err == nil {
		t.Error("LoadTLS accepted tls_min_version 1.0")
	}
}

func suiteByID(id uint16) *tls.CipherSuite {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// serveTLS accepts TLS connections with the listener's configuration on
// 127.0.0.1 and reports each handshake's outcome.
func serveTLS(t *testing.T, l *Listener) (addr string, results <-chan error) {
	t.Helper()
	tc, err := l.LoadTLS()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tc)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan error, 16)
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			out <- c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	return ln.Addr().String(), out
}

func TestTLSPolicyOverSockets(t *testing.T) {
	f := writeTLSFiles(t)
	client := func(min, max uint16, suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: f.ca_.Pool(), ServerName: "localhost", MinVersion: min, MaxVersion: max, CipherSuites: suites}
	}
	tests := []struct {
		name    string
		version string // the listener's tls_min_version
		client  *tls.Config
		ok      bool
	}{
		{"TLS 1.2 client, min 1.3", "1.3", client(tls.VersionTLS12, tls.VersionTLS12), false},
		{"TLS 1.3 client, min 1.3", "1.3", client(tls.VersionTLS13, tls.VersionTLS13), true},
		{"CBC-only TLS 1.2 client", "1.2", client(tls.VersionTLS12, tls.VersionTLS12,
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256), false},
		{"AES-GCM TLS 1.2 client", "1.2", client(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), true},
		{"ChaCha20 TLS 1.2 client", "1.2", client(tls.VersionTLS12, tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256), true},
		{"TLS 1.1 client", "1.2", client(tls.VersionTLS10, tls.VersionTLS11), false},
		{"TLS 1.3 client, min 1.2", "1.2", client(tls.VersionTLS13, tls.VersionTLS13), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, results := serveTLS(t, &Listener{Name: "tls", TLSCert: f.cert, TLSKey: f.key, TLSMinVersion: tc.version})
			d := &net.Dialer{Timeout: 10 * time.Second}
			conn, err := tls.DialWithDialer(d, "tcp", addr, tc.client)
			if err == nil {
				st := conn.ConnectionState()
				if st.Version == tls.VersionTLS12 && !slices.Contains(aeadSuites, st.CipherSuite) {
					t.Errorf("negotiated %s", tls.CipherSuiteName(st.CipherSuite))
				}
				conn.Close()
			}
			serverErr := <-results
			if (err == nil) != tc.ok || (serverErr == nil) != tc.ok {
				t.Fatalf("client: %v; server: %v; want ok=%v", err, serverErr, tc.ok)
			}
		})
	}
}
