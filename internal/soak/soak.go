// Package soak runs a relayd in this process under a random mix of
// demanding but legal clients for a bounded time, shuts it down with
// SIGTERM, and checks that every frame is accounted for: each one a sender
// wrote was read by its receiver, intact and in order, or counted as
// dropped with a reason. cmd/relayd-bench soak is its front end; `make
// soak` runs it for five minutes.
//
// The mix, per sender → receiver pair: senders write open loop (as fast as
// TCP lets them, checksummed and sequence-numbered frames of 1 B to 1 MiB)
// and now and then reconnect; the receiver's ClientID goes through epochs
// of reading fast, reading slowly (its sender is paced), stalling for a
// while and resuming, never reading, being offline, and takeover storms
// (tens of logins in a row, each kicking the one before); an epoch ends by
// a graceful reconnect or by the next epoch's login kicking it.
//
// To make the books exact, every connection the soak ends is ended
// gracefully (half-close, then read to EOF), a connection relayd ends is
// read to EOF too, and before the SIGTERM the senders stop and the soak
// waits until relayd has read everything they wrote. So
//
//	sent = received + dropped (every reason)
//
// must hold exactly; the difference is reported as "unexplained".
package soak

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/server"
)

// Config describes a soak run.
type Config struct {
	Duration time.Duration // traffic before the final shutdown; 0: 5 minutes
	Pairs    int           // sender → receiver pairs; 0: 12
	MaxSize  int           // largest payload; 0: 1 MiB
	Seed     uint64        // 0: from the clock
	Log      io.Writer     // relayd's log (warnings and errors); nil: discarded
	// Progress, if set, is called about once a second with a one-line summary.
	Progress func(line string)
}

// Result is what a soak run counted. The frame counts are over the whole
// run, the clients' side and relayd's (server.Stats) side.
type Result struct {
	Seed      uint64
	Duration  time.Duration
	Sent      uint64 // frames the senders wrote
	Received  uint64 // frames the receivers read, intact
	Accepted  uint64 // frames relayd read from senders (Stats: Received)
	Forwarded uint64 // frames relayd wrote to receivers' sockets
	Dropped   [len(dropReasons)]uint64
	Waits     uint64 // times relayd made a sender wait for room
	Kicks     uint64
	Logins    uint64 // connections the soak logged in
	Stalls    uint64 // stalls of stalling receivers
	Corrupt   uint64 // frames that failed their checksum or format
	Reordered uint64 // frames whose sequence number went backwards, or overlapped another connection's
	Torn      uint64 // connections that ended inside a frame
	Resets    uint64 // connections that ended with an error instead of EOF
}

var dropReasons = [...]server.Drop{server.DropOffline, server.DropQueueFull, server.DropClosed, server.DropShutdown, server.DropClusterDown}

// DroppedTotal is the sum of every drop reason.
func (r *Result) DroppedTotal() (n uint64) {
	for _, d := range r.Dropped {
		n += d
	}
	return n
}

// Unexplained is sent − received − dropped: frames nobody accounts for
// (negative: more were read than the books allow).
func (r *Result) Unexplained() int64 {
	return int64(r.Sent) - int64(r.Received) - int64(r.DroppedTotal())
}

// OK reports whether the run found nothing wrong.
//
// A connection relayd closes while writing to it (a kick, at once, as rule 2
// says) may end inside a frame: the client never gets that frame whole, and
// relayd counts it as dropped (closed), so Torn is reported, not a failure;
// Forwarded == Received checks that no torn frame was counted as forwarded.
func (r *Result) OK() bool {
	return r.Unexplained() == 0 && r.Corrupt == 0 && r.Reordered == 0 && r.Resets == 0 &&
		r.Accepted == r.Sent && r.Forwarded == r.Received
}

