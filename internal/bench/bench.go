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
	Addr string // relay address (TCP)
	// WS, if set, is a websocket listener's URL (ws://host:port/path): the
	// clients connect there instead of to Addr, one RELY frame per message.
	WS string
	// RecvAddr or RecvWS, if set, is where the receiving side connects
	// (receivers; the echoing end of a round trip) while the senders use
	// Addr or WS: another node of a cluster, so that every frame crosses
	// it. RecvWS wins over RecvAddr.
	RecvAddr, RecvWS string
	ServerPID        int // 0: do not measure the server
	// CPUPIDs are more processes whose CPU a throughput run reports, by
	// name: a cluster's nodes and NATS server.
	CPUPIDs  map[string]int
	Warmup   time.Duration // traffic before the measured window
	Duration time.Duration // the measured window
	// Progress, if set, is called about once a second with a one-line summary.
	Progress func(line string)
}

func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// endpoint is where a client connects: a WebSocket URL if ws is set, else
// a TCP address.
type endpoint struct{ addr, ws string }

func (e endpoint) transport() string {
	if e.ws != "" {
		return "websocket"
	}
	return "tcp"
}

func (e endpoint) String() string {
	if e.ws != "" {
		return e.ws
	}
	return e.addr
}

// senders is where the sending side connects.
func (c *Common) sendEnd() endpoint { return endpoint{c.Addr, c.WS} }

// recvEnd is where the receiving side connects: the senders' relay unless
// RecvAddr or RecvWS names another.
func (c *Common) recvEnd() endpoint {
	if c.RecvAddr == "" && c.RecvWS == "" {
		return c.sendEnd()
	}
	return endpoint{c.RecvAddr, c.RecvWS}
}

// crossNode reports whether the two sides connect to different relays.
func (c *Common) crossNode() bool { return c.sendEnd() != c.recvEnd() }

// transport names what the two sides connect over: "tcp", "websocket", or
// "tcp/websocket" (senders/receivers) when they differ.
func (c *Common) transport() string {
	s, r := c.sendEnd().transport(), c.recvEnd().transport()
	if s == r {
		return s
	}
	return s + "/" + r
}

// dial connects to e, from src unless it is nil, and logs in as id.
func dial(ctx context.Context, e endpoint, id string, opts *client.Options, src *net.TCPAddr) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if opts == nil {
		opts = &client.Options{}
	}
	var conn net.Conn
	var err error
	if e.ws != "" {
		rb := opts.ReadBufferSize
		if rb <= 0 {
			rb = 64 << 10
		}
		conn, err = dialWS(ctx, e.ws, src, rb)
	} else {
		d := net.Dialer{}
		if src != nil {
			d.LocalAddr = src
		}
		conn, err = d.DialContext(ctx, "tcp", e.addr)
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s as %s: %w", e, id, err)
	}
	c, err := client.New(conn, id, opts)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in to %s as %s: %w", e, id, err)
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
	Pairs int // sender → receiver pairs
	Size  int // payload bytes, at least 8 (the sequence number)
	// OpenLoop senders write as fast as TCP lets them, through a write
	// buffer that goes out only when it is full: what a client with no flow
	// control of its own does (a file streamed to a socket, the Python
	// relay's clients). Otherwise (closed loop) a sender keeps at most
	// Window bytes ahead of what its receiver has counted.
	OpenLoop bool
	Window   int // closed loop: bytes a sender may have in flight to its receiver
	// After the window the senders stop; the frames still in flight count
	// as dropped once none has arrived for Settle.
	Settle time.Duration
}

// ThroughputResult is what the receivers counted in the measured window,
// and what was lost over the whole run.
type ThroughputResult struct {
	Mode         string  `json:"mode"`
	Loop         string  `json:"loop"`                 // open | closed
	Transport    string  `json:"transport"`            // tcp | websocket | tcp/websocket (senders/receivers)
	CrossNode    bool    `json:"cross_node,omitempty"` // senders and receivers on different relays
	Pairs        int     `json:"pairs"`
	Size         int     `json:"payload_bytes"`
	Seconds      float64 `json:"seconds"`
	Frames       uint64  `json:"frames"` // received in the window
	FramesPerSec float64 `json:"frames_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"` // payload, 10^6 bytes
	// Over the whole run, warm-up included, counted once the senders have
	// stopped and the frames in flight had Settle to arrive.
	Sent      uint64 `json:"sent"`
	Received  uint64 `json:"received"`
	Drops     uint64 `json:"drops"`     // sent − received: frames that never arrived
	Gaps      uint64 `json:"gaps"`      // frames missing between two that arrived (sequence gaps)
	Reordered uint64 `json:"reordered"` // frames whose sequence number went backwards
	// Frames sent but not yet received when the window closed: what the
	// relay (and both ends' buffers) held.
	InFlight    uint64  `json:"in_flight"`
	ServerCores float64 `json:"server_cpu_cores"` // -1: not measured
	BenchCores  float64 `json:"bench_cpu_cores"`
	// ProcessCores are the cores each of Common.CPUPIDs used (-1: not
	// measured), by name.
	ProcessCores map[string]float64 `json:"process_cpu_cores,omitempty"`
}

