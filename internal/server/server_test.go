package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

func TestForwardsWholeFrameByteForByte(t *testing.T) {
	s, addr := startDefault(t, nil)
	alice := loginRaw(t, s, addr, "alice")
	bob := loginRaw(t, s, addr, "bob")

	for _, payload := range [][]byte{[]byte("hello"), {}, {0, 0xff, '\n', 'R', 'E', 'L', 'Y'}, bytes.Repeat([]byte{7}, 100_000)} {
		frame := transferFrame("alice", "bob", payload)
		mustWrite(t, alice, frame)
		readExactly(t, bob, frame)
	}
	// Counted by alice's read loop, which may lag bob's read a little.
	eventually(t, "4 frames and their payload bytes to be counted", func() bool {
		st := s.Stats()
		return st.Frames.Forwarded == 4 && st.Frames.Bytes == 5+0+7+100_000
	})
}

func TestSendToSelf(t *testing.T) {
	s, addr := startDefault(t, nil)
	me := loginRaw(t, s, addr, "me")
	frame := transferFrame("me", "me", []byte("note to self"))
	mustWrite(t, me, frame)
	readExactly(t, me, frame)
}

func TestHeartbeatIsNeverForwarded(t *testing.T) {
	s, addr := startDefault(t, nil)
	alice := loginRaw(t, s, addr, "alice")
	bob := loginRaw(t, s, addr, "bob")

	mustWrite(t, alice, transferFrame("alice", "", nil))
	mustWrite(t, alice, transferFrame("alice", "", []byte("heartbeat payloads are read and dropped")))
	frame := transferFrame("alice", "bob", []byte("after the heartbeats"))
	mustWrite(t, alice, frame)
	readExactly(t, bob, frame) // the first bytes bob sees are this frame
	// Counted by alice's read loop, which may lag bob's read a little.
	eventually(t, "one forwarded frame to be counted", func() bool { return s.Stats().Frames.Forwarded == 1 })
	if st := s.Stats(); st.Frames.Heartbeats != 2 || st.Frames.Dropped[DropOffline] != 0 {
		t.Fatalf("heartbeats %d, offline drops %d; want 2 and 0", st.Frames.Heartbeats, st.Frames.Dropped[DropOffline])
	}
	// Nothing else arrives: not even at alice.
	expectOpen(t, bob, 100*time.Millisecond)
	expectOpen(t, alice, 10*time.Millisecond)
}

func TestFramesToOfflineIDsAreDroppedAndCounted(t *testing.T) {
	s, addr := startDefault(t, nil)
	alice := loginRaw(t, s, addr, "alice")
	for i := 0; i < 3; i++ {
		mustWrite(t, alice, transferFrame("alice", "nobody", []byte("lost")))
	}
	eventually(t, "three offline drops", func() bool { return s.Stats().Frames.Dropped[DropOffline] == 3 })
	// The sender is not punished.
	expectOpen(t, alice, 50*time.Millisecond)
	if s.Stats().Frames.Forwarded != 0 {
		t.Fatal("a frame to an offline ID was counted as forwarded")
	}
}

// Last login wins, and the kicked connection's teardown never unregisters
// its successor.
func TestLastLoginWins(t *testing.T) {
	s, addr := startDefault(t, nil)
	sender := loginRaw(t, s, addr, "sender")
	old := loginRaw(t, s, addr, "dup")
	oldPeer, _ := s.reg.Lookup([]byte("dup"))

	newer := dialRaw(t, addr)
	mustWrite(t, newer, loginFrame("dup"))
	waitClosed(t, old, 5*time.Second) // kicked at once
	waitPeer(t, s, "dup", oldPeer)
	eventually(t, "the kicked connection to be gone", func() bool {
		return s.Stats().Disconnects[ReasonKicked] == 1
	})
	// Whoever still holds the kicked connection cannot queue frames for it.
	if r := oldPeer.Deliver(transferFrame("sender", "dup", []byte("late")), nil); r != registry.Gone {
		t.Fatalf("delivery to a kicked connection: %v, want Gone", r)
	}

	frame := transferFrame("sender", "dup", []byte("for the newest login"))
	mustWrite(t, sender, frame)
	readExactly(t, newer, frame)
	st := s.Stats()
	if st.Kicks != 1 || st.Clients != 2 {
		t.Fatalf("kicks = %d, clients = %d; want 1 and 2", st.Kicks, st.Clients)
	}
}