// String is the one summary line.
func (r *Result) String() string {
	var drops []string
	for i, d := range dropReasons {
		drops = append(drops, fmt.Sprintf("%s %d", d, r.Dropped[i]))
	}
	return fmt.Sprintf("soak %s seed %d: frames sent %d, received %d, dropped %d (%s); relayd accepted %d, forwarded %d, sender waits %d; logins %d, kicks %d, stalls %d; corrupt %d, reordered %d, torn %d, resets %d; unexplained: %d",
		r.Duration.Round(time.Second), r.Seed, r.Sent, r.Received, r.DroppedTotal(), strings.Join(drops, ", "),
		r.Accepted, r.Forwarded, r.Waits, r.Logins, r.Kicks, r.Stalls, r.Corrupt, r.Reordered, r.Torn, r.Resets, r.Unexplained())
}

// The relay's configuration. send_queue is small, so the backlog is
// exceeded often. write_timeout is longer than any receiver here stops
// reading: relayd resets a connection it closes for write_timeout, and a
// reset throws away what the kernel held for it, frames relayd counted as
// forwarded that no reader can count as received.
const relayConfig = `
[server]
shutdown_timeout = "5s"
[log]
level = "warn"
[reload]
watch = false
[limits]
max_payload = %d
send_queue = %d
write_timeout = "30s"
[[listener]]
name = "soak"
address = "127.0.0.1:0"
`

// Timings of the mix. Never-readers stop reading for at most
// neverReadMax, well inside write_timeout even with the final phase
// (shutdown_timeout) added.
const (
	epochMin, epochMax   = 2 * time.Second, 12 * time.Second
	neverReadMax         = 8 * time.Second
	stallMin, stallMax   = 300 * time.Millisecond, 2 * time.Second
	offlineMax           = 2 * time.Second
	stormMin, stormMax   = 10, 40
	senderLifeMin        = 5 * time.Second
	senderLifeMax        = 30 * time.Second
	acceptWait           = time.Minute // for relayd to read what was sent
	drainWait            = 30 * time.Second
	slowEvery, slowPause = 16, time.Millisecond
)

// soak is one run's shared state.
type soak struct {
	cfg   Config
	addr  string
	block block
	pairs []*pair

	final    chan struct{} // closed when the traffic phase ends
	shutDown chan struct{} // closed once relayd has shut down
	readers  sync.WaitGroup
	senders  sync.WaitGroup
	cycles   sync.WaitGroup
	errc     chan error

	received, corrupt, reordered, torn, resets atomic.Uint64
	logins, stalls                             atomic.Uint64
}

// pair is one sender → receiver stream.
type pair struct {
	from, to string
	sent     atomic.Uint64 // frames written (counted before each is queued)
	mu       sync.Mutex
	spans    []span // guarded by mu; one per receiver connection that got exact frames
}

