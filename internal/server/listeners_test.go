package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/testcert"
)

// pki is a CA with a server certificate and client certificates on disk.
type pki struct {
	ca                     *testcert.CA
	caPath, cert, key, dir string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := testcert.NewCA("relayd test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.Server("relayd")
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{ca: ca, dir: dir}
	if p.cert, p.key, err = srv.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	if p.caPath, err = ca.Write(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	return p
}

// clientTLS returns a client TLS config trusting the CA, with a client
// certificate for cn and sans when cn is not empty.
func (p *pki) clientTLS(t *testing.T, cn string, sans ...string) *tls.Config {
	t.Helper()
	tc := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "localhost"}
	if cn != "" {
		leaf, err := p.ca.Client(cn, sans...)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := leaf.TLS()
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc
}

func listenerCfg(name string, mod func(*config.Listener)) config.Listener {
	l := config.Listener{Name: name, Address: "127.0.0.1:0", Limits: config.Default().Limits}
	if mod != nil {
		mod(&l)
	}
	return l
}

func configWith(ls ...config.Listener) *config.Config {
	c := config.Default()
	c.Listeners = ls
	return c
}

func dialOpts(t *testing.T, s *Server, addr, id string, opts *client.Options) (*client.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if opts == nil {
		opts = &client.Options{}
	}
	opts.Heartbeat = -1
	c, err := client.Dial(ctx, addr, id, opts)
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

func recvPayload(t *testing.T, c *client.Client) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := c.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	return string(m.Payload)
}

// All listeners share one registry: frames cross listeners, and a login on
// one listener kicks the same ID on another.
func TestListenersShareOneRegistry(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, configWith(
		listenerCfg("plain", nil),
		listenerCfg("tls", func(l *config.Listener) { l.TLSCert, l.TLSKey = p.cert, p.key }),
	))
	addrs := s.Addrs()
	alice, err := dialOpts(t, s, addrs["plain"].String(), "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := dialOpts(t, s, addrs["tls"].String(), "bob", &client.Options{TLS: p.clientTLS(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	waitOnline(t, s, "alice")
	waitOnline(t, s, "bob")
	if err := alice.Send("bob", []byte("plain to tls")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, bob); got != "plain to tls" {
		t.Fatalf("bob got %q", got)
	}
	if err := bob.Send("alice", []byte("tls to plain")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, alice); got != "tls to plain" {
		t.Fatalf("alice got %q", got)
	}

	// bob logs in again on the plain listener: the TLS connection is kicked.
	old, _ := s.reg.Lookup([]byte("bob"))
	bob2, err := dialOpts(t, s, addrs["plain"].String(), "bob", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitPeer(t, s, "bob", old)
	_ = bob.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bob.Recv(); !errors.Is(err, client.ErrServerClosed) {
		t.Fatalf("old bob: %v, want ErrServerClosed", err)
	}
	if err := alice.Send("bob", []byte("to the new bob")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, bob2); got != "to the new bob" {
		t.Fatalf("new bob got %q", got)
	}
}

func TestTLSHandshakeCountsTowardLoginTimeout(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, configWith(listenerCfg("tls", func(l *config.Listener) {
		l.TLSCert, l.TLSKey = p.cert, p.key
		l.Limits.LoginTimeout = config.Duration(300 * time.Millisecond)
	})))
	addr := s.Addrs()["tls"].String()
	silent := dialRaw(t, addr) // never starts the handshake
	waitClosed(t, silent, 5*time.Second)
	eventually(t, "a login timeout", func() bool { return disconnects(s, ReasonLoginTimeout) == 1 })

	plain := dialRaw(t, addr) // speaks RELY in clear to a TLS listener
	mustWrite(t, plain, loginFrame("x"))
	waitClosed(t, plain, 5*time.Second)
}

func TestTLSRefusesOldVersions(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, configWith(listenerCfg("tls", func(l *config.Listener) { l.TLSCert, l.TLSKey = p.cert, p.key })))
	tc := p.clientTLS(t, "")
	// Go clients refuse TLS < 1.2 by default; allow it here so that only
	// the server can say no.
	tc.MinVersion, tc.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, err := dialOpts(t, s, s.Addrs()["tls"].String(), "old", &client.Options{TLS: tc}); err == nil {
		t.Fatal("TLS 1.1 handshake succeeded")
	}
	tc.MaxVersion = tls.VersionTLS12 // and 1.2 is accepted
	if _, err := dialOpts(t, s, s.Addrs()["tls"].String(), "new", &client.Options{TLS: tc}); err != nil {
		t.Fatalf("TLS 1.2 refused: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, configWith(listenerCfg("mtls", func(l *config.Listener) {
		l.TLSCert, l.TLSKey, l.TLSClientCA = p.cert, p.key, p.caPath
	})))
	addr := s.Addrs()["mtls"].String()

	c, err := dialOpts(t, s, addr, "anyone", &client.Options{TLS: p.clientTLS(t, "device-1")})
	if err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	waitOnline(t, s, "anyone") // without client_id_from_cert any ID is fine
	_ = c

	// Without a certificate, or with one from another CA, there is no session.
	noCert, err := dialOpts(t, s, addr, "nocert", &client.Options{TLS: p.clientTLS(t, "")})
	if err == nil {
		_ = noCert.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = noCert.Recv()
	}
	if err == nil {
		t.Fatal("a client without a certificate got a session")
	}
	other := newPKI(t)
	foreign := other.clientTLS(t, "intruder")
	foreign.RootCAs = p.ca.Pool()
	fc, err := dialOpts(t, s, addr, "intruder", &client.Options{TLS: foreign})
	if err == nil {
		_ = fc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = fc.Recv()
	}
	if err == nil {
		t.Fatal("a client with a foreign certificate got a session")
	}
	if _, ok := s.reg.Lookup([]byte("nocert")); ok {
		t.Fatal("client without certificate is logged in")
	}
	if _, ok := s.reg.Lookup([]byte("intruder")); ok {
		t.Fatal("client with a foreign certificate is logged in")
	}
}