// Twenty logins in a row under one ID: each kicks the previous connection
// and receives the frames sent to the ID from then on.
func TestKickAcrossManyLogins(t *testing.T) {
	s, addr := startDefault(t, nil)
	sender := dialClient(t, s, addr, "sender")
	var last net.Conn
	for i := 0; i < 20; i++ {
		prev, _ := s.reg.Lookup([]byte("x"))
		c := dialRaw(t, addr)
		mustWrite(t, c, loginFrame("x"))
		waitPeer(t, s, "x", prev)
		if last != nil {
			waitClosed(t, last, 5*time.Second)
		}
		last = c
		if err := sender.Send("x", []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		readExactly(t, c, transferFrame("sender", "x", []byte(fmt.Sprint(i))))
	}
	if k := s.Stats().Kicks; k != 19 {
		t.Fatalf("kicks = %d, want 19", k)
	}
}

func TestOrderKeptOverTenThousandFrames(t *testing.T) {
	s, addr := startDefault(t, nil)
	a := dialClient(t, s, addr, "a")
	b := dialClient(t, s, addr, "b")
	const n = 10_000
	errc := make(chan error, 1)
	go func() {
		for i := uint64(0); i < n; i++ {
			if err := a.Queue("b", seqPayload(i, 8+int(i%200))); err != nil {
				errc <- err
				return
			}
			if i%64 == 0 {
				if err := a.Flush(); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- a.Flush()
	}()
	_ = b.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := uint64(0); i < n; i++ {
		m, err := b.Recv()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint64(m.Payload); got != i || string(m.From) != "a" || len(m.Payload) != 8+int(i%200) {
			t.Fatalf("frame %d: got sequence %d from %q, %d bytes", i, got, m.From, len(m.Payload))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestFrameWrittenOneByteAtATime(t *testing.T) {
	s, addr := startDefault(t, nil)
	a := dialRaw(t, addr)
	for _, b := range loginFrame("a") {
		mustWrite(t, a, []byte{b})
	}
	waitOnline(t, s, "a")
	b := loginRaw(t, s, addr, "b")
	frame := transferFrame("a", "b", []byte("slowly but whole"))
	for _, c := range frame {
		mustWrite(t, a, []byte{c})
	}
	readExactly(t, b, frame)
}

// Each violation of rule 7 closes the offending connection, and only it.
func TestViolationsCloseOnlyTheOffender(t *testing.T) {
	hugeHeader := append([]byte("RELY\x01\x09\x01v\x01b"), 0xff, 0xff, 0xff, 0xff)
	overMax := binary.BigEndian.AppendUint32([]byte("RELY\x01\x09\x01v\x01b"), 1<<20+1)
	tests := []struct {
		name   string
		login  bool // log in as "v" first
		frames []byte
	}{
		{"bad magic", false, []byte("RELX\x01\x01\x01v")},
		{"bad version", false, []byte("RELY\x02\x01\x01v")},
		{"bad command", false, []byte("RELY\x01\x05\x01v")},
		{"bad command after login", true, []byte("RELY\x01\x05")},
		{"zero-length login ID", false, []byte("RELY\x01\x01\x00")},
		{"zero-length from ID", true, []byte("RELY\x01\x09\x00\x01b\x00\x00\x00\x00")},
		{"transfer before login", false, transferFrame("v", "b", []byte("x"))},
		{"second login", true, loginFrame("v")},
		{"second login, other ID", true, loginFrame("w")},
		{"from differs from login", true, transferFrame("mallory", "b", []byte("x"))},
		{"payload length 0xFFFFFFFF", true, hugeHeader},
		{"payload over max_payload", true, overMax},
		{"http request", false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	}
	s, addr := startDefault(t, func(l *config.Limits) { l.MaxPayload = 1 << 20 })
	a := dialClient(t, s, addr, "a")
	b := dialClient(t, s, addr, "b")
	var seq uint64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := disconnects(s, ReasonProtocolError)
			c := dialRaw(t, addr)
			if tc.login {
				mustWrite(t, c, loginFrame("v"))
				waitOnline(t, s, "v")
			}
			mustWrite(t, c, tc.frames)
			// Closed at once: for the oversized payloads, without waiting
			// for (or reading) a single payload byte.
			waitClosed(t, c, 5*time.Second)
			eventually(t, "the violation to be counted", func() bool {
				return disconnects(s, ReasonProtocolError) == before+1
			})

			// The bystanders' stream is untouched.
			if err := a.Send("b", seqPayload(seq, 16)); err != nil {
				t.Fatal(err)
			}
			_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := b.Recv()
			if err != nil || binary.BigEndian.Uint64(m.Payload) != seq {
				t.Fatalf("bystander stream broken: %v", err)
			}
			seq++
		})
	}
}

func TestLoginTimeout(t *testing.T) {
	s, addr := startDefault(t, func(l *config.Limits) { l.LoginTimeout = config.Duration(200 * time.Millisecond) })
	silent := dialRaw(t, addr)
	partial := dialRaw(t, addr)
	mustWrite(t, partial, []byte("RELY\x01\x01\x05al")) // a login that never completes
	start := time.Now()
	waitClosed(t, silent, 5*time.Second)
	waitClosed(t, partial, 5*time.Second)
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("closed after %v, before login_timeout", el)
	}
	eventually(t, "two login timeouts", func() bool { return disconnects(s, ReasonLoginTimeout) == 2 })
}

// idle_timeout counts from the last complete frame: trickling bytes does not
// keep a connection alive, heartbeats do.
func TestIdleTimeoutCountsCompleteFrames(t *testing.T) {
	const idle = 400 * time.Millisecond
	s, addr := startDefault(t, func(l *config.Limits) { l.IdleTimeout = config.Duration(idle) })
	trickler := loginRaw(t, s, addr, "trickler")
	beater := loginRaw(t, s, addr, "beater")

	frame := transferFrame("trickler", "beater", bytes.Repeat([]byte("x"), 100))
	hb := transferFrame("beater", "", nil)
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		var b [1]byte
		_ = trickler.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _ = trickler.Read(b[:])
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	var elapsed time.Duration
	for i := 0; elapsed == 0; i++ {
		select {
		case elapsed = <-closed:
		case <-tick.C:
			if i < len(frame) {
				_, _ = trickler.Write(frame[i : i+1])
			}
			mustWrite(t, beater, hb)
		}
	}
	if elapsed < idle*3/4 || elapsed > 3*idle {
		t.Fatalf("trickling connection closed after %v, want about %v", elapsed, idle)
	}
	expectOpen(t, beater, idle/2) // still alive: it kept sending complete frames
	if disconnects(s, ReasonIdleTimeout) != 1 {
		t.Fatalf("idle timeouts = %d, want 1", disconnects(s, ReasonIdleTimeout))
	}
}

// A slow receiver never slows the sender or other receivers: frames that do
// not fit its send queue are dropped for it alone, and a receiver whose
// writes are blocked for write_timeout is disconnected.
func TestSlowReceiver(t *testing.T) {
	const (
		sendQueue = 1 << 20
		frameSize = 64 << 10
		frames    = 1000 // 64 MiB offered to each receiver
	)
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = frameSize
		l.SendQueue = sendQueue
		l.WriteTimeout = config.Duration(time.Second)
	})
	sender := dialClient(t, s, addr, "sender")
	fast := dialClient(t, s, addr, "fast")
	loginRaw(t, s, addr, "slow") // never reads

	// The sender keeps at most 8 frames in flight to the fast receiver,
	// well within its send queue: every frame to it must arrive. Nothing
	// paces the sender against the slow one.
	fastRcv := receivePaced(fast, frames, 8)

	peakQueued := 0
	start := time.Now()
	for i := uint64(0); i < frames; i++ {
		p := seqPayload(i, frameSize)
		fastRcv.wait(t, s)
		if err := sender.Queue("slow", p); err != nil {
			t.Fatal(err)
		}
		if err := sender.Send("fast", p); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			for _, c := range s.Clients("slow") {
				peakQueued = max(peakQueued, c.Queued)
			}
		}
	}
	sendTime := time.Since(start)
	fastRcv.finish(t, s)

	// Its writes are blocked: it is disconnected after write_timeout, and
	// the frames still queued for it are dropped then.
	eventually(t, "the slow receiver to be disconnected", func() bool {
		return disconnects(s, ReasonWriteTimeout) == 1
	})
	// Every frame is accounted for: written to a socket, or dropped with a
	// reason (queue_full while the slow receiver was stalled, closed for
	// those still queued when it was disconnected).
	var st Stats
	eventually(t, "every frame to be counted as forwarded or dropped", func() bool {
		st = s.Stats()
		return st.Frames.Forwarded+totalDropped(st) == 2*frames
	})
	if st.Frames.Dropped[DropQueueFull] == 0 {
		t.Fatal("no frame was dropped for the slow receiver")
	}
	if st.Frames.Received != 2*frames {
		t.Fatalf("%d frames counted as received from the sender, want %d", st.Frames.Received, 2*frames)
	}
	// The slow receiver's queue stayed within send_queue although 64 MiB
	// went to a receiver that read nothing.
	if peakQueued > sendQueue || peakQueued == 0 {
		t.Fatalf("%d bytes queued for the slow receiver at most, send_queue = %d", peakQueued, sendQueue)
	}
	t.Logf("sent %d MiB to each receiver in %v; dropped for the slow one: %d queue_full, %d closed",
		frames*frameSize>>20, sendTime, st.Frames.Dropped[DropQueueFull], st.Frames.Dropped[DropClosed])
}

