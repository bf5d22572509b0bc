package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/client"
)

// maxSamples bounds the latency samples kept per pair.
const maxSamples = 1 << 20

// LatencyConfig describes a latency run.
type LatencyConfig struct {
	Common
	Pairs int
	Size  int     // payload bytes, at least 16
	Rate  float64 // 0: closed loop (ping-pong); > 0: open loop at this many frames/s in all
}

// LatencyResult holds percentiles in microseconds: round trips for the
// closed loop, one-way latency from the scheduled send time for the open loop.
type LatencyResult struct {
	Mode      string  `json:"mode"`
	Loop      string  `json:"loop"` // closed | open
	Transport string  `json:"transport"`
	CrossNode bool    `json:"cross_node,omitempty"` // the echoing (or receiving) end on another relay
	Pairs     int     `json:"pairs"`
	Size      int     `json:"payload_bytes"`
	Rate      float64 `json:"rate,omitempty"`
	Samples   int     `json:"samples"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	P999      float64 `json:"p999_us"`
	Max       float64 `json:"max_us"`
	Mean      float64 `json:"mean_us"`
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// waitClosed waits until ch is closed, a worker fails, or 10 seconds pass.
func waitClosed(ctx context.Context, ch <-chan struct{}, errc <-chan error) error {
	select {
	case <-ch:
		return nil
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		return errors.New("timed out")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Latency measures round trips (Rate 0) or one-way latency at a fixed rate.
func Latency(ctx context.Context, cfg LatencyConfig) (*LatencyResult, error) {
	if cfg.Size < 16 {
		return nil, errors.New("payload size must be at least 16 bytes")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := runID()
	var clients []*client.Client
	var wg sync.WaitGroup
	defer func() {
		cancel()
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()
	errc := make(chan error, 2*cfg.Pairs)
	var measuring atomic.Bool
	samples := make([][]time.Duration, cfg.Pairs)
	var mu sync.Mutex // guards samples' slices while they are read at the end

	for i := 0; i < cfg.Pairs; i++ {
		aID, bID := fmt.Sprintf("bench-%s-a%d", id, i), fmt.Sprintf("bench-%s-b%d", id, i)
		a, err := dial(ctx, cfg.sendEnd(), aID, &client.Options{ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10}, nil)
		if err != nil {
			return nil, err
		}
		clients = append(clients, a)
		b, err := dial(ctx, cfg.recvEnd(), bID, &client.Options{ReadBufferSize: 4 << 10, WriteBufferSize: 4 << 10}, nil)
		if err != nil {
			return nil, err
		}
		clients = append(clients, b)
		record := func(d time.Duration) {
			if measuring.Load() && len(samples[i]) < maxSamples {
				mu.Lock()
				samples[i] = append(samples[i], d)
				mu.Unlock()
			}
		}
		fail := func(err error) {
			if ctx.Err() == nil {
				errc <- err
			}
		}
		online := make(chan struct{})
		var once sync.Once

		if cfg.Rate == 0 {
			// Closed loop: b echoes to a; a sends the next ping when the
			// previous one is back.
			wg.Add(2)
			go func() {
				defer wg.Done()
				for {
					m, err := b.Recv()
					if err != nil {
						fail(err)
						return
					}
					if err := b.Send(aID, m.Payload); err != nil {
						fail(err)
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				// No login ack: probe until the first echo comes back.
				probe := make([]byte, cfg.Size)
				binary.BigEndian.PutUint64(probe, probeSeq)
				for {
					if err := a.Send(bID, probe); err != nil {
						fail(err)
						return
					}
					_ = a.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
					if _, err := a.Recv(); err == nil {
						break
					} else if ctx.Err() != nil || !isTimeout(err) {
						fail(err)
						return
					}
				}
				_ = a.SetReadDeadline(time.Time{})
				close(online)

				ping := make([]byte, cfg.Size)
				for seq := uint64(0); ctx.Err() == nil; seq++ {
					binary.BigEndian.PutUint64(ping, seq)
					start := time.Now()
					if err := a.Send(bID, ping); err != nil {
						fail(err)
						return
					}
					for {
						m, err := a.Recv()
						if err != nil {
							fail(err)
							return
						}
						if binary.BigEndian.Uint64(m.Payload) == seq {
							break // echoes of extra probes are skipped
						}
					}
					record(time.Since(start))
				}
			}()
			if err := waitClosed(ctx, online, errc); err != nil {
				return nil, fmt.Errorf("%s never came online: %w", bID, err)
			}
			continue
		}

		// Open loop: a sends on a fixed schedule, b timestamps arrivals
		// against the scheduled send time, so a stall shows in the figures
		// instead of slowing the sender (no coordinated omission).
		interval := time.Duration(float64(cfg.Pairs) / cfg.Rate * float64(time.Second))
		epoch := time.Now()
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				m, err := b.Recv()
				if err != nil {
					fail(err)
					return
				}
				seq := binary.BigEndian.Uint64(m.Payload)
				if seq == probeSeq {
					once.Do(func() { close(online) })
					continue
				}
				sched := time.Duration(binary.BigEndian.Uint64(m.Payload[8:]))
				record(time.Since(epoch) - sched)
			}
		}()
		if err := waitOnline(ctx, a, bID, cfg.Size, online); err != nil {
			return nil, err
		}
		go func() {
			defer wg.Done()
			payload := make([]byte, cfg.Size)
			next := time.Since(epoch)
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				if wait := next - time.Since(epoch); wait > 0 {
					time.Sleep(wait)
				}
				binary.BigEndian.PutUint64(payload, seq)
				binary.BigEndian.PutUint64(payload[8:], uint64(next))
				if err := a.Send(bID, payload); err != nil {
					fail(err)
					return
				}
				next += interval
			}
		}()
	}

	if err := sleep(ctx, cfg.Warmup, errc); err != nil {
		return nil, err
	}
	measuring.Store(true)
	start := time.Now()
	if err := tick(ctx, cfg.Duration, errc, func() {
		mu.Lock()
		n := 0
		for _, s := range samples {
			n += len(s)
		}
		mu.Unlock()
		cfg.report(fmt.Sprintf("%5.1fs  %d samples", time.Since(start).Seconds(), n))
	}); err != nil {
		return nil, err
	}
	measuring.Store(false)

	mu.Lock()
	var all []time.Duration
	for _, s := range samples {
		all = append(all, s...)
	}
	mu.Unlock()
	if len(all) == 0 {
		return nil, errors.New("no latency sample")
	}
	slices.Sort(all)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	pct := func(p float64) float64 { return us(all[min(len(all)-1, int(p*float64(len(all))))]) }
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	res := &LatencyResult{
		Mode: "latency", Loop: "closed", Transport: cfg.transport(), CrossNode: cfg.crossNode(), Pairs: cfg.Pairs, Size: cfg.Size, Samples: len(all),
		P50: pct(0.50), P99: pct(0.99), P999: pct(0.999), Max: us(all[len(all)-1]),
		Mean: us(sum / time.Duration(len(all))),
	}
	if cfg.Rate > 0 {
		res.Loop, res.Rate = "open", cfg.Rate
	}
	return res, nil
}
