// Package bench generates load against a relay and measures it: throughput
// of sender → receiver pairs, round-trip and one-way latency, and the
// server's memory per idle connection. cmd/relayd-bench is its front end.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/client"
)

// probeSeq marks the frames sent before measuring, to learn that the
// receiver is logged in: the protocol has no login acknowledgement.
const probeSeq = ^uint64(0)

// Common are the settings every mode shares.
type Common struct {
	Addr      string        // relay address
	ServerPID int           // 0: do not measure the server
	Warmup    time.Duration // traffic before the measured window
	Duration  time.Duration // the measured window
	// Progress, if set, is called about once a second with a one-line summary.
	Progress func(line string)
}

func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func dial(ctx context.Context, addr, id string, opts *client.Options) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, id, opts)
	if err != nil {
		return nil, fmt.Errorf("dial %s as %s: %w", addr, id, err)
	}
	return c, nil
}

// waitOnline sends probe frames from snd to `to` until the receiver reports
// one through online.
func waitOnline(ctx context.Context, snd *client.Client, to string, size int, online <-chan struct{}) error {
	probe := make([]byte, max(size, 16))
	binary.BigEndian.PutUint64(probe, probeSeq)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	deadline := time.After(10 * time.Second)
	for {
		if err := snd.Send(to, probe); err != nil {
			return err
		}
		select {
		case <-online:
			return nil
		case <-t.C:
		case <-deadline:
			return fmt.Errorf("%s never came online", to)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ThroughputConfig describes a throughput run.
type ThroughputConfig struct {
	Common
	Pairs  int // sender → receiver pairs
	Size   int // payload bytes, at least 8 (the sequence number)
	Window int // bytes a sender may have in flight to its receiver
}

// ThroughputResult is what the receivers counted in the measured window.
type ThroughputResult struct {
	Mode         string  `json:"mode"`
	Pairs        int     `json:"pairs"`
	Size         int     `json:"payload_bytes"`
	Seconds      float64 `json:"seconds"`
	Frames       uint64  `json:"frames"`
	FramesPerSec float64 `json:"frames_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"` // payload, 10^6 bytes
	Drops        uint64  `json:"drops"`      // sequence gaps at the receivers
	Reordered    uint64  `json:"reordered"`
	ServerCores  float64 `json:"server_cpu_cores"` // -1: not measured
	BenchCores   float64 `json:"bench_cpu_cores"`
}

// check validates cfg and fills in the default window.
func (cfg *ThroughputConfig) check() error {
	if cfg.Size < 8 {
		return errors.New("payload size must be at least 8 bytes")
	}
	if cfg.Pairs < 1 {
		return errors.New("at least one pair")
	}
	if cfg.Window <= 0 {
		cfg.Window = 4 << 20
	}
	return nil
}

type pairStats struct {
	frames    atomic.Uint64
	drops     atomic.Uint64
	reordered atomic.Uint64
	recvBytes atomic.Int64
}

// Throughput runs Pairs sender → receiver pairs flat out (each sender
// pipelines up to Window bytes ahead of its receiver) and counts at the
// receivers.
func Throughput(ctx context.Context, cfg ThroughputConfig) (*ThroughputResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := runID()
	stats := make([]pairStats, cfg.Pairs)
	var wg sync.WaitGroup
	errc := make(chan error, 2*cfg.Pairs)
	var clients []*client.Client
	defer func() {
		cancel() // first: the workers stop on it
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
	}()

	type pair struct {
		snd, rcv *client.Client
		to       string
		online   chan struct{}
		credit   chan struct{}
	}
	ps := make([]pair, cfg.Pairs)
	for i := range ps {
		to := fmt.Sprintf("bench-%s-r%d", id, i)
		snd, err := dial(ctx, cfg.Addr, fmt.Sprintf("bench-%s-s%d", id, i), nil)
		if err != nil {
			return nil, err
		}
		clients = append(clients, snd)
		rcv, err := dial(ctx, cfg.Addr, to, &client.Options{MaxPayload: max(cfg.Size, 16)})
		if err != nil {
			return nil, err
		}
		clients = append(clients, rcv)
		ps[i] = pair{snd: snd, rcv: rcv, to: to, online: make(chan struct{}), credit: make(chan struct{}, 1)}
	}

	frameCost := int64(cfg.Size + 64)
	for i := range ps {
		p, st := &ps[i], &stats[i]
		wg.Add(1)
		go func() { // receiver
			defer wg.Done()
			var next uint64
			seenProbe := false
			for {
				m, err := p.rcv.Recv()
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("receiver %s: %w", p.to, err)
					}
					return
				}
				seq := binary.BigEndian.Uint64(m.Payload)
				if seq == probeSeq {
					if !seenProbe {
						seenProbe = true
						close(p.online)
					}
					continue
				}
				st.count(seq, &next)
				if st.recvBytes.Add(frameCost)%(frameCost*64) == 0 {
					select {
					case p.credit <- struct{}{}:
					default:
					}
				}
			}
		}()
	}
	for i := range ps {
		if err := waitOnline(ctx, ps[i].snd, ps[i].to, cfg.Size, ps[i].online); err != nil {
			return nil, err
		}
	}

	for i := range ps {
		p, st := &ps[i], &stats[i]
		wg.Add(1)
		go func() { // sender
			defer wg.Done()
			payload := make([]byte, cfg.Size)
			var sent int64
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				for sent-st.recvBytes.Load() > int64(cfg.Window) {
					if err := p.snd.Flush(); err != nil {
						if ctx.Err() == nil {
							errc <- err
						}
						return
					}
					select {
					case <-p.credit:
					case <-time.After(time.Millisecond):
					case <-ctx.Done():
						return
					}
				}
				binary.BigEndian.PutUint64(payload, seq)
				if err := p.snd.Queue(p.to, payload); err != nil {
					if ctx.Err() == nil {
						errc <- err
					}
					return
				}
				// The write buffer goes out when it fills, and before
				// waiting for the window: batched as a client library
				// batches (nats.go does the same), so that the load
				// generator is not what runs out of CPU first.
				sent += frameCost
			}
		}()
	}

	return measure(ctx, cfg, stats, errc, "throughput")
}