func totalDropped(st Stats) uint64 {
	var n uint64
	for _, d := range st.Frames.Dropped {
		n += d
	}
	return n
}

// A receiver that keeps up never loses a frame while the frames in flight to
// it fit its send queue, even though the writer sends them in large batches
// that it is still writing when the receiver has read their first frames.
func TestReceiverKeepingUpNeverDrops(t *testing.T) {
	const (
		frameSize = 64 << 10
		sendQueue = 1 << 20
		window    = 12 // frames in flight: 3/4 of the queue
		frames    = 2000
	)
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = frameSize
		l.SendQueue = sendQueue
	})
	sender := dialClient(t, s, addr, "sender")
	rcv := receivePaced(dialClient(t, s, addr, "rcv"), frames, window)
	for i := uint64(0); i < frames; i++ {
		rcv.wait(t, s)
		if err := sender.Send("rcv", seqPayload(i, frameSize)); err != nil {
			t.Fatal(err)
		}
	}
	rcv.finish(t, s)
}

// paced is a receiver that checks sequence numbers and returns a credit per
// frame, so that a sender taking a credit before each frame keeps at most
// window frames in flight to it.
type paced struct {
	credit chan struct{}
	done   chan error // the receiver's outcome
}

func receivePaced(c *client.Client, frames uint64, window int) *paced {
	p := &paced{credit: make(chan struct{}, window), done: make(chan error, 1)}
	for i := 0; i < window; i++ {
		p.credit <- struct{}{}
	}
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		for i := uint64(0); i < frames; i++ {
			m, err := c.Recv()
			if err != nil {
				p.done <- fmt.Errorf("frame %d: %w", i, err)
				return
			}
			if got := binary.BigEndian.Uint64(m.Payload); got != i {
				p.done <- fmt.Errorf("frame %d arrived as number %d", got, i)
				return
			}
			p.credit <- struct{}{}
		}
		p.done <- nil
	}()
	return p
}