// With client_id_from_cert the login ID must be the certificate's CN or a
// SAN: one client cannot impersonate or kick another.
func TestClientIDFromCert(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, configWith(listenerCfg("mtls", func(l *config.Listener) {
		l.TLSCert, l.TLSKey, l.TLSClientCA = p.cert, p.key, p.caPath
		l.ClientIDFromCert = true
	})))
	addr := s.Addrs()["mtls"].String()

	alice, err := dialOpts(t, s, addr, "alice", &client.Options{TLS: p.clientTLS(t, "alice")})
	if err != nil {
		t.Fatal(err)
	}
	waitOnline(t, s, "alice")
	// A SAN works as well as the CN.
	if _, err := dialOpts(t, s, addr, "bob-laptop", &client.Options{TLS: p.clientTLS(t, "bob", "bob-laptop")}); err != nil {
		t.Fatal(err)
	}
	waitOnline(t, s, "bob-laptop")

	// mallory holds a valid certificate, but not alice's.
	before := disconnects(s, ReasonProtocolError)
	mallory, err := dialOpts(t, s, addr, "alice", &client.Options{TLS: p.clientTLS(t, "mallory")})
	if err != nil {
		t.Fatal(err)
	}
	_ = mallory.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := mallory.Recv(); !errors.Is(err, client.ErrServerClosed) {
		t.Fatalf("impersonation: %v, want the connection closed", err)
	}
	eventually(t, "the impersonation to be refused", func() bool { return disconnects(s, ReasonProtocolError) == before+1 })
	if s.Stats().Kicks != 0 {
		t.Fatal("the impersonator kicked alice")
	}
	if err := alice.Send("alice", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, alice); got != "still here" {
		t.Fatalf("alice got %q", got)
	}
}

func TestMaxConnections(t *testing.T) {
	s := startServer(t, configWith(listenerCfg("plain", func(l *config.Listener) { l.Limits.MaxConnections = 3 })))
	addr := s.Addrs()["plain"].String()
	var kept []net.Conn
	for i := 0; i < 3; i++ {
		kept = append(kept, loginRaw(t, s, addr, string(rune('a'+i))))
	}
	over := dialRaw(t, addr)
	waitClosed(t, over, 5*time.Second)
	if disconnects(s, ReasonLimit) != 1 {
		t.Fatalf("limit disconnects = %d", disconnects(s, ReasonLimit))
	}
	for _, c := range kept { // existing connections are untouched
		expectOpen(t, c, 20*time.Millisecond)
	}
	// A slot frees up when one leaves.
	kept[0].Close()
	eventually(t, "a slot to free up", func() bool { return s.Stats().Listeners[0].Connections == 2 })
	loginRaw(t, s, addr, "d")
}

