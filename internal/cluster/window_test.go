package cluster

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relayd/relayd/internal/registry"
)

// A receiving node that reads NATS slowly (short of CPU) leaves frames
// in the NATS server's outbound buffer for it, which the server bounds by
// max_pending and enforces by disconnecting it as a slow consumer, losing
// everything in flight. The windows of 16 receivers (16 MiB) pass that;
// the node's window keeps all of them below it.
func TestNodeWindowBelowMaxPending(t *testing.T) {
	o := natsOpts(0)
	o.MaxPending = 2 << 20
	s := startNATS(t, o)
	px := newPausingProxy(t, s.Addr().String())
	slowNATS := func(o *Options) { o.NodeTimeout = 5e9 }
	a := newNode(t, "nodeA", []string{natsURL(s)}, slowNATS, func(o *Options) { o.NodeWindow = 1 << 20 })
	b := newNode(t, "nodeB", []string{"nats://" + px.addr()}, slowNATS)
	waitFor(t, "the nodes to see each other", func() bool { return a.Stats().Nodes == 2 && b.Stats().Nodes == 2 })

	const receivers, frames, size = 16, 100, 16 << 10 // 1.6 MiB to each receiver
	peers := make([]*fakePeer, receivers)
	for i := range peers {
		peers[i] = newPeer(fmt.Sprint("r", i))
		login(t, b, peers[i].name, peers[i])
		remote(t, a, peers[i].name)
	}

	px.pause() // node B stops reading NATS
	var senders sync.WaitGroup
	var waiting atomic.Int32
	for i := range peers {
		senders.Add(1)
		go func() {
			defer senders.Done()
			w := registry.NewWaiter()
			f := frame(t, "alice", peers[i].name, make([]byte, size))
			p, _ := a.Lookup([]byte(peers[i].name))
			for sent := 0; sent < frames; {
				switch r := p.Deliver(f, w); r {
				case registry.Sent:
					sent++
				case registry.Wait:
					waiting.Add(1)
					select {
					case <-w.C:
					case <-time.After(w.Max):
					}
					waiting.Add(-1)
				default:
					t.Errorf("send to %s: %v", peers[i].name, r)
					return
				}
			}
		}()
	}
	// No credit comes while node B reads nothing: every sender ends up
	// waiting, with as much in flight as node A lets go.
	waitFor(t, "every sender to wait", func() bool { return waiting.Load() == receivers })
	var l *link
	a.forEachLink(func(x *link) { l = x })
	l.mu.Lock()
	got := l.win.inflightLocked()
	l.mu.Unlock()
	if got > 1<<20+size {
		t.Fatalf("%d bytes in flight to node B, window 1 MiB", got)
	}
	px.resume()
	senders.Wait()
	waitFor(t, "every frame at node B", func() bool {
		for _, p := range peers {
			if p.count() != frames {
				return false
			}
		}
		return true
	})
	if n := s.NumSlowConsumers(); n != 0 {
		t.Fatalf("NATS counted %d slow consumers", n)
	}
	if st := b.Stats(); st.DroppedQueueFull+st.DroppedOffline+st.DroppedClosed+st.DroppedMalformed+st.CreditResets != 0 {
		t.Fatalf("node B: %+v", st)
	}
}

// pausingProxy forwards TCP connections to a NATS server; while paused it
// stops forwarding what the server sends, as a node short of CPU would
// stop reading it.
type pausingProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
	closed bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newPausingProxy(t *testing.T, target string) *pausingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pausingProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *pausingProxy) addr() string { return p.ln.Addr().String() }

func (p *pausingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(up, c); up.Close() }()
		go func() { defer p.wg.Done(); p.down(c, up); c.Close() }()
	}
}

// down copies from the server to the client, holding back while paused.
func (p *pausingProxy) down(c, up net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		p.mu.Lock()
		for p.paused && !p.closed {
			p.cond.Wait()
		}
		p.mu.Unlock()
		n, err := up.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *pausingProxy) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

