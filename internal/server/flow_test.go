package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/protocol"
)

// checkedPayload is a frame payload that says which frame it is and proves
// it arrived intact: sequence number, then CRC-32 of the rest.
func checkedPayload(seq uint64, size int) []byte {
	p := make([]byte, max(size, 12))
	binary.BigEndian.PutUint64(p, seq)
	for i := 12; i < len(p); i++ {
		p[i] = byte(seq*31 + uint64(i))
	}
	binary.BigEndian.PutUint32(p[8:], crc32.ChecksumIEEE(p[12:]))
	return p
}

func verifyPayload(p []byte, want uint64) error {
	if len(p) < 12 {
		return fmt.Errorf("payload of %d bytes", len(p))
	}
	if got := binary.BigEndian.Uint64(p); got != want {
		return fmt.Errorf("frame %d arrived where %d was due", got, want)
	}
	if crc32.ChecksumIEEE(p[12:]) != binary.BigEndian.Uint32(p[8:]) {
		return fmt.Errorf("frame %d corrupted", want)
	}
	return nil
}

// openLoop streams frames as fast as TCP allows: through the client's
// buffered writer, flushed only when full, with no flow control of its own
// (what real clients do). It returns once everything is written.
func openLoop(c *client.Client, to string, frames uint64, size int) error {
	for i := range frames {
		if err := c.Queue(to, checkedPayload(i, size)); err != nil {
			return fmt.Errorf("frame %d: %w", i, err)
		}
	}
	return c.Flush()
}

// receiveAll reads frames until it has all of them, checking order and
// integrity.
func receiveAll(c *client.Client, frames uint64, timeout time.Duration) error {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	for i := range frames {
		m, err := c.Recv()
		if err != nil {
			return fmt.Errorf("after %d of %d frames: %w", i, frames, err)
		}
		if err := verifyPayload(m.Payload, i); err != nil {
			return err
		}
	}
	return nil
}