func TestMaxConnectionsPerIP(t *testing.T) {
	s := startServer(t, configWith(listenerCfg("plain", func(l *config.Listener) {
		l.Address = "127.0.0.1:0"
		l.Limits.MaxConnectionsPerIP = 2
	})))
	addr := s.Addrs()["plain"].String()
	a := loginRaw(t, s, addr, "a")
	loginRaw(t, s, addr, "b")
	over := dialRaw(t, addr)
	waitClosed(t, over, 5*time.Second)
	expectOpen(t, a, 20*time.Millisecond)

	// Another source address (127.0.0.2 is loopback too) has its own quota.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	other, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	defer other.Close()
	mustWrite(t, other, loginFrame("c"))
	waitOnline(t, s, "c")
}

func TestIPv6Listener(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	s := startServer(t, configWith(listenerCfg("v6", func(l *config.Listener) { l.Address = "[::1]:0" })))
	addr := s.Addrs()["v6"].String()
	if !strings.HasPrefix(addr, "[::1]:") {
		t.Fatalf("bound %s", addr)
	}
	c := loginRaw(t, s, addr, "v6")
	frame := transferFrame("v6", "v6", []byte("over IPv6"))
	mustWrite(t, c, frame)
	readExactly(t, c, frame)
}

func TestBindFailureNamesListenerAndAddress(t *testing.T) {
	busy, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s := New(testLogger(), nil)
	defer s.Shutdown(context.Background())
	err = s.Apply(configWith(
		listenerCfg("first", nil),
		listenerCfg("second", func(l *config.Listener) { l.Address = busy.Addr().String() }),
	))
	if err == nil || !strings.Contains(err.Error(), `listener "second"`) || !strings.Contains(err.Error(), busy.Addr().String()) {
		t.Fatalf("err = %v", err)
	}
	if len(s.Addrs()) != 0 {
		t.Fatalf("a failed start left listeners running: %v", s.Addrs())
	}
}

