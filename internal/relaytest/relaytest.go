// Package relaytest starts an in-process relay for tests of the packages
// built on top of the server: one plain listener on a kernel-chosen
// loopback port, built-in defaults otherwise, logs discarded.
package relaytest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/server"
)

// Start runs a relay until the test ends and returns it with its address.
// mod, if not nil, adjusts the listener (limits, TLS) before it starts.
func Start(t testing.TB, mod func(*config.Listener)) (*server.Server, string) {
	t.Helper()
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg.Listeners[0])
	}
	s := server.New(slog.New(slog.DiscardHandler), nil)
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("relay shutdown: %v", err)
		}
	})
	return s, s.Addrs()[cfg.Listeners[0].Name].String()
}

// BuildBinary builds the main package in the current directory into a
// temporary directory, for tests that run the real binary; call it from
// TestMain and remove the directory afterwards.
func BuildBinary(name string) (path, dir string) {
	dir, err := os.MkdirTemp("", name+"-test")
	if err != nil {
		panic(err)
	}
	path = filepath.Join(dir, name)
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		panic(fmt.Sprintf("go build %s: %v\n%s", name, err, out))
	}
	return path, dir
}
