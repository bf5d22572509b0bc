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

// WriteConfig writes body to path the way an editor that saves by rename
// does: a temporary file in the same directory, renamed into place. A
// config watcher then never reads half a file, which a plain write lets
// it do (it may see the truncation before the new content).
func WriteConfig(t testing.TB, path, body string) {
	t.Helper()
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644) // CreateTemp makes it 0600
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		t.Fatal(err)
	}
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