// Open-loop senders lose nothing to receivers that keep reading, although
// the backlog exceeds a small send_queue again and again: relayd stops
// reading from a sender until its frame fits (docs/PROTOCOL.md rule 9).
func TestOpenLoopSendersLoseNothing(t *testing.T) {
	for _, tc := range []struct {
		pairs  int
		size   int
		frames uint64 // per pair
	}{
		{1, 64 << 10, 1600}, // 100 MiB
		{4, 4 << 10, 6400},  // 100 MiB in all
		{64, 100, 4000},
	} {
		t.Run(fmt.Sprintf("pairs=%d/size=%d", tc.pairs, tc.size), func(t *testing.T) {
			s, addr := startDefault(t, func(l *config.Limits) {
				l.MaxPayload = config.Size(tc.size)
				l.SendQueue = config.Size(tc.size + protocol.MaxTransferOverhead)
			})
			var wg sync.WaitGroup
			errs := make(chan error, 2*tc.pairs)
			for i := range tc.pairs {
				snd := dialClient(t, s, addr, fmt.Sprintf("snd%d", i))
				rcv := dialClient(t, s, addr, fmt.Sprintf("rcv%d", i))
				wg.Add(2)
				go func() { defer wg.Done(); errs <- receiveAll(rcv, tc.frames, time.Minute) }()
				go func() { defer wg.Done(); errs <- openLoop(snd, fmt.Sprintf("rcv%d", i), tc.frames, tc.size) }()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			want := uint64(tc.pairs) * tc.frames
			var st Stats
			eventually(t, "every frame to be counted as forwarded", func() bool {
				st = s.Stats()
				return st.Frames.Forwarded == want
			})
			if d := totalDropped(st); d != 0 {
				t.Fatalf("%d frames dropped (%v) for receivers that kept reading", d, st.Frames.Dropped)
			}
			if st.Frames.Waits == 0 {
				t.Fatal("no sender ever waited: the test did not exceed send_queue")
			}
			t.Logf("%d frames, %d waits", want, st.Frames.Waits)
		})
	}
}

// slow_receiver = "disconnect": a receiver that stops reading is
// disconnected once stalled, so it never sees a silent gap, and the frame
// that did not fit counts as dropped; the sender and a fast receiver of
// the same sender carry on.
func TestSlowReceiverDisconnect(t *testing.T) {
	const size = 16 << 10
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = size
		l.SendQueue = size + protocol.MaxTransferOverhead
		l.SlowReceiver = config.SlowReceiverDisconnect
		l.StallTimeout = config.Duration(100 * time.Millisecond)
	})
	snd := dialClient(t, s, addr, "snd")
	fast := dialClient(t, s, addr, "fast")
	slow := loginRaw(t, s, addr, "slow") // never reads
	_ = slow.(*net.TCPConn).SetReadBuffer(16 << 10)

	const frames = 2000 // 32 MiB: far more than the slow receiver's socket and queue hold
	done := make(chan error, 1)
	go func() { done <- receiveAll(fast, frames, time.Minute) }()
	for i := range uint64(frames) {
		p := checkedPayload(i, size)
		if err := snd.Send("fast", p); err != nil {
			t.Fatal(err)
		}
		if disconnects(s, ReasonSlowReceiver) == 0 {
			if err := snd.Send("slow", p); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	eventually(t, "the stalled receiver to be disconnected", func() bool { return disconnects(s, ReasonSlowReceiver) == 1 })
	st := s.Stats()
	if st.Frames.Dropped[DropQueueFull] == 0 {
		t.Fatal("the frame that did not fit was not counted as dropped")
	}
	// What it had received is a prefix of what was sent: no gap.
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := uint64(0); ; i++ {
		f, err := readFrameErr(slow)
		if err != nil {
			break
		}
		if err := verifyPayload(f[len(f)-size:], i); err != nil {
			t.Fatalf("the disconnected receiver saw a gap: %v", err)
		}
	}
}

// readFrameErr is readFrame that returns the error instead of failing.
func readFrameErr(c net.Conn) ([]byte, error) {
	read := func(f []byte, n int) ([]byte, error) {
		f = append(f, make([]byte, n)...)
		_, err := io.ReadFull(c, f[len(f)-n:])
		return f, err
	}
	f, err := read(nil, protocol.HeaderLen+1)
	if err == nil {
		f, err = read(f, int(f[len(f)-1])+1)
	}
	if err == nil {
		f, err = read(f, int(f[len(f)-1])+4)
	}
	if err == nil {
		f, err = read(f, int(binary.BigEndian.Uint32(f[len(f)-4:])))
	}
	return f, err
}

// Counters add up after a takeover storm: every frame a sender got
// accepted was either written to one of the connections logged in under
// the receiver's ID, or counted as dropped with a reason. And forwarded
// means written: what the kicked connections read adds up to it.
func TestCountersAddUpAfterAKickStorm(t *testing.T) {
	const size = 1024
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = size
		l.SendQueue = 64 << 10
	})
	snd := dialClient(t, s, addr, "snd")
	var received sync.WaitGroup
	var mu sync.Mutex
	got := uint64(0)
	login := func() {
		c := dialRaw(t, addr)
		mustWrite(t, c, loginFrame("dup"))
		received.Add(1)
		go func() {
			defer received.Done()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			n := uint64(0)
			for {
				if _, err := readFrameErr(c); err != nil {
					break
				}
				n++
			}
			mu.Lock()
			got += n
			mu.Unlock()
		}()
	}
	stop := make(chan struct{})
	sent := make(chan uint64)
	go func() {
		var n uint64
		for {
			select {
			case <-stop:
				_ = snd.Flush()
				sent <- n
				return
			default:
			}
			if snd.Queue("dup", checkedPayload(n, size)) != nil {
				sent <- n
				return
			}
			n++
		}
	}()
	for range 200 {
		login()
		time.Sleep(time.Millisecond) // a storm, not one burst: let frames flow to each login
	}
	close(stop)
	n := <-sent
	// The newest login kicks the one before just after it registers: for
	// that moment both are listed.
	var last []ClientInfo
	eventually(t, "one client logged in as dup after the storm", func() bool {
		last = s.Clients("dup")
		return len(last) == 1
	})
	var st Stats
	eventually(t, "every frame to be accounted for", func() bool {
		st = s.Stats()
		return st.Frames.Received == n && st.Frames.Forwarded+totalDropped(st) == n
	})
	s.Kick("dup") // the last one too, so that every reader ends
	received.Wait()
	st = s.Stats()
	if st.Frames.Forwarded+totalDropped(st) != n {
		t.Fatalf("sent %d, forwarded %d + dropped %v", n, st.Frames.Forwarded, st.Frames.Dropped)
	}
	if got != st.Frames.Forwarded {
		t.Fatalf("the connections read %d frames, %d were counted as forwarded", got, st.Frames.Forwarded)
	}
	t.Logf("sent %d: forwarded %d, dropped %v", n, st.Frames.Forwarded, st.Frames.Dropped)
}

