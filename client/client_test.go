package client_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func relay(t *testing.T, idle time.Duration) (*server.Server, string) {
	return relaytest.Start(t, func(l *config.Listener) { l.Limits.IdleTimeout = config.Duration(idle) })
}

func dial(t *testing.T, addr, id string, hb time.Duration) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, id, &client.Options{Heartbeat: hb})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The automatic heartbeats keep an otherwise silent client logged in past
// the server's idle timeout; without them it is closed.
func TestAutomaticHeartbeats(t *testing.T) {
	const idle = 300 * time.Millisecond
	s, addr := relay(t, idle)
	beating := dial(t, addr, "beating", idle/4)
	silent := dial(t, addr, "silent", -1)

	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Recv(); !errors.Is(err, client.ErrServerClosed) {
		t.Fatalf("silent client: %v, want ErrServerClosed", err)
	}
	_ = beating.SetReadDeadline(time.Now().Add(3 * idle))
	_, err := beating.Recv()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("heart-beating client: %v, want it still open", err)
	}
	if hb := s.Stats().Frames.Heartbeats; hb < 4 {
		t.Fatalf("server saw %d heartbeats", hb)
	}
}

func TestSendRecvAndErrors(t *testing.T) {
	_, addr := relay(t, time.Minute)
	a := dial(t, addr, "a", 0)
	if a.ID() != "a" {
		t.Fatalf("ID = %q", a.ID())
	}
	// Frames to oneself always arrive: the login is processed first.
	for _, p := range []string{"one", "", "three"} {
		if err := a.Queue("a", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"one", "", "three"} {
		m, err := a.Recv()
		if err != nil || string(m.Payload) != want || string(m.From) != "a" {
			t.Fatalf("Recv = %q from %q, %v; want %q", m.Payload, m.From, err, want)
		}
	}

	if err := a.Send(string(make([]byte, 256)), nil); err == nil {
		t.Fatal("a 256-byte destination ID was accepted")
	}
	if _, err := client.Dial(context.Background(), addr, "", nil); err == nil {
		t.Fatal("an empty ClientID was accepted")
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Recv(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Recv after Close: %v, want ErrClosed", err)
	}
	if err := a.Close(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
}

// A frame larger than Options.MaxPayload makes Recv fail instead of
// allocating whatever the peer announced.
func TestMaxPayload(t *testing.T) {
	_, addr := relay(t, time.Minute)
	small, err := client.Dial(context.Background(), addr, "small", &client.Options{MaxPayload: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if err := small.Send("small", make([]byte, 11)); err != nil {
		t.Fatal(err)
	}
	_ = small.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := small.Recv(); err == nil {
		t.Fatal("an oversized frame was returned")
	}
}

// Payloads larger than the write buffer are written from where they are
// (only the head is buffered); queued around small frames, every frame
// arrives whole and in order.
func TestLargePayloadsBetweenSmallFrames(t *testing.T) {
	_, addr := relay(t, time.Minute)
	a := dial(t, addr, "a", -1)
	b := dial(t, addr, "b", -1)
	if err := b.Send("b", []byte("probe")); err != nil { // b is registered once it comes back
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Recv(); err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i := range 6 {
		size := 10
		if i%2 == 1 {
			size = 300_000 + i // larger than the 64 KiB write buffer
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i + j)
		}
		if err := a.Queue("b", p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p)
	}
	if err := a.Flush(); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		m, err := b.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Payload) != string(w) {
			t.Fatalf("frame %d: %d bytes, not the %d sent", i, len(m.Payload), len(w))
		}
	}
}