// check validates cfg and fills in the defaults.
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
	if cfg.Settle <= 0 {
		cfg.Settle = 2 * time.Second
	}
	return nil
}

func (cfg *ThroughputConfig) loop() string {
	if cfg.OpenLoop {
		return "open"
	}
	return "closed"
}

type pairStats struct {
	sent      counter // owned by the sender; counted before the frame is written
	frames    atomic.Uint64
	gaps      atomic.Uint64 // frames missing between two that arrived
	reordered atomic.Uint64
	recvBytes atomic.Int64
}

// counter has one writer and any number of readers: a plain load and store,
// no locked instruction per frame on the sender's path.
type counter struct{ v atomic.Uint64 }

func (c *counter) inc()         { c.v.Store(c.v.Load() + 1) }
func (c *counter) load() uint64 { return c.v.Load() }

// senders is what a throughput run's sending side shares with measure.
type senders struct {
	stop atomic.Bool    // set when the window closes: stop, flush, return
	wg   sync.WaitGroup // one per sender, done once it has flushed
}

// frameCost approximates what one frame costs in the closed loop's window.
func (cfg *ThroughputConfig) frameCost() int64 { return int64(cfg.Size + 64) }

// gate is the closed loop's window: wait(sent) returns once the receiver
// has counted enough that sent − received fits in Window, flushing first so
// that what the receiver waits for is on the wire. In the open loop it
// never waits.
type gate struct {
	cfg    *ThroughputConfig
	st     *pairStats
	credit chan struct{} // the receiver signals progress, so waits are short
	stop   *atomic.Bool
}