// wait takes a credit for the next frame, failing the test if the receiver failed.
func (p *paced) wait(t *testing.T, s *Server) {
	t.Helper()
	select {
	case <-p.credit:
	case err := <-p.done:
		t.Fatalf("receiver: %v; drops %v", err, s.Stats().Frames.Dropped)
	}
}

// finish waits until the receiver has every frame.
func (p *paced) finish(t *testing.T, s *Server) {
	t.Helper()
	if err := <-p.done; err != nil {
		t.Fatalf("receiver: %v; drops %v", err, s.Stats().Frames.Dropped)
	}
}

// Nothing a client sends disturbs another client's stream: a clean A→B
// stream runs while hundreds of garbage connections come and go.
func TestGarbageConnectionsDoNotDisturbOthers(t *testing.T) {
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = 64 << 10
		l.LoginTimeout = config.Duration(300 * time.Millisecond)
	})
	a := dialClient(t, s, addr, "a")
	b := dialClient(t, s, addr, "b")

	garbage := [][]byte{
		[]byte("\x00\x01\x02garbage"),
		[]byte("RELY\x01\x09\x01a\x01b\xff\xff\xff\xff"),
		append(loginFrame("g"), transferFrame("a", "b", []byte("forged: from mismatch"))...),
		transferFrame("a", "b", []byte("forged: not logged in")),
		[]byte("RELY\x01"),
		{},
	}

	const frames = 5000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				_, _ = c.Write(garbage[(i+w)%len(garbage)])
				if i%3 == 0 {
					_ = c.Close() // half the time leave it to the server
				} else {
					go func() {
						_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
						var buf [64]byte
						_, _ = c.Read(buf[:])
						_ = c.Close()
					}()
				}
			}
		}(w)
	}

	go func() {
		for i := uint64(0); i < frames; i++ {
			_ = a.Queue("b", seqPayload(i, 100))
			if i%16 == 0 {
				_ = a.Flush()
				time.Sleep(100 * time.Microsecond) // let garbage interleave with the stream
			}
		}
		_ = a.Flush()
	}()
	_ = b.SetReadDeadline(time.Now().Add(60 * time.Second))
	for i := uint64(0); i < frames; i++ {
		m, err := b.Recv()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if got := binary.BigEndian.Uint64(m.Payload); got != i || string(m.From) != "a" {
			t.Fatalf("frame %d: sequence %d from %q", i, got, m.From)
		}
	}
	close(stop)
	wg.Wait()
	st := s.Stats()
	if st.Disconnects[ReasonProtocolError] < 100 {
		t.Fatalf("only %d garbage connections were refused", st.Disconnects[ReasonProtocolError])
	}
	t.Logf("%d garbage connections closed while %d frames went through", st.Disconnects[ReasonProtocolError], frames)
	eventually(t, "garbage connections to be gone", func() bool {
		return s.Stats().Listeners[0].Connections == 2
	})
}

