//go:build linux

package server

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
)

// parkQuickly makes logged-in connections park after 50 ms of silence.
func parkQuickly(s *Server) { s.idleAfter = 50 * time.Millisecond }

// parkedCount is how many connections the epoll parker holds.
func parkedCount(s *Server) int {
	s.park.mu.Lock()
	defer s.park.mu.Unlock()
	return len(s.park.conns)
}

// Idle plain-TCP connections hold no goroutine: the parker's epoll watches
// them all. Each one wakes for its next frame, and parks again after it.
func TestParkedConnectionsHoldNoGoroutine(t *testing.T) {
	s := startServerWith(t, testConfig(nil), parkQuickly)
	addr := s.Addrs()["plain"].String()
	base := runtime.NumGoroutine()

	const n = 200
	conns := make([]net.Conn, n)
	for i := range conns {
		conns[i] = loginRaw(t, s, addr, fmt.Sprintf("c%d", i))
	}
	eventually(t, "every connection to park", func() bool { return parkedCount(s) == n })
	// Each connection's goroutine has returned; the parker adds one.
	eventually(t, "the read loops to exit", func() bool { return runtime.NumGoroutine() <= base+n/10 })

	// Every parked connection still forwards, both ways, and parks again.
	for i := 0; i < n; i += 2 {
		from, to := conns[i], conns[i+1]
		frame := transferFrame(fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i+1), []byte(fmt.Sprintf("to %d", i+1)))
		mustWrite(t, from, frame)
		readExactly(t, to, frame)
	}
	eventually(t, "the connections to park again", func() bool { return parkedCount(s) == n })
	if g := runtime.NumGoroutine(); g > base+n/10 {
		t.Fatalf("%d goroutines for %d parked connections (%d before they logged in)", g, n, base)
	}
}

// A parked connection notices, without a goroutine of its own, that it was
// kicked, that its client went away, or that the server shuts down; each
// is counted under its reason and leaves the registry consistent.
func TestParkedConnectionsClose(t *testing.T) {
	s := startServerWith(t, testConfig(nil), parkQuickly)
	addr := s.Addrs()["plain"].String()

	kicked := loginRaw(t, s, addr, "dup")
	gone := loginRaw(t, s, addr, "gone")
	staying := loginRaw(t, s, addr, "staying")
	eventually(t, "three connections to park", func() bool { return parkedCount(s) == 3 })

	// Kicked while parked: closed, and the new login owns the ID.
	old, _ := s.reg.Lookup([]byte("dup"))
	successor := dialRaw(t, addr)
	mustWrite(t, successor, loginFrame("dup"))
	waitPeer(t, s, "dup", old)
	waitClosed(t, kicked, 5*time.Second)
	frame := transferFrame("staying", "dup", []byte("for the successor"))
	mustWrite(t, staying, frame)
	readExactly(t, successor, frame)

	// The client closes while parked: the server unregisters it.
	eofs := disconnects(s, ReasonEOF)
	gone.Close()
	eventually(t, "the closed client to be unregistered", func() bool {
		_, ok := s.reg.Lookup([]byte("gone"))
		return !ok
	})
	if disconnects(s, ReasonEOF) != eofs+1 {
		t.Fatalf("eof disconnects went from %d to %d", eofs, disconnects(s, ReasonEOF))
	}
	if disconnects(s, ReasonKicked) != 1 {
		t.Fatalf("kicked disconnects = %d", disconnects(s, ReasonKicked))
	}

	// Shutdown with parked connections: all close, and Shutdown returns.
	eventually(t, "the survivors to park", func() bool { return parkedCount(s) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with parked connections: %v", err)
	}
	waitClosed(t, staying, time.Second)
	waitClosed(t, successor, time.Second)
	if got := disconnects(s, ReasonShutdown); got != 2 {
		t.Fatalf("shutdown disconnects = %d, want 2", got)
	}
}

// TLS connections park on a goroutine (the TLS layer may hold bytes no
// epoll event announces) and still forward after waking.
func TestParkedTLSConnectionsUseAGoroutine(t *testing.T) {
	p := newPKI(t)
	s := startServerWith(t, configWith(listenerCfg("tls", func(l *config.Listener) { l.TLSCert, l.TLSKey = p.cert, p.key })), parkQuickly)
	addr := s.Addrs()["tls"].String()

	before := s.idleParks.Load()
	a, err := dialOpts(t, s, addr, "a", &client.Options{TLS: p.clientTLS(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := dialOpts(t, s, addr, "b", &client.Options{TLS: p.clientTLS(t, "")})
	if err != nil {
		t.Fatal(err)
	}
	waitOnline(t, s, "a")
	waitOnline(t, s, "b")
	eventually(t, "both to park", func() bool { return s.idleParks.Load() >= before+2 })
	if n := parkedCount(s); n != 0 {
		t.Fatalf("%d TLS connections parked on epoll", n)
	}
	if err := a.Send("b", []byte("after a nap")); err != nil {
		t.Fatal(err)
	}
	if got := recvPayload(t, b); got != "after a nap" {
		t.Fatalf("b got %q", got)
	}
}

// The parker's deadline heap keeps every connection's index right through
// pushes, early removals and expiries: an index gone wrong would remove
// the wrong connection and leave another parked past its deadline.
func TestParkDeadlinesHeap(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var d deadlines
	in := map[*conn]int64{}
	check := func() {
		t.Helper()
		if len(d) != len(in) {
			t.Fatalf("%d in the heap, want %d", len(d), len(in))
		}
		for i, e := range d {
			if int(e.c.parkIndex) != i || in[e.c] != e.at {
				t.Fatalf("entry %d: index %d, at %d, want %d", i, e.c.parkIndex, e.at, in[e.c])
			}
		}
	}
	for range 2000 {
		switch op := rng.IntN(3); {
		case op == 0 || len(d) == 0:
			c := &conn{parkIndex: -1}
			at := rng.Int64N(1000)
			heap.Push(&d, parked{at, c})
			in[c] = at
		case op == 1: // woken early
			c := d[rng.IntN(len(d))].c
			heap.Remove(&d, int(c.parkIndex))
			if c.parkIndex != -1 {
				t.Fatalf("removed connection keeps index %d", c.parkIndex)
			}
			delete(in, c)
		default: // expired: the earliest goes
			for _, at := range in {
				if at < d[0].at {
					t.Fatalf("%d is due before the top's %d", at, d[0].at)
				}
			}
			e := heap.Pop(&d).(parked)
			delete(in, e.c)
		}
		check()
	}
}