// Apply is all-or-nothing, keeps unchanged listeners and their connections,
// and new limits reach existing connections.
func TestApply(t *testing.T) {
	p := newPKI(t)
	keep := listenerCfg("keep", nil)
	gone := listenerCfg("gone", nil)
	s := startServer(t, configWith(keep, gone))
	addrs := s.Addrs()
	// Pin the kernel-chosen ports so the next configs name the same addresses.
	keep.Address, gone.Address = addrs["keep"].String(), addrs["gone"].String()

	a := dialClient(t, s, keep.Address, "a")
	b := dialClient(t, s, keep.Address, "b")
	g := loginRaw(t, s, gone.Address, "g")

	t.Run("failure leaves everything as it was", func(t *testing.T) {
		busy, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		broken := []*config.Config{
			configWith(keep, gone, listenerCfg("new", func(l *config.Listener) { l.Address = busy.Addr().String() })),
			configWith(keep, listenerCfg("tls", func(l *config.Listener) {
				l.TLSCert, l.TLSKey = filepath.Join(p.dir, "missing.pem"), p.key
			})),
		}
		for _, cfg := range broken {
			if err := s.Apply(cfg); err == nil {
				t.Fatal("broken config applied")
			}
			if got := s.Addrs(); len(got) != 2 || got["keep"].String() != keep.Address || got["gone"].String() != gone.Address {
				t.Fatalf("listeners after a failed apply: %v", got)
			}
			expectOpen(t, g, 20*time.Millisecond)
		}
	})

	t.Run("limits reach existing connections", func(t *testing.T) {
		small := keep
		small.Limits.MaxPayload = 1000
		if err := s.Apply(configWith(small, gone)); err != nil {
			t.Fatal(err)
		}
		if err := a.Send("b", make([]byte, 1000)); err != nil {
			t.Fatal(err)
		}
		if got := recvPayload(t, b); len(got) != 1000 {
			t.Fatalf("b got %d bytes", len(got))
		}
		before := disconnects(s, ReasonProtocolError)
		if err := b.Send("a", make([]byte, 1001)); err != nil { // over the new limit
			t.Fatal(err)
		}
		eventually(t, "the oversized frame to close b", func() bool { return disconnects(s, ReasonProtocolError) == before+1 })
	})

	t.Run("removed listener closes its connections, added one accepts", func(t *testing.T) {
		added := listenerCfg("added", func(l *config.Listener) { l.TLSCert, l.TLSKey = p.cert, p.key })
		if err := s.Apply(configWith(keep, added)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, g, 5*time.Second)
		eventually(t, "listener_removed to be counted", func() bool { return disconnects(s, ReasonListenerRemoved) == 1 })
		if _, err := net.DialTimeout("tcp", gone.Address, time.Second); err == nil {
			t.Fatal("the removed listener still accepts")
		}
		n, err := dialOpts(t, s, s.Addrs()["added"].String(), "n", &client.Options{TLS: p.clientTLS(t, "")})
		if err != nil {
			t.Fatal(err)
		}
		waitOnline(t, s, "n")
		if err := n.Send("a", []byte("from the new listener")); err != nil {
			t.Fatal(err)
		}
		if got := recvPayload(t, a); got != "from the new listener" {
			t.Fatalf("a got %q", got)
		}
	})

	t.Run("certificates are re-read", func(t *testing.T) {
		// Replace the files behind the same paths with a certificate from a new CA.
		ca2, _ := testcert.NewCA("second CA")
		leaf, _ := ca2.Server("relayd")
		if err := os.WriteFile(p.cert, leaf.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p.key, leaf.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		added := listenerCfg("added", func(l *config.Listener) {
			l.Address = s.Addrs()["added"].String()
			l.TLSCert, l.TLSKey = p.cert, p.key
		})
		if err := s.Apply(configWith(keep, added)); err != nil {
			t.Fatal(err)
		}
		if _, err := dialOpts(t, s, added.Address, "old-ca", &client.Options{TLS: p.clientTLS(t, "")}); err == nil {
			t.Fatal("the old certificate is still served")
		}
		tc := &tls.Config{RootCAs: ca2.Pool(), ServerName: "localhost"}
		if _, err := dialOpts(t, s, added.Address, "new-ca", &client.Options{TLS: tc}); err != nil {
			t.Fatalf("the new certificate is not served: %v", err)
		}
	})

	// a stayed connected on the unchanged listener through all of it.
	if err := a.Send("a", []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, a); got != "still here" {
		t.Fatalf("a got %q", got)
	}
}

// A reload that only renames a listener keeps its socket and connections;
// one that moves it to another address on the same port says it needs a
// restart, and changes nothing.
func TestReloadRenamesAndMoves(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s := startServer(t, configWith(listenerCfg("old", func(l *config.Listener) { l.Address = addr })))
	a := loginRaw(t, s, addr, "a")

	if err := s.Apply(configWith(listenerCfg("new", func(l *config.Listener) { l.Address = addr }))); err != nil {
		t.Fatalf("renaming: %v", err)
	}
	if _, ok := s.Addrs()["new"]; !ok {
		t.Fatalf("listeners after the rename: %v", s.Addrs())
	}
	b := loginRaw(t, s, addr, "b")
	frame := transferFrame("b", "a", []byte("still here"))
	mustWrite(t, b, frame)
	readExactly(t, a, frame)
	if cl := s.Clients("a"); len(cl) != 1 || cl[0].Listener != "new" {
		t.Fatalf("clients = %+v, want a on the renamed listener", cl)
	}

	err = s.Apply(configWith(listenerCfg("new", func(l *config.Listener) { l.Address = fmt.Sprintf("0.0.0.0:%d", port) })))
	if err == nil || !strings.Contains(err.Error(), "needs a restart") {
		t.Fatalf("moving to 0.0.0.0 on the same port: %v, want an error saying it needs a restart", err)
	}
	mustWrite(t, b, frame)
	readExactly(t, a, frame)
}
