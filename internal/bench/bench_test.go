package bench

import (
	"context"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

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
	for _, size := range []int{64, 64 << 10} {
		r, err := Throughput(context.Background(), ThroughputConfig{Common: c, Pairs: 3, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		if r.Frames == 0 || r.FramesPerSec <= 0 || r.MBPerSec <= 0 {
			t.Fatalf("%d B: nothing counted: %+v", size, r)
		}
		if r.Drops != 0 || r.Reordered != 0 {
			t.Fatalf("%d B: drops %d, reordered %d", size, r.Drops, r.Reordered)
		}
		if r.ServerCores <= 0 || r.BenchCores <= 0 {
			t.Fatalf("%d B: CPU not measured: %+v", size, r)
		}
	}
	if progress == 0 {
		t.Fatal("no progress reported")
	}
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
	r, err := Direct(context.Background(), ThroughputConfig{
		Common: Common{Warmup: 100 * time.Millisecond, Duration: 300 * time.Millisecond},
		Pairs:  2, Size: 1024,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Mode != "direct" || r.Frames == 0 || r.Drops != 0 || r.Reordered != 0 {
		t.Fatalf("%+v", r)
	}
}
