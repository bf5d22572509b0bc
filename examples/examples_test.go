// Package examples holds example programs and configurations; this test
// keeps the configurations valid and working.
package examples

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/server"
)

// load copies an example config next to freshly generated certificates
// (what `make certs` does) and loads it.
func load(t *testing.T, name string) (*config.Config, string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "run", "./gencerts", "-dir", filepath.Join(dir, "certs")).CombinedOutput(); err != nil {
		t.Fatalf("gencerts: %v: %s", err, out)
	}
	body, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(name))
	if err := os.WriteFile(path, body, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	return cfg, dir
}

func TestConfigsAreValid(t *testing.T) {
	for _, name := range []string{"multi-listener.toml", "tls.toml", "mtls.toml", "../relayd.toml.example"} {
		t.Run(name, func(t *testing.T) { load(t, name) })
	}
}

// The mTLS example works end to end with the generated certificates: alice
// logs in with her certificate and may use no other name.
func TestMTLSExample(t *testing.T) {
	cfg, dir := load(t, "mtls.toml")
	cfg.Listeners[0].Address = "127.0.0.1:0" // the example's fixed port may be taken
	s := server.New(slog.New(slog.DiscardHandler), nil)
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addrs()["mtls"].String()

	dial := func(id, certName string) (*client.Client, error) {
		caPEM, _ := os.ReadFile(filepath.Join(dir, "certs", "ca.pem"))
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs", certName+".pem"), filepath.Join(dir, "certs", certName+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return client.Dial(ctx, addr, id, &client.Options{
			TLS:       &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}},
			Heartbeat: -1,
		})
	}
	alice, err := dial("alice", "alice")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	// Send to herself until it arrives (no login ack).
	_ = alice.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := alice.Send("alice", []byte("hi me")); err != nil {
		t.Fatal(err)
	}
	if m, err := alice.Recv(); err != nil || string(m.Payload) != "hi me" {
		t.Fatalf("alice: %q, %v", m.Payload, err)
	}

	bobAsAlice, err := dial("alice", "bob")
	if err != nil {
		t.Fatal(err)
	}
	defer bobAsAlice.Close()
	_ = bobAsAlice.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bobAsAlice.Recv(); err == nil {
		t.Fatal("bob logged in as alice")
	}
}
