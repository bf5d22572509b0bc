package main

import (
	"bytes"
	"crypto/tls"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/syncbuf"
	"github.com/relayd/relayd/internal/testcert"
)

// pki is a CA with a server certificate for localhost and a client
// certificate for "alice", written to files, plus a client certificate
// from a CA the server does not trust.
type pki struct {
	ca                         *testcert.CA
	caFile, serverCert, srvKey string
	aliceCert, aliceKey        string
	strangerCert, strangerKey  string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{}
	var err error
	must := func(e error) {
		t.Helper()
		if e != nil {
			t.Fatal(e)
		}
	}
	p.ca, err = testcert.NewCA("relayd test CA")
	must(err)
	p.caFile, err = p.ca.Write(dir, "ca")
	must(err)
	srv, err := p.ca.Server("localhost")
	must(err)
	p.serverCert, p.srvKey, err = srv.Write(dir, "server")
	must(err)
	alice, err := p.ca.Client("alice")
	must(err)
	p.aliceCert, p.aliceKey, err = alice.Write(dir, "alice")
	must(err)
	other, err := testcert.NewCA("another CA")
	must(err)
	stranger, err := other.Client("alice")
	must(err)
	p.strangerCert, p.strangerKey, err = stranger.Write(dir, "stranger")
	must(err)
	return p
}

// runClient runs relayd-client with stdin held open, so that only the
// server (or a failure to connect) ends it, and returns its stderr and
// exit status.
func runClient(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return stderr.String(), code
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("relayd-client %v still running; stderr: %s", args, stderr.String())
		return "", 0
	}
}

func portOf(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := portOf(t, ln.Addr().String())
	ln.Close()
	return port
}

// tls12Server accepts TLS 1.2 only and requires a client certificate, to
// see the handshake fail on the client (in TLS 1.3 it fails after it).
func tls12Server(t *testing.T, p *pki) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.serverCert, p.srvKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		MaxVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_ = c.(*tls.Conn).Handshake()
			}()
		}
	}()
	return portOf(t, ln.Addr().String())
}

// Each way a connection fails gets a message that says which it was.
func TestDiagnostics(t *testing.T) {
	p := newPKI(t)
	_, plainAddr := relaytest.Start(t, nil)
	_, tlsAddr := relaytest.Start(t, func(l *config.Listener) { l.TLSCert, l.TLSKey = p.serverCert, p.srvKey })
	_, mtlsAddr := relaytest.Start(t, func(l *config.Listener) {
		l.TLSCert, l.TLSKey, l.TLSClientCA = p.serverCert, p.srvKey, p.caFile
		l.ClientIDFromCert = true
	})
	plain, tlsPort, mtls := portOf(t, plainAddr), portOf(t, tlsAddr), portOf(t, mtlsAddr)
	trusted := []string{"--tls", "--ca", p.caFile, "--server-name", "localhost"}
	asAlice := []string{"--cert", p.aliceCert, "--key", p.aliceKey}

	for _, tc := range []struct {
		name string
		port string
		args []string
		want []string // substrings of stderr
	}{
		{"nothing listening", freePort(t), nil,
			[]string{"connection refused: nothing is listening there", "--port"}},
		{"plain client on a TLS listener", tlsPort, nil,
			[]string{"closed the plain connection right after the login", "answers TLS on this port", "try --tls"}},
		{"TLS client on a plain listener", plain, trusted,
			[]string{"server did not answer TLS (is it a plain listener?"}},
		{"server certificate from an unknown CA", tlsPort, []string{"--tls", "--server-name", "localhost"},
			[]string{"TLS handshake failed", "certificate signed by unknown authority", "--ca"}},
		{"server certificate for another name", tlsPort, []string{"--tls", "--ca", p.caFile, "--server-name", "relay.example.com"},
			[]string{"TLS handshake failed", "--server-name"}},
		{"no client certificate (TLS 1.3)", mtls, trusted,
			[]string{"the server rejected the client certificate", "certificate required", "give --cert and --key"}},
		{"client certificate from another CA (TLS 1.3)", mtls, append(trusted, "--cert", p.strangerCert, "--key", p.strangerKey),
			[]string{"the server rejected the client certificate", "tls_client_ca"}},
		{"no client certificate (TLS 1.2)", tls12Server(t, p), trusted,
			[]string{"TLS handshake failed: remote error: tls:", "give --cert and --key"}},
		{"certificate not matching the ID", mtls, append(trusted, asAlice...),
			[]string{"before the login completed", "the server refused the login", "CN or one of its SANs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "alice"
			if strings.Contains(tc.name, "not matching") {
				id = "mallory"
			}
			args := append([]string{"--port", tc.port, "--client-id", id, "--to-client-id", "bob"}, tc.args...)
			stderr, code := runClient(t, args...)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// A connection that was accepted and later closed (here: kicked by a newer
// login) is not mistaken for a refused login.
func TestClosedAfterLogin(t *testing.T) {
	s, port := startRelay(t)
	cmd := exec.Command(binary, "--port", port, "--client-id", "dup", "--to-client-id", "x")
	stdin, _ := cmd.StdinPipe()
	defer stdin.Close()
	var stderr syncbuf.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitClients(t, s, 1)
	// Kick only once the login is well past the window in which a close
	// reads as a refused login.
	time.Sleep(loginWindow + 200*time.Millisecond)
	dial(t, port, "dup")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Errorf("exit: %v, want a non-zero status", err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("client still running after being kicked")
	}
	for _, w := range []string{"closed by server after the login", "kicked by a newer login"} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("stderr does not say %q: %s", w, stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "relayd-client dev (commit ") {
		t.Errorf("--version = %q, want relayd-client dev (commit ...)", out)
	}
	// The Makefile stamps the version the way relayd's is stamped.
	stamped := filepath.Join(t.TempDir(), "relayd-client")
	if b, err := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3", "-o", stamped, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	var stdout bytes.Buffer
	cmd := exec.Command(stamped, "--version")
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "relayd-client 1.2.3 (commit ") {
		t.Errorf("stamped --version = %q", stdout.String())
	}
}