// measure counts what the receivers saw in the measured window.
func measure(ctx context.Context, cfg ThroughputConfig, stats []pairStats, errc <-chan error, mode string) (*ThroughputResult, error) {
	snapshot := func() (frames, drops, reord uint64) {
		for i := range stats {
			frames += stats[i].frames.Load()
			drops += stats[i].drops.Load()
			reord += stats[i].reordered.Load()
		}
		return
	}
	if err := sleep(ctx, cfg.Warmup, errc); err != nil {
		return nil, err
	}
	f0, d0, r0 := snapshot()
	server, self := startCPU(cfg.ServerPID), startCPU(0)
	start := time.Now()
	if err := tick(ctx, cfg.Duration, errc, func() {
		f, d, _ := snapshot()
		el := time.Since(start).Seconds()
		cfg.report(fmt.Sprintf("%5.1fs  %10.0f frames/s  %9.1f MB/s  drops %d",
			el, float64(f-f0)/el, float64(f-f0)*float64(cfg.Size)/el/1e6, d-d0))
	}); err != nil {
		return nil, err
	}
	f1, d1, r1 := snapshot()
	el := time.Since(start).Seconds()
	res := &ThroughputResult{
		Mode: mode, Pairs: cfg.Pairs, Size: cfg.Size, Seconds: el,
		Frames: f1 - f0, Drops: d1 - d0, Reordered: r1 - r0,
		BenchCores: self.cores(), ServerCores: -1,
	}
	if cfg.ServerPID != 0 {
		res.ServerCores = server.cores()
	}
	res.FramesPerSec = float64(res.Frames) / el
	res.MBPerSec = res.FramesPerSec * float64(cfg.Size) / 1e6
	return res, nil
}

// count records one received sequence number.
func (st *pairStats) count(seq uint64, next *uint64) {
	switch {
	case seq == *next:
		*next++
	case seq > *next:
		st.drops.Add(seq - *next)
		*next = seq + 1
	default:
		st.reordered.Add(1)
	}
	st.frames.Add(1)
}

func (c *Common) report(line string) {
	if c.Progress != nil {
		c.Progress(line)
	}
}

// sleep waits d unless ctx ends or a worker fails.
func sleep(ctx context.Context, d time.Duration, errc <-chan error) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tick waits d, calling every about once a second.
func tick(ctx context.Context, d time.Duration, errc <-chan error, every func()) error {
	end := time.NewTimer(d)
	defer end.Stop()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-end.C:
			return nil
		case <-t.C:
			every()
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// localAddr spreads connections round-robin over the source addresses
// 127.0.0.1–127.0.0.254. One source address has only ~28,000 ephemeral
// ports, and the previous run's connections hold theirs in TIME_WAIT for a
// minute: filling one address after another made a second 10,000-connection
// run within that minute hunt for free ports for tens of seconds.
func localAddr(i int) *net.TCPAddr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%254))}
}
