package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func relay(t *testing.T) Common {
	_, addr := relaytest.Start(t, nil)
	return Common{
		Addr:      addr,
		ServerPID: os.Getpid(), // the relay runs in this process
		Warmup:    100 * time.Millisecond,
		Duration:  400 * time.Millisecond,
	}
}

func TestThroughput(t *testing.T) {
	c := relay(t)
	var progress int
	c.Duration = 1200 * time.Millisecond
	c.Progress = func(string) { progress++ }
	for _, tc := range []struct {
		size int
		open bool
	}{{64, true}, {64 << 10, true}, {64, false}, {64 << 10, false}} {
		r, err := Throughput(context.Background(), ThroughputConfig{Common: c, Pairs: 3, Size: tc.size, OpenLoop: tc.open})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%d B, %s loop", tc.size, r.Loop)
		if r.Loop != map[bool]string{true: "open", false: "closed"}[tc.open] {
			t.Fatalf("%s: loop %q", name, r.Loop)
		}
		if r.Frames == 0 || r.FramesPerSec <= 0 || r.MBPerSec <= 0 {
			t.Fatalf("%s: nothing counted: %+v", name, r)
		}
		if r.Drops != 0 || r.Gaps != 0 || r.Reordered != 0 || r.Sent != r.Received || r.Sent < r.Frames {
			t.Fatalf("%s: sent %d, received %d, drops %d, gaps %d, reordered %d", name, r.Sent, r.Received, r.Drops, r.Gaps, r.Reordered)
		}
		if r.ServerCores <= 0 || r.BenchCores <= 0 {
			t.Fatalf("%s: CPU not measured: %+v", name, r)
		}
	}
	if progress == 0 {
		t.Fatal("no progress reported")
	}
}

// A relay that loses one frame and swaps two is caught: the drop shows as
// a gap and as a frame sent and never received, the swap as a reordering.
func TestThroughputCountsLossAndReordering(t *testing.T) {
	addr := faultyRelay(t, func(seq uint64) action {
		switch seq {
		case 1000:
			return drop
		case 2000:
			return hold // sent after the next one
		}
		return pass
	})
	r, err := Throughput(context.Background(), ThroughputConfig{
		Common: Common{Addr: addr, Warmup: 50 * time.Millisecond, Duration: 300 * time.Millisecond},
		Pairs:  1, Size: 64, OpenLoop: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent < 3000 {
		t.Fatalf("only %d frames sent: the faults were not reached", r.Sent)
	}
	if r.Drops != 1 || r.Gaps != 2 || r.Reordered != 1 {
		// The held frame arrives late: its slot is a gap that the late
		// arrival does not fill, as a receiver counting sequence sees it.
		t.Fatalf("drops %d (want 1), gaps %d (want 2), reordered %d (want 1); %+v", r.Drops, r.Gaps, r.Reordered, r)
	}
}

type action int

const (
	pass action = iota
	drop
	hold
)

// faultyRelay is a minimal RELY relay that does to each frame (by its
// sequence number) what fault says.
func faultyRelay(t *testing.T, fault func(seq uint64) action) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	online := map[string]net.Conn{}
	var wg sync.WaitGroup
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := protocol.NewReader(bufio.NewReader(c), protocol.Fixed(1<<20))
				var held []byte
				for {
					f, err := r.Next()
					if err != nil {
						return
					}
					if f.Cmd == protocol.CmdLogin {
						mu.Lock()
						online[string(f.ID)] = c
						mu.Unlock()
						continue
					}
					if f.IsHeartbeat() {
						continue
					}
					out := append([]byte(nil), f.Raw...)
					switch fault(binary.BigEndian.Uint64(f.Payload)) {
					case drop:
						continue
					case hold:
						held = out
						continue
					}
					mu.Lock()
					to := online[string(f.To)]
					mu.Unlock()
					if to != nil {
						_, _ = to.Write(out)
						if held != nil {
							_, _ = to.Write(held)
							held = nil
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestLatency(t *testing.T) {
	c := relay(t)
	for _, rate := range []float64{0, 2000} {
		r, err := Latency(context.Background(), LatencyConfig{Common: c, Pairs: 2, Size: 64, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		if r.Samples == 0 || r.P50 <= 0 || r.P50 > r.P99 || r.P99 > r.P999 || r.P999 > r.Max {
			t.Fatalf("rate %v: implausible percentiles: %+v", rate, r)
		}
		if want := map[bool]string{true: "closed", false: "open"}[rate == 0]; r.Loop != want {
			t.Fatalf("loop = %s, want %s", r.Loop, want)
		}
	}
}

func TestIdle(t *testing.T) {
	c := relay(t)
	r, err := Idle(context.Background(), IdleConfig{Common: c, Conns: 300, Heartbeat: time.Second, Parallel: 8})
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns != 300 || r.ServerRSSStart <= 0 || r.ServerRSSEnd <= 0 {
		t.Fatalf("%+v", r)
	}
	if _, err := Idle(context.Background(), IdleConfig{Common: Common{Addr: c.Addr}, Conns: 1}); err == nil {
		t.Fatal("idle without a server PID was accepted")
	}
}

func TestDirect(t *testing.T) {
	for _, open := range []bool{true, false} {
		r, err := Direct(context.Background(), ThroughputConfig{
			Common: Common{Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond},
			Pairs:  2, Size: 1024, OpenLoop: open,
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Mode != "direct" || r.Frames == 0 || r.Drops != 0 || r.Gaps != 0 || r.Reordered != 0 || r.Sent != r.Received {
			t.Fatalf("open loop %v: %+v", open, r)
		}
	}
}
