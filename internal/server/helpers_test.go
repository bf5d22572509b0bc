package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/wait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLogger discards logs unless RELAYD_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("RELAYD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// testConfig is the default configuration with one listener on a kernel-chosen
// loopback port.
func testConfig(mod func(*config.Limits)) *config.Config {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg.Limits)
		mod(&cfg.Listeners[0].Limits)
	}
	return cfg
}

// startServer runs a server until the test ends, and checks it leaves no
// goroutine behind.
func startServer(t *testing.T, cfg *config.Config) *Server {
	t.Helper()
	return startServerWith(t, cfg, nil)
}

// startServerWith is startServer with set applied to the server before it
// starts listening.
func startServerWith(t *testing.T, cfg *config.Config, set func(*Server)) *Server {
	t.Helper()
	s := New(testLogger(), nil)
	if set != nil {
		set(s)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		// Cleanups run last-in first-out: the test's clients are closed by now.
		goleak.VerifyNone(t)
	})
	return s
}

func startDefault(t *testing.T, mod func(*config.Limits)) (*Server, string) {
	t.Helper()
	s := startServer(t, testConfig(mod))
	return s, s.Addrs()["plain"].String()
}

// eventually polls cond until it holds or 10 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

// waitOnline waits until id is registered, since the protocol has no login ack.
func waitOnline(t *testing.T, s *Server, id string) {
	t.Helper()
	eventually(t, id+" is logged in", func() bool {
		_, ok := s.reg.Lookup([]byte(id))
		return ok
	})
}

// waitPeer waits until id is registered to a connection other than old.
func waitPeer(t *testing.T, s *Server, id string, old any) {
	t.Helper()
	eventually(t, id+" is logged in anew", func() bool {
		p, ok := s.reg.Lookup([]byte(id))
		return ok && p != old
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func loginRaw(t *testing.T, s *Server, addr, id string) net.Conn {
	t.Helper()
	c := dialRaw(t, addr)
	mustWrite(t, c, loginFrame(id))
	waitOnline(t, s, id)
	return c
}

func dialClient(t *testing.T, s *Server, addr, id string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, id, &client.Options{Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	waitOnline(t, s, id)
	return c
}

func loginFrame(id string) []byte {
	b, err := protocol.AppendLogin(nil, id)
	if err != nil {
		panic(err)
	}
	return b
}

func transferFrame(from, to string, payload []byte) []byte {
	b, err := protocol.AppendTransfer(nil, from, to, payload)
	if err != nil {
		panic(err)
	}
	return b
}

func seqPayload(i uint64, size int) []byte {
	p := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(p, i)
	return p
}

func mustWrite(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readExactly reads len(want) bytes and compares them.
func readExactly(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
}

// waitClosed waits until the server closes c, failing if c receives data.
func waitClosed(t *testing.T, c net.Conn, within time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	switch {
	case n > 0:
		t.Fatalf("received data %q on a connection that should be closed", b[:n])
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open after %v", within)
	case err == nil:
		t.Fatal("read returned neither data nor error")
	}
}

// expectOpen checks that nothing closes c within d.
func expectOpen(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection ended early: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
}

func disconnects(s *Server, r Reason) uint64 { return s.Stats().Disconnects[r] }

// readFrame reads one whole transfer frame, header to payload, exactly as
// it came.
func readFrame(t *testing.T, c net.Conn) []byte {
	t.Helper()
	read := func(f []byte, n int) []byte {
		t.Helper()
		f = append(f, make([]byte, n)...)
		if _, err := io.ReadFull(c, f[len(f)-n:]); err != nil {
			t.Fatalf("reading a frame: %v", err)
		}
		return f
	}
	f := read(nil, protocol.HeaderLen+1)
	f = read(f, int(f[len(f)-1])+1) // FromClientID, ToClientIDLen
	f = read(f, int(f[len(f)-1])+4) // ToClientID, PayloadLen
	return read(f, int(binary.BigEndian.Uint32(f[len(f)-4:])))
}