func (p *pausingProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pausingProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Frames lost on the way (NATS cuts a slow consumer off, a reconnect) are
// never credited, yet cost node A's window to node B nothing once B
// acknowledges a later position: it ends empty, not short of what was
// lost.
func TestNodeWindowSurvivesLostMessages(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	var losing atomic.Bool
	var lostTo atomic.Int64 // the last position in a lost message
	a := newNode(t, "nodeA", []string{natsURL(s)})
	b := newNode(t, "nodeB", []string{natsURL(s)})
	lose := func(m *nats.Msg) bool {
		if !losing.Load() {
			return false
		}
		for rec := m.Data; len(rec) > 0; {
			kind, body, rest, err := nextRecord(rec)
			if err != nil {
				break
			}
			if kind == kindPos {
				lostTo.Store(int64(binary.BigEndian.Uint64(body)))
			}
			rec = rest
		}
		return true
	}
	b.testLoseData.Store(&lose)
	waitFor(t, "the nodes to see each other", func() bool { return a.Stats().Nodes == 2 && b.Stats().Nodes == 2 })
	gone, late := newPeer("gone"), newPeer("late")
	login(t, b, "gone", gone)
	login(t, b, "late", late)
	remote(t, a, "gone")
	remote(t, a, "late")

	losing.Store(true)
	w := registry.NewWaiter()
	for range 32 { // 512 KiB, within the receiver's window: no wait for credit
		if r := send(a, w, "gone", frame(t, "alice", "gone", make([]byte, 16<<10))); r != registry.Sent {
			t.Fatalf("send: %v", r)
		}
	}
	var l *link
	a.forEachLink(func(x *link) { l = x })
	waitFor(t, "every frame and its position to be lost", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return lostTo.Load() == l.win.queued
	})
	losing.Store(false)

	for i := range 100 {
		if r := send(a, w, "late", seqFrame(t, "late", i)); r != registry.Sent {
			t.Fatalf("late send %d: %v", i, r)
		}
	}
	waitFor(t, "the late frames", func() bool { return late.count() == 100 })
	waitFor(t, "node A's window to node B to empty", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.win.inflightLocked() == 0
	})
	if gone.count() != 0 {
		t.Fatalf("%d lost frames arrived", gone.count())
	}
}

// Concurrent senders overshoot a window by one frame at most, and a frame
// larger than what is left still goes once the window is below its size.
func TestWindowTake(t *testing.T) {
	var w window
	var resets atomic.Uint64
	const size, frame = 1 << 20, 48 << 10
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.take(frame, size, time.Hour, &resets) {
			}
		}()
	}
	wg.Wait()
	if in := w.inflight.Load(); in < size || in >= size+frame {
		t.Fatalf("%d in flight, window %d, frames %d", in, size, frame)
	}
	w.credit(w.inflight.Load()-size+1, time.Now().UnixNano()) // one byte of room
	if !w.take(8<<20, size, time.Hour, &resets) {
		t.Fatal("a large frame waits though the window is not full")
	}
	if w.take(1, size, time.Hour, &resets) {
		t.Fatal("a full window took more")
	}
	if !w.take(1, size, 0, &resets) || resets.Load() != 1 {
		t.Fatalf("a window without credit for its stale time did not start over (resets %d)", resets.Load())
	}
}

