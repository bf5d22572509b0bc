package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/server"
)

// BenchmarkForward measures frames relayed over loopback between open-loop
// sender → receiver pairs through the real client library: frames/s and MB/s of
// payload counted at the receivers, and allocations per frame across server
// and clients. With metrics=on, a goroutine scrapes the Prometheus registry
// every 100ms (150 times Prometheus' default rate) during the run.
//
//	go test -run=^$ -bench=Forward -benchmem -count=5 ./internal/server
func BenchmarkForward(b *testing.B) {
	for _, pairs := range []int{1, 16} {
		for _, size := range []int{64, 64 << 10} {
			for _, scrape := range []bool{false, true} {
				name := fmt.Sprintf("pairs=%d/payload=%s/metrics=%s", pairs, sizeName(size), map[bool]string{false: "off", true: "on"}[scrape])
				b.Run(name, func(b *testing.B) { benchForward(b, pairs, size, scrape) })
			}
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

func benchForward(b *testing.B, pairs, size int, scrape bool) {
	cfg := config.Default()
	cfg.Listeners[0].Address = "127.0.0.1:0"
	cfg.Listeners[0].Limits.MaxPayload = config.Size(size)
	s := server.New(slog.New(slog.DiscardHandler), nil)
	if err := s.Apply(cfg); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addrs()["plain"].String()
	if scrape {
		reg := metrics.NewRegistry(metrics.Sources{
			Server:  s.Stats,
			Reloads: func() metrics.ReloadStats { return metrics.ReloadStats{} },
		})
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					if _, err := reg.Gather(); err != nil {
						b.Error(err)
					}
				}
			}
		}()
	}

	// Open loop: senders write as fast as TCP lets them, through the
	// client's buffered writer, with no flow control of their own; relayd
	// paces them to their receivers (rule 9), so no frame may be dropped.
	type pair struct {
		snd, rcv *client.Client
	}
	ps := make([]*pair, pairs)
	ctx := context.Background()
	for i := range ps {
		snd, err := client.Dial(ctx, addr, fmt.Sprintf("s%d", i), &client.Options{Heartbeat: -1})
		if err != nil {
			b.Fatal(err)
		}
		rcv, err := client.Dial(ctx, addr, fmt.Sprintf("r%d", i), &client.Options{Heartbeat: -1, MaxPayload: size})
		if err != nil {
			b.Fatal(err)
		}
		ps[i] = &pair{snd: snd, rcv: rcv}
		defer snd.Close()
		defer rcv.Close()
	}
	for s.Stats().Clients < 2*pairs { // no login ack: wait until all are registered
		time.Sleep(time.Millisecond)
	}

	perPair := b.N/pairs + 1
	payload := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for n := 0; n < perPair; n++ {
				if _, err := p.rcv.Recv(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			to := fmt.Sprintf("r%d", i)
			for n := 0; n < perPair; n++ {
				if err := p.snd.Queue(to, payload); err != nil {
					b.Error(err)
					return
				}
			}
			if err := p.snd.Flush(); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	elapsed := b.Elapsed()
	frames := float64(perPair * pairs)
	b.ReportMetric(frames/elapsed.Seconds(), "frames/s")
	st := s.Stats()
	for _, d := range st.Frames.Dropped {
		if d != 0 {
			b.Fatalf("dropped frames: %v", st.Frames.Dropped)
		}
	}
	b.ReportMetric(float64(st.Frames.Waits)/frames, "waits/frame")
}