// A thousand half-open connections that never send a byte do not disturb
// logged-in clients and are all closed after login_timeout.
func TestManyHalfOpenConnections(t *testing.T) {
	s, addr := startDefault(t, func(l *config.Limits) { l.LoginTimeout = config.Duration(500 * time.Millisecond) })
	const n = 1000
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	a := dialClient(t, s, addr, "a")
	b := dialClient(t, s, addr, "b")
	if err := a.Send("b", []byte("through the crowd")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := b.Recv(); err != nil || string(m.Payload) != "through the crowd" {
		t.Fatalf("recv: %q, %v", m.Payload, err)
	}
	eventually(t, "half-open connections to time out", func() bool {
		return disconnects(s, ReasonLoginTimeout) == n
	})
}

func TestClientSeesServerClose(t *testing.T) {
	s, addr := startDefault(t, nil)
	c := dialClient(t, s, addr, "kickme")
	old, _ := s.reg.Lookup([]byte("kickme"))
	dialClient2 := dialRaw(t, addr)
	mustWrite(t, dialClient2, loginFrame("kickme"))
	waitPeer(t, s, "kickme", old)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Recv()
	if !errors.Is(err, client.ErrServerClosed) {
		t.Fatalf("Recv after kick: %v, want ErrServerClosed", err)
	}
}

func TestShutdownClosesConnections(t *testing.T) {
	s := New(testLogger(), nil)
	if err := s.Apply(testConfig(nil)); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()["plain"].String()
	c := dialRaw(t, addr)
	mustWrite(t, c, loginFrame("x"))
	waitOnline(t, s, "x")
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, c, time.Second)
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting after shutdown")
	}
	if disconnects(s, ReasonShutdown) != 1 {
		t.Fatalf("shutdown disconnects = %d", disconnects(s, ReasonShutdown))
	}
	if err := s.Apply(testConfig(nil)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Shutdown: %v", err)
	}
}

