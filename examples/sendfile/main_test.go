package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/server"
)

func TestSendFileThroughRelay(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	s := server.New(slog.New(slog.DiscardHandler), nil)
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())

	dir := t.TempDir()
	in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out")
	data := make([]byte, 3<<20+12345) // not a multiple of the chunk size
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(s.Addrs()["plain"].String(), in, out); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(data))
	}
}