// Run starts relayd, runs the mix for cfg.Duration, stops the senders,
// waits until relayd has read what they wrote, sends this process SIGTERM
// (relayd shuts down gracefully, as it would under systemd), reads every
// connection to its end and counts. An error means the run could not be
// carried out; a Result that is not OK means relayd lost, corrupted or
// reordered frames.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Minute
	}
	if cfg.Pairs <= 0 {
		cfg.Pairs = 12
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 1 << 20
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	rc, err := config.Parse("soak.toml", fmt.Appendf(nil, relayConfig, cfg.MaxSize, max(4<<20, 2*cfg.MaxSize+1024)))
	if err != nil {
		return nil, fmt.Errorf("soak relay configuration: %w", err)
	}
	d, err := daemon.Start(rc, cfg.Log, "soak")
	if err != nil {
		return nil, err
	}
	ran := make(chan error, 1)
	go func() { ran <- d.Run(context.Background()) }()
	shutdown := func() error {
		if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
			return fmt.Errorf("SIGTERM: %w", err)
		}
		select {
		case err := <-ran:
			return err
		case <-time.After(rc.Server.ShutdownTimeout.D() + 10*time.Second):
			return errors.New("relayd did not shut down within shutdown_timeout after SIGTERM")
		}
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x50a4))
	s := &soak{
		cfg:      cfg,
		addr:     d.Server().Addrs()["soak"].String(),
		block:    newBlock(cfg.MaxSize, rng),
		final:    make(chan struct{}),
		shutDown: make(chan struct{}),
		errc:     make(chan error, 4*cfg.Pairs),
	}
	for i := range cfg.Pairs {
		s.pairs = append(s.pairs, &pair{from: fmt.Sprintf("soak-s%d", i), to: fmt.Sprintf("soak-r%d", i)})
	}
	stopped := false
	defer func() {
		if !stopped {
			close(s.final)
			_ = shutdown()
			close(s.shutDown)
		}
		s.senders.Wait()
		s.cycles.Wait()
		s.readers.Wait()
	}()

	for _, p := range s.pairs {
		s.cycles.Add(1)
		go s.receiverCycle(p, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
		s.senders.Add(1)
		go s.send(p, rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64())))
	}

	start := time.Now()
	if err := s.traffic(ctx, d.Server(), start); err != nil {
		return nil, err
	}

	// Final phase: no new connections, senders flush and stop.
	close(s.final)
	s.senders.Wait()
	s.cycles.Wait()
	var sent uint64
	for _, p := range s.pairs {
		sent += p.sent.Load()
	}
	deadline := time.Now().Add(acceptWait)
	for d.Server().Stats().Frames.Received < sent {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("relayd read %d of the %d frames sent within %s", d.Server().Stats().Frames.Received, sent, acceptWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopped = true
	if err := shutdown(); err != nil {
		close(s.shutDown)
		return nil, err
	}
	close(s.shutDown) // never-readers read now, and every reader to EOF
	drained := make(chan struct{})
	go func() { s.readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(drainWait):
		return nil, fmt.Errorf("receivers still reading %s after relayd shut down", drainWait)
	}
	select {
	case err := <-s.errc:
		return nil, err
	default:
	}

	st := d.Server().Stats()
	res := &Result{
		Seed: cfg.Seed, Duration: time.Since(start), Sent: sent, Received: s.received.Load(),
		Accepted: st.Frames.Received, Forwarded: st.Frames.Forwarded, Waits: st.Frames.Waits, Kicks: st.Kicks,
		Logins: s.logins.Load(), Stalls: s.stalls.Load(),
		Corrupt: s.corrupt.Load(), Reordered: s.reordered.Load(), Torn: s.torn.Load(), Resets: s.resets.Load(),
	}
	for i, r := range dropReasons {
		res.Dropped[i] = st.Frames.Dropped[r]
	}
	for _, p := range s.pairs {
		res.Reordered += uint64(overlaps(p.spans))
	}
	return res, nil
}

// traffic lets the mix run for the configured duration, reporting progress.
func (s *soak) traffic(ctx context.Context, srv *server.Server, start time.Time) error {
	end := time.NewTimer(s.cfg.Duration)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-end.C:
			return nil
		case <-tick.C:
			if s.cfg.Progress != nil {
				st := srv.Stats()
				var sent uint64
				for _, p := range s.pairs {
					sent += p.sent.Load()
				}
				s.cfg.Progress(fmt.Sprintf("%4.0fs  sent %d  received %d  dropped %d  kicks %d  waits %d  corrupt %d",
					time.Since(start).Seconds(), sent, s.received.Load(), dropped(st), st.Kicks, st.Frames.Waits, s.corrupt.Load()))
			}
		case err := <-s.errc:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func dropped(st server.Stats) (n uint64) {
	for _, r := range dropReasons {
		n += st.Frames.Dropped[r]
	}
	return n
}

func (s *soak) fail(err error) {
	select {
	case s.errc <- err:
	default:
	}
}

func (s *soak) dial(id string) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// No heartbeats: one arriving after relayd stopped reading at shutdown
	// would make closing the socket a reset, which discards what the
	// kernel still holds for it. Every connection here lives well within
	// idle_timeout without them.
	c, err := client.Dial(ctx, s.addr, id, &client.Options{Heartbeat: -1, MaxPayload: s.cfg.MaxSize})
	if err != nil {
		return nil, fmt.Errorf("dial as %s: %w", id, err)
	}
	s.logins.Add(1)
	return c, nil
}

// sleep waits d, or less if ch is closed first; it reports whether d passed.
func sleep(d time.Duration, ch <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ch:
		return false
	}
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

// send writes p's stream open loop: no window, no pause, the client's
// write buffer going out when it fills. Every so often it reconnects
// gracefully: flush, half-close, wait for relayd to close (it has read
// everything then), log in again and go on with the same sequence.
func (s *soak) send(p *pair, rng *rand.Rand) {
	defer s.senders.Done()
	buf := make([]byte, s.cfg.MaxSize)
	var seq uint64
	for {
		c, err := s.dial(p.from)
		if err != nil {
			s.fail(err)
			return
		}
		life := time.Now().Add(between(rng, senderLifeMin, senderLifeMax))
		for time.Now().Before(life) && !closed(s.final) {
			pl := buf[:randomSize(rng, s.cfg.MaxSize)]
			s.block.encode(pl, seq)
			p.sent.Add(1)
			if err := c.Queue(p.to, pl); err != nil {
				s.fail(fmt.Errorf("sender %s: %w", p.from, err))
				c.Close()
				return
			}
			seq++
		}
		if err := c.CloseWrite(); err != nil {
			s.fail(fmt.Errorf("sender %s: %w", p.from, err))
			c.Close()
			return
		}
		// relayd sends a sender nothing; Recv returns when it closes.
		if _, err := c.Recv(); !errors.Is(err, client.ErrServerClosed) {
			s.fail(fmt.Errorf("sender %s: waiting for relayd to close after the half-close: %v", p.from, err))
		}
		c.Close()
		if closed(s.final) {
			return
		}
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// How a receiver connection reads.
type mode int

const (
	fast  mode = iota
	slow       // pauses often: its sender is paced to it
	stall      // reads, stops reading for a while, resumes
	never      // reads nothing until its epoch ends
)

// receiverConn is one connection logged in as a pair's receiver. It is a
// bare socket, not a client.Client, to tell how it ended: EOF, inside a
// frame, or reset.
type receiverConn struct {
	conn *net.TCPConn
	hold chan struct{} // closed when it should stop holding back: its epoch ended
	done chan struct{} // closed when it has read to the end
	once sync.Once
}

func (rc *receiverConn) release() { rc.once.Do(func() { close(rc.hold) }) }

// end half-closes: relayd then closes the connection after what it has
// written, which the reader reads to EOF.
func (rc *receiverConn) end() {
	_ = rc.conn.CloseWrite() // fails harmlessly if relayd closed it already
	rc.release()
}

// receiverCycle takes p's receiver ID through random epochs until the
// traffic phase ends; the connections of the last epoch stay until relayd
// shuts down.
func (s *soak) receiverCycle(p *pair, rng *rand.Rand) {
	defer s.cycles.Done()
	var current []*receiverConn // the epoch's connections, some perhaps already kicked
	// leave ends the current connections, gracefully (half-close, read to
	// EOF, and only then log in again) or by letting the next login kick
	// them.
	leave := func(gracefully bool) bool {
		for _, rc := range current {
			if gracefully {
				rc.end()
			} else {
				rc.release() // a never-reader reads what it was sent
			}
		}
		if gracefully {
			for _, rc := range current {
				select {
				case <-rc.done:
				case <-time.After(drainWait):
					s.fail(fmt.Errorf("receiver %s: relayd did not close the connection within %s of its half-close", p.to, drainWait))
					return false
				}
			}
		}
		current = nil
		return true
	}
	for !closed(s.final) {
		epoch := between(rng, epochMin, epochMax)
		if !leave(rng.IntN(2) == 0) {
			return
		}
		switch x := rng.IntN(100); {
		case x < 5: // offline: frames for it are dropped (offline)
			epoch = between(rng, 200*time.Millisecond, offlineMax)
		case x < 15: // takeover storm: each login kicks the one before
			for range stormMin + rng.IntN(stormMax-stormMin+1) {
				rc, err := s.receiver(p, fast, rng)
				if err != nil {
					s.fail(err)
					return
				}
				// Which one survives depends on the order relayd takes the
				// logins in: the epoch ends them all.
				current = append(current, rc)
			}
		default:
			m := [...]mode{fast, fast, fast, fast, slow, slow, stall, stall, stall, never}[rng.IntN(10)]
			if m == never {
				epoch = min(epoch, neverReadMax)
			}
			rc, err := s.receiver(p, m, rng)
			if err != nil {
				s.fail(err)
				return
			}
			current = append(current, rc)
		}
		if !sleep(epoch, s.final) {
			break
		}
	}
	// The traffic phase is over: what is open stays open until relayd
	// shuts down; never-readers start reading then.
	for _, rc := range current {
		go func() {
			<-s.shutDown
			rc.release()
		}()
	}
}

// receiver logs in as p's receiver and reads in mode m until the
// connection ends, checking every frame.
func (s *soak) receiver(p *pair, m mode, rng *rand.Rand) (*receiverConn, error) {
	login, err := protocol.AppendLogin(nil, p.to)
	if err != nil {
		return nil, err
	}
	nc, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial as %s: %w", p.to, err)
	}
	if _, err := nc.Write(login); err != nil {
		nc.Close()
		return nil, fmt.Errorf("log in as %s: %w", p.to, err)
	}
	s.logins.Add(1)
	rc := &receiverConn{conn: nc.(*net.TCPConn), hold: make(chan struct{}), done: make(chan struct{})}
	seed1, seed2 := rng.Uint64(), rng.Uint64()
	s.readers.Add(1)
	go func() {
		defer s.readers.Done()
		defer close(rc.done)
		defer nc.Close()
		rng := rand.New(rand.NewPCG(seed1, seed2))
		if m == never {
			<-rc.hold
		}
		r := protocol.NewReader(bufio.NewReaderSize(nc, 64<<10), protocol.Fixed(s.cfg.MaxSize))
		defer r.Release()
		var st stream
		nextStall := time.Now().Add(between(rng, stallMin, stallMax))
		for n := 0; ; n++ {
			f, err := r.Next()
			if err != nil {
				s.ended(err)
				break
			}
			switch {
			case f.Cmd != protocol.CmdTransfer || string(f.ID) != p.from || string(f.To) != p.to:
				s.corrupt.Add(1)
			default:
				switch st.add(s.block, f.Payload) {
				case fine:
					s.received.Add(1)
				case corrupt:
					s.corrupt.Add(1)
				case reordered:
					s.received.Add(1)
					s.reordered.Add(1)
				}
			}
			switch m {
			case slow:
				if n%slowEvery == 0 {
					time.Sleep(slowPause)
				}
			case stall:
				if time.Now().After(nextStall) {
					s.stalls.Add(1)
					// Not reading for longer than stall_timeout: relayd
					// must drop for it (queue_full), not hold its sender.
					sleep(between(rng, stallMin, stallMax), rc.hold)
					nextStall = time.Now().Add(between(rng, stallMin, stallMax))
				}
			}
		}
		if st.exact {
			p.mu.Lock()
			p.spans = append(p.spans, span{st.min, st.max})
			p.mu.Unlock()
		}
	}()
	return rc, nil
}

// ended classifies how a receiver connection ended: EOF is the only clean
// end (relayd closed it: kicked, shut down, or after its half-close).
func (s *soak) ended(err error) {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		s.torn.Add(1)
	case errors.Is(err, io.EOF):
	default:
		s.resets.Add(1)
	}
}