// A sender remembers its last receiver; when that receiver is kicked by a
// new login, or leaves and logs in again, the next frame reaches the new
// connection, not the old one.
func TestRememberedReceiverFollowsNewLogins(t *testing.T) {
	s, addr := startDefault(t, nil)
	a := loginRaw(t, s, addr, "a")
	b1 := loginRaw(t, s, addr, "b")
	frame := transferFrame("a", "b", []byte("to b"))
	mustWrite(t, a, frame)
	readExactly(t, b1, frame)

	// Kicked: b2 logs in while b1 is still connected.
	old, _ := s.reg.Lookup([]byte("b"))
	b2 := dialRaw(t, addr)
	mustWrite(t, b2, loginFrame("b"))
	waitPeer(t, s, "b", old)
	waitClosed(t, b1, 5*time.Second)
	mustWrite(t, a, frame)
	readExactly(t, b2, frame)

	// Gone, then back: b2 closes, b3 logs in afterwards.
	old, _ = s.reg.Lookup([]byte("b"))
	b2.Close()
	eventually(t, "b2 to be unregistered", func() bool {
		p, ok := s.reg.Lookup([]byte("b"))
		return !ok || p != old
	})
	b3 := loginRaw(t, s, addr, "b")
	mustWrite(t, a, frame)
	readExactly(t, b3, frame)
	if d := s.Stats().Frames.Dropped[DropOffline]; d != 0 {
		t.Fatalf("%d frames dropped as offline", d)
	}
}

// Frames larger than the read buffer are handed to the receiver's queue in
// the buffer they were read into; mixed with small frames, from one sender
// and from two, every byte arrives in order and intact.
func TestLargeFramesHandedOverIntact(t *testing.T) {
	s, addr := startDefault(t, nil)
	a := loginRaw(t, s, addr, "a")
	c := loginRaw(t, s, addr, "c")
	b := loginRaw(t, s, addr, "b")

	var fromA, fromC []byte
	for i := range 40 {
		size := 10
		if i%2 == 1 {
			size = maxReadBuffer + 1000*i // each its own pooled buffer
		}
		payload := bytes.Repeat([]byte{byte(i)}, size)
		fromA = append(fromA, transferFrame("a", "b", payload)...)
		fromC = append(fromC, transferFrame("c", "b", payload)...)
	}
	mustWrite(t, a, fromA)
	readExactly(t, b, fromA) // one sender: its frames in order
	go func() { _, _ = a.Write(fromA) }()
	go func() { _, _ = c.Write(fromC) }()

	// Two senders: each one's frames whole and in order, interleaved.
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest := map[string][]byte{"a": fromA, "c": fromC}
	for len(rest["a"])+len(rest["c"]) > 0 {
		f := readFrame(t, b)
		from := string(f[protocol.HeaderLen+1 : protocol.HeaderLen+1+int(f[protocol.HeaderLen])])
		want := rest[from]
		if len(want) < len(f) || !bytes.Equal(want[:len(f)], f) {
			t.Fatalf("frame from %q of %d bytes is not the next one it sent", from, len(f))
		}
		rest[from] = want[len(f):]
	}
}