func (g *gate) wait(ctx context.Context, sent int64, flush func() error) error {
	if g.cfg.OpenLoop {
		return nil
	}
	for sent-g.st.recvBytes.Load() > int64(g.cfg.Window) && !g.stop.Load() {
		if err := flush(); err != nil {
			return err
		}
		select {
		case <-g.credit:
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// received is called by the receiver for each counted frame.
func (g *gate) received(st *pairStats) {
	cost := g.cfg.frameCost()
	if st.recvBytes.Add(cost)%(cost*64) == 0 {
		select {
		case g.credit <- struct{}{}:
		default:
		}
	}
}

// Throughput runs Pairs sender → receiver pairs flat out, open or closed
// loop, and counts at the receivers.
func Throughput(ctx context.Context, cfg ThroughputConfig) (*ThroughputResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	id := runID()
	stats := make([]pairStats, cfg.Pairs)
	var wg sync.WaitGroup
	var snd senders
	errc := make(chan error, 2*cfg.Pairs)
	var clients []*client.Client
	defer func() {
		cancel() // first: the workers stop on it
		for _, c := range clients {
			c.Close()
		}
		wg.Wait()
		snd.wg.Wait()
	}()

	type pair struct {
		snd, rcv *client.Client
		to       string
		online   chan struct{}
		gate     gate
	}
	ps := make([]pair, cfg.Pairs)
	for i := range ps {
		to := fmt.Sprintf("bench-%s-r%d", id, i)
		s, err := dial(ctx, cfg.sendEnd(), fmt.Sprintf("bench-%s-s%d", id, i), nil, nil)
		if err != nil {
			return nil, err
		}
		clients = append(clients, s)
		rcv, err := dial(ctx, cfg.recvEnd(), to, &client.Options{MaxPayload: max(cfg.Size, 16)}, nil)
		if err != nil {
			return nil, err
		}
		clients = append(clients, rcv)
		ps[i] = pair{snd: s, rcv: rcv, to: to, online: make(chan struct{}),
			gate: gate{cfg: &cfg, st: &stats[i], credit: make(chan struct{}, 1), stop: &snd.stop}}
	}

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
				p.gate.received(st)
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
		snd.wg.Add(1)
		go func() { // sender
			defer snd.wg.Done()
			fail := func(err error) {
				if ctx.Err() == nil {
					errc <- fmt.Errorf("sender to %s: %w", p.to, err)
				}
			}
			payload := make([]byte, cfg.Size)
			var sent int64
			for seq := uint64(0); !snd.stop.Load(); seq++ {
				if err := p.gate.wait(ctx, sent, p.snd.Flush); err != nil {
					fail(err)
					return
				}
				binary.BigEndian.PutUint64(payload, seq)
				st.sent.inc() // before: a large frame may arrive before Queue returns
				// Queue writes only when the 64 KiB buffer fills, as a
				// client library batches (nats.go does the same), so that
				// the load generator is not what runs out of CPU first.
				if err := p.snd.Queue(p.to, payload); err != nil {
					fail(err)
					return
				}
				sent += cfg.frameCost()
			}
			if err := p.snd.Flush(); err != nil {
				fail(err)
			}
		}()
	}

	return measure(ctx, &cfg, stats, &snd, errc, "throughput")
}

// measure counts what the receivers saw in the measured window, then stops
// the senders and gives the frames in flight cfg.Settle to arrive.
func measure(ctx context.Context, cfg *ThroughputConfig, stats []pairStats, snd *senders, errc <-chan error, mode string) (*ThroughputResult, error) {
	snapshot := func() (frames, gaps, reord uint64) {
		for i := range stats {
			frames += stats[i].frames.Load()
			gaps += stats[i].gaps.Load()
			reord += stats[i].reordered.Load()
		}
		return
	}
	sent := func() (n uint64) {
		for i := range stats {
			n += stats[i].sent.load()
		}
		return
	}
	if err := sleep(ctx, cfg.Warmup, errc); err != nil {
		return nil, err
	}
	f0, _, _ := snapshot()
	server, self := startCPU(cfg.ServerPID), startCPU(0)
	procs := make(map[string]*cpuMeter, len(cfg.CPUPIDs))
	for name, pid := range cfg.CPUPIDs {
		procs[name] = startCPU(pid)
	}
	start := time.Now()
	if err := tick(ctx, cfg.Duration, errc, func() {
		f, d, _ := snapshot()
		el := time.Since(start).Seconds()
		cfg.report(fmt.Sprintf("%5.1fs  %10.0f frames/s  %9.1f MB/s  gaps %d  in flight %d",
			el, float64(f-f0)/el, float64(f-f0)*float64(cfg.Size)/el/1e6, d, sent()-f))
	}); err != nil {
		return nil, err
	}
	f1, _, _ := snapshot() // received first: sent is counted before a frame goes out
	s1 := sent()
	el := time.Since(start).Seconds()
	res := &ThroughputResult{
		Mode: mode, Loop: cfg.loop(), Transport: cfg.transport(), CrossNode: cfg.crossNode(),
		Pairs: cfg.Pairs, Size: cfg.Size, Seconds: el,
		Frames: f1 - f0, InFlight: s1 - f1,
		BenchCores: self.cores(), ServerCores: -1,
	}
	if cfg.ServerPID != 0 {
		res.ServerCores = server.cores()
	}
	if len(procs) > 0 {
		res.ProcessCores = make(map[string]float64, len(procs))
		for name, m := range procs {
			res.ProcessCores[name] = m.cores()
		}
	}
	res.FramesPerSec = float64(res.Frames) / el
	res.MBPerSec = res.FramesPerSec * float64(cfg.Size) / 1e6

	received := func() uint64 { f, _, _ := snapshot(); return f }
	if err := settle(ctx, cfg.Settle, snd, errc, received, sent); err != nil {
		return nil, err
	}
	res.Received, _, _ = snapshot()
	res.Sent = sent()
	_, res.Gaps, res.Reordered = snapshot()
	if res.Sent > res.Received {
		res.Drops = res.Sent - res.Received
	}
	return res, nil
}

// settleCap bounds the settle period however steadily frames keep
// arriving: a relay with gigabytes queued could otherwise stretch a run by
// minutes.
const settleCap = time.Minute

// settle stops the senders, waits until they have flushed, then until
// everything sent has arrived, or no frame has arrived for quiet (or
// settleCap has passed). What has not arrived by then counts as dropped.
func settle(ctx context.Context, quiet time.Duration, snd *senders, errc <-chan error, received, sent func() uint64) error {
	snd.stop.Store(true)
	flushed := make(chan struct{})
	go func() { snd.wg.Wait(); close(flushed) }()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	start := time.Now()
	last, lastAt := received(), start
	for {
		select {
		case <-flushed:
			flushed = nil // a nil channel: never again
		case <-poll.C:
			now := time.Now()
			n := received()
			if flushed == nil && n >= sent() {
				return nil
			}
			if n != last {
				last, lastAt = n, now
			}
			if now.Sub(lastAt) > quiet || now.Sub(start) > settleCap {
				return nil
			}
		case err := <-errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// count records one received sequence number.
func (st *pairStats) count(seq uint64, next *uint64) {
	switch {
	case seq == *next:
		*next++
	case seq > *next:
		st.gaps.Add(seq - *next)
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