// queuedForShutdown starts a server that the test shuts down itself, logs
// in a sender and a receiver that does not read yet, and has 100 frames of
// 64 KiB (6.4 MiB, within send_queue) accepted for the receiver.
func queuedForShutdown(t *testing.T) (*Server, net.Conn) {
	t.Helper()
	const size = 64 << 10
	s := New(testLogger(), nil)
	if err := s.Apply(testConfig(func(l *config.Limits) {
		l.MaxPayload = size
		l.SendQueue = 8 << 20
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) }) // after a failure; a no-op otherwise
	addr := s.Addrs()["plain"].String()
	snd := dialClient(t, s, addr, "snd")
	rcv := loginRaw(t, s, addr, "rcv")
	_ = rcv.(*net.TCPConn).SetReadBuffer(64 << 10)
	for i := range uint64(100) {
		if err := snd.Queue("rcv", checkedPayload(i, size)); err != nil {
			t.Fatal(err)
		}
	}
	if err := snd.Flush(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the frames to be queued", func() bool { return s.Stats().Frames.Received == 100 })
	return s, rcv
}

// Shutdown stops reading, writes out what is queued, then closes: a
// receiver that keeps reading gets every frame relayd accepted, and none is
// counted as dropped at shutdown.
func TestShutdownDeliversWhatIsQueued(t *testing.T) {
	s, rcv := queuedForShutdown(t)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// The receiver starts reading only now.
	var n uint64
	_ = rcv.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := readFrameErr(rcv)
		if err != nil {
			break
		}
		if err := verifyPayload(f[len(f)-64<<10:], n); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	st := s.Stats()
	if n != 100 || st.Frames.Forwarded != 100 || st.Frames.Dropped[DropShutdown] != 0 {
		t.Fatalf("received %d of 100 frames; forwarded %d, dropped at shutdown %d", n, st.Frames.Forwarded, st.Frames.Dropped[DropShutdown])
	}
	if disconnects(s, ReasonShutdown) < 1 {
		t.Fatal("the receiver's disconnect was not counted as shutdown")
	}
}

// Shutdown's deadline bounds the flush: frames still queued for a receiver
// that never reads are dropped and counted as shutdown.
func TestShutdownCountsWhatItCouldNotDeliver(t *testing.T) {
	s, _ := queuedForShutdown(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); err == nil {
		t.Fatal("shutdown finished in time although a receiver never read")
	}
	st := s.Stats()
	if st.Frames.Dropped[DropShutdown] == 0 || st.Frames.Forwarded+totalDropped(st) != 100 {
		t.Fatalf("forwarded %d, dropped %v: want the undelivered ones counted as shutdown", st.Frames.Forwarded, st.Frames.Dropped)
	}
}

// Nothing sent before a login completes costs more than a login needs:
// 300 connections claiming 8 MiB transfers before logging in are closed at
// the header, without relayd buffering their payloads.
func TestTransfersBeforeLoginCostNothing(t *testing.T) {
	s, addr := startDefault(t, nil)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	head, err := protocol.AppendTransferHead(nil, "x", "y", 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte{'z'}, 64<<10)
	conns := make([]net.Conn, 300)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		mustWrite(t, conns[i], head)
	}
	var peak uint64
	for range 8 { // a little of the claimed body on each, as far as the kernel takes it
		for _, c := range conns {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			_, _ = c.Write(body)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	for _, c := range conns {
		waitClosed(t, c, 5*time.Second)
	}
	if growth := int64(peak) - int64(before.HeapInuse); growth > 16<<20 {
		t.Fatalf("heap grew by %d MiB for 300 connections that never logged in", growth>>20)
	}
	eventually(t, "the refusals to be counted", func() bool { return disconnects(s, ReasonProtocolError) == 300 })
}

// 200 receivers that never read do not slow an independent pair.
func TestStalledReceiversDoNotStarveAFastPair(t *testing.T) {
	const size = 16 << 10
	limits := func(l *config.Listener) {
		l.Limits.MaxPayload = size
		l.Limits.SendQueue = 256 << 10
	}
	// The stalled receivers' listener calls them stalled soon, so that all
	// 200 are within a couple of seconds; the fast pair's keeps the default.
	s := startServer(t, configWith(listenerCfg("plain", limits), listenerCfg("stalling", func(l *config.Listener) {
		limits(l)
		l.Limits.StallTimeout = config.Duration(10 * time.Millisecond)
	})))
	addr, stallAddr := s.Addrs()["plain"].String(), s.Addrs()["stalling"].String()
	flood := dialClient(t, s, addr, "flood")
	for i := range 200 {
		c := loginRaw(t, s, stallAddr, fmt.Sprintf("stalled%d", i))
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
	}
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		p := make([]byte, size)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if flood.Send(fmt.Sprintf("stalled%d", i%200), p) != nil {
				return
			}
		}
	}()
	eventually(t, "the 200 receivers to stall", func() bool { return s.Stats().Frames.Dropped[DropQueueFull] >= 200 })
	snd := dialClient(t, s, addr, "snd")
	rcv := dialClient(t, s, addr, "rcv")
	const frames = 2000 // 32 MiB
	done := make(chan error, 1)
	go func() { done <- receiveAll(rcv, frames, 30*time.Second) }()
	start := time.Now()
	if err := openLoop(snd, "rcv", frames, size); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	close(stop)
	flood.Close()
	<-flooded
	t.Logf("the fast pair moved %d MiB in %v beside 200 stalled receivers", frames*size>>20, el)
}

// A frame larger than its receiver's whole send_queue (the receiver is on
// a listener with smaller limits than the sender's) can never fit: it is
// dropped at once, and the sender carries on instead of waiting forever.
func TestFrameLargerThanTheReceiversQueue(t *testing.T) {
	s := startServer(t, configWith(listenerCfg("big", nil), listenerCfg("small", func(l *config.Listener) {
		l.Limits.MaxPayload = 64 << 10
		l.Limits.SendQueue = 128 << 10
	})))
	snd := dialClient(t, s, s.Addrs()["big"].String(), "snd")
	small := dialClient(t, s, s.Addrs()["small"].String(), "small")
	other := dialClient(t, s, s.Addrs()["big"].String(), "other")
	if err := snd.Send("small", make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	if err := snd.Send("other", []byte("next")); err != nil {
		t.Fatal(err)
	}
	_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
	if m, err := other.Recv(); err != nil || string(m.Payload) != "next" {
		t.Fatalf("the sender's next frame: %v, %v", m, err)
	}
	if d := s.Stats().Frames.Dropped[DropQueueFull]; d != 1 {
		t.Fatalf("%d frames dropped as queue_full, want the one too large", d)
	}
	_ = small
}