// A frame on its own, as chat sends them, costs one data message (its
// batch's position rides along) and one credit message back (the
// acknowledgement rides along).
func TestOneFrameOneMessageEachWay(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	bob := newPeer("bob")
	login(t, b, "bob", bob)
	remote(t, a, "bob")

	spy, err := nats.Connect(natsURL(s))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	var data, credit atomic.Int32
	for subj, n := range map[string]*atomic.Int32{a.prefix + "data.>": &data, a.prefix + "credit.>": &credit} {
		if _, err := spy.Subscribe(subj, func(*nats.Msg) { n.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r := send(a, registry.NewWaiter(), "bob", seqFrame(t, "bob", i)); r != registry.Sent {
			t.Fatalf("send: %v", r)
		}
		waitFor(t, "the frame and its credit", func() bool { return bob.count() == i+1 && credit.Load() == int32(i+1) })
	}
	var l *link
	a.forEachLink(func(x *link) { l = x })
	waitFor(t, "node A's window to node B to empty", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.win.inflightLocked() == 0
	})
	if d, c := data.Load(), credit.Load(); d != 5 || c != 5 {
		t.Fatalf("5 frames one at a time took %d data and %d credit messages, want 5 and 5", d, c)
	}
}

// twoNodesSpied starts two nodes with the given credit delay and window,
// bob logged in on B and alice on A, and counts the credit messages on the
// NATS server.
func twoNodesSpied(t *testing.T, delay time.Duration, window int) (a, b *testNode, alice, bob *fakePeer, credits *atomic.Int32) {
	t.Helper()
	s := startNATS(t, natsOpts(0))
	tweak := func(o *Options) { o.CreditDelay, o.Window = delay, window }
	a = newNode(t, "nodeA", []string{natsURL(s)}, tweak)
	b = newNode(t, "nodeB", []string{natsURL(s)}, tweak)
	spy, err := nats.Connect(natsURL(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(spy.Close)
	credits = new(atomic.Int32)
	if _, err := spy.Subscribe(a.prefix+"credit.>", func(*nats.Msg) { credits.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	alice, bob = newPeer("alice"), newPeer("bob")
	login(t, a, "alice", alice)
	login(t, b, "bob", bob)
	remote(t, a, "bob")
	remote(t, b, "alice")
	return a, b, alice, bob, credits
}

// A credit waits CreditDelay for frames going its way before it goes alone.
func TestCreditWaitsForFramesGoingBack(t *testing.T) {
	const delay = 200 * time.Millisecond
	a, _, _, bob, credits := twoNodesSpied(t, delay, 0)
	start := time.Now()
	if r := send(a, registry.NewWaiter(), "bob", seqFrame(t, "bob", 1)); r != registry.Sent {
		t.Fatalf("send: %v", r)
	}
	waitFor(t, "the frame and its credit", func() bool { return bob.count() == 1 && credits.Load() == 1 })
	if took := time.Since(start); took < delay {
		t.Fatalf("the credit came after %v, before the %v it may wait for frames back", took, delay)
	}
}

// A reply takes the credit for the request with it: with a credit delay
// far beyond the test's deadline, the credit still comes.
func TestCreditRidesWithTheReply(t *testing.T) {
	a, b, alice, bob, credits := twoNodesSpied(t, time.Hour, 0)
	if r := send(a, registry.NewWaiter(), "bob", seqFrame(t, "bob", 1)); r != registry.Sent {
		t.Fatalf("send: %v", r)
	}
	waitFor(t, "the request", func() bool { return bob.count() == 1 })
	if r := send(b, registry.NewWaiter(), "alice", seqFrame(t, "alice", 1)); r != registry.Sent {
		t.Fatalf("send the reply: %v", r)
	}
	// Node A's credit for the reply waits (no frames go back), node B's
	// went with the reply.
	waitFor(t, "the reply and the request's credit", func() bool { return alice.count() == 1 && credits.Load() == 1 })
}

// Credits for a quarter of a window go at once, frames back or not.
func TestCreditsForAQuarterWindowGoAtOnce(t *testing.T) {
	const window = 64 << 10
	a, _, _, bob, credits := twoNodesSpied(t, time.Hour, window)
	payload := make([]byte, 1000)
	n := 0
	for sent := 0; sent < window/4; n++ {
		f := frame(t, "alice", "bob", payload)
		if r := send(a, registry.NewWaiter(), "bob", f); r != registry.Sent {
			t.Fatalf("send %d: %v", n, r)
		}
		sent += len(f)
	}
	waitFor(t, "the frames and a credit for them", func() bool { return bob.count() == n && credits.Load() >= 1 })
}