// A connection starts with a small read buffer and moves to larger ones
// when its reads fill it; frames the old buffer still held when it moved
// arrive whole and in order.
func TestBusyConnectionOutgrowsTheSmallReadBuffer(t *testing.T) {
	s, addr := startDefault(t, nil)
	a := loginRaw(t, s, addr, "a")
	b := loginRaw(t, s, addr, "b")

	before := s.upgrades.Load()
	var burst []byte
	for i := range 1000 { // ~90 KiB in one write: it fills the 1 KiB buffer, then the 16 KiB one
		burst = append(burst, transferFrame("a", "b", []byte(fmt.Sprintf("frame %03d of the burst %s", i, bytes.Repeat([]byte("."), i%70))))...)
	}
	mustWrite(t, a, burst)
	readExactly(t, b, burst)
	if n := s.upgrades.Load() - before; n != 2 {
		t.Fatalf("%d moves to a larger read buffer during a 90 KiB burst, want 2 (1 KiB -> 16 KiB -> 64 KiB)", n)
	}
}

// An idle logged-in connection gives its read buffer back and waits for the
// next byte without one; frames after that arrive whole, in both
// directions, and idle_timeout still counts from the last complete frame.
func TestIdleConnectionsParkTheirReadBuffer(t *testing.T) {
	const idle = 600 * time.Millisecond
	s := startServerWith(t, testConfig(func(l *config.Limits) { l.IdleTimeout = config.Duration(idle) }), parkQuickly)
	addr := s.Addrs()["plain"].String()

	before := s.idleParks.Load()
	a := loginRaw(t, s, addr, "a")
	b := loginRaw(t, s, addr, "b")
	eventually(t, "both connections to park", func() bool { return s.idleParks.Load() >= before+2 })

	for i, dir := range []struct {
		from, to net.Conn
		id, peer string
	}{{a, b, "a", "b"}, {b, a, "b", "a"}} {
		frame := transferFrame(dir.id, dir.peer, bytes.Repeat([]byte{byte(i)}, 3000))
		mustWrite(t, dir.from, frame)
		readExactly(t, dir.to, frame)
	}
	// Parked again, then a frame trickled one byte at a time: the first
	// byte wakes the connection, the rest arrive through its new buffer.
	parked := s.idleParks.Load()
	eventually(t, "the connections to park again", func() bool { return s.idleParks.Load() >= parked+2 })
	frame := transferFrame("a", "b", []byte("woken byte by byte"))
	for _, c := range frame {
		mustWrite(t, a, []byte{c})
	}
	readExactly(t, b, frame)

	// A frame larger than the read buffer, whose payload pauses longer than
	// idleAfter midway: the connection must not park inside it.
	big := transferFrame("a", "b", bytes.Repeat([]byte("z"), 3*maxReadBuffer))
	mustWrite(t, a, big[:len(big)/2])
	time.Sleep(4 * s.idleAfter) // the pause under test, not a wait for a condition
	mustWrite(t, a, big[len(big)/2:])
	readExactly(t, b, big)

	// A parked connection that stays silent is closed at idle_timeout.
	start := time.Now()
	waitClosed(t, a, 5*time.Second)
	if el := time.Since(start); el < idle/2 || el > 3*idle {
		t.Fatalf("closed after %v, idle_timeout is %v", el, idle)
	}
	if disconnects(s, ReasonIdleTimeout) == 0 {
		t.Fatal("not counted as an idle timeout")
	}
}
