package cluster

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// link carries frames and credits to one other node. Senders append to its
// buffers and return; its own goroutine publishes them, many frames per NATS
// message while the previous publish was under way, so batching falls out of
// the loop's shape and a client's read loop never waits on NATS.
//
// Credits (and the acknowledgement of the node's frames) wait up to
// CreditDelay for frames going to the node, to go out in the same flush,
// unless they add up to a quarter of a window first: a reply crossing the
// cluster then shares its trip with the credit for the request, where a
// credit of its own woke nats-server and the other node once more while
// the reply was on its way (64 B round trip between nodes, p50 400 -> 275-325
// µs). A quarter of a window is four times what a sender still has when its
// credit leaves.
type link struct {
	// Static after construction.
	c          *Cluster
	node       *node
	dataSubj   string        // frames for the node
	creditSubj string        // credits for frames the node sent us
	kick       chan struct{} // capacity 1: there is something to publish
	stop       chan struct{} // closed when the node is dropped

	mu          sync.Mutex
	frames      []byte           // data records waiting, guarded by mu
	credits     []byte           // credit entries waiting, guarded by mu
	creditBytes int64            // guarded by mu: the bytes credits credit
	sending     int              // bytes of records being published now, guarded by mu
	win         nodeWindow       // frames queued for the node and not yet acknowledged
	readTo      int64            // guarded by mu: the position the node's frames were read up to here, to acknowledge
	waiters     registry.Waiters // senders waiting for room or credit, guarded by mu
	closed      bool             // guarded by mu

	// Owned by the link's goroutine.
	spareFrames, spareCredits []byte
	scratch                   []byte // one message of a frame larger than a message, or of credits
	ackedTo                   int64  // readTo as last published
}

func newLink(c *Cluster, n *node) *link {
	return &link{
		c:          c,
		node:       n,
		dataSubj:   c.prefix + "data." + n.instance + "." + c.instance,
		creditSubj: c.prefix + "credit." + n.instance + "." + c.instance,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
	}
}

func (l *link) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// addWaiter registers w to be signalled when room or credit may have come.
// Called with mu held.
func (l *link) addWaiter(w *registry.Waiter) { l.waiters.Add(w) }

// signalWaiters wakes every waiting sender. Called with mu held.
func (l *link) signalWaiters() { l.waiters.Signal() }

// wakeWaiters is signalWaiters for callers not holding mu.
func (l *link) wakeWaiters() {
	l.mu.Lock()
	l.signalWaiters()
	l.mu.Unlock()
}

// close stops the link; frames still waiting are dropped.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.stop)
	l.signalWaiters()
}

// Deliver implements registry.Peer. It copies frame into the link's buffer
// for the receiver's node, unless a window is full (the receiver's, or the
// node's: frames sent that the node has not credited or acknowledged yet)
// or the link's buffer is: then a sender that can wait gets Wait, and is
// signalled when credit or room comes.
func (p *remotePeer) Deliver(frame []byte, w *registry.Waiter) registry.Result {
	if p.gone.Load() {
		return registry.Gone
	}
	l := p.node.link
	c := l.c
	if !c.connected.Load() {
		return registry.Down
	}
	n := int64(len(frame))
	if !p.win.take(n, c.window, c.opt.NodeTimeout, &c.creditResets) {
		if w == nil {
			return registry.QueueFull
		}
		l.mu.Lock()
		l.addWaiter(w)
		l.mu.Unlock()
		// Credit that came between the check and the registration
		// signalled no one: look again.
		if !p.win.take(n, c.window, c.opt.NodeTimeout, &c.creditResets) {
			w.Max = c.waitMax
			return registry.Wait
		}
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		p.win.give(n)
		return registry.Gone
	}
	// Checked under mu, where acknowledgements and the end of a publish
	// signal the waiters: nothing comes between the check and the
	// registration.
	q := len(l.frames) + l.sending
	if q > 0 && q+recHeader+len(frame) > c.outMax || l.win.fullLocked(c.nodeWindow, c.opt.NodeTimeout, &c.creditResets) {
		var r registry.Result = registry.QueueFull
		if w != nil {
			l.addWaiter(w)
			w.Max = c.waitMax
			r = registry.Wait
		}
		l.mu.Unlock()
		// Whoever the receiver's window turned away meanwhile waits for
		// this node's acknowledgement, which wakes every waiter.
		p.win.give(n)
		return r
	}
	l.win.queueLocked(n)
	l.frames = appendRecordHeader(l.frames, kindFrame, len(frame))
	l.frames = append(l.frames, frame...)
	l.mu.Unlock()
	l.wake()
	return registry.Sent
}

// Kick implements registry.Peer. A remote client is kicked by its own node,
// when it hears of the newer login.
func (p *remotePeer) Kick() {}

// addCredits queues credit entries for the node, for n bytes.
func (l *link) addCredits(entries []byte, n int64) {
	l.mu.Lock()
	if !l.closed {
		l.credits = append(l.credits, entries...)
		l.creditBytes += n
	}
	l.mu.Unlock()
	l.wake()
}

// shrinkAbove is the capacity past which a buffer that carried a large frame
// is let go rather than kept for the next batch.
const shrinkAbove = 4 << 20

func reuse(b []byte) []byte { return reuseUpTo(b, shrinkAbove) }

func reuseUpTo(b []byte, most int) []byte {
	if cap(b) > most {
		return nil
	}
	return b[:0]
}

// received queues the credit entries for one message from the node (for n
// bytes), and the position its frames were read up to, for one credit
// message to carry both.
func (l *link) received(entries []byte, n, pos int64) {
	l.mu.Lock()
	if !l.closed {
		l.credits = append(l.credits, entries...)
		l.creditBytes += n
	}
	l.readTo = max(l.readTo, pos)
	l.mu.Unlock()
	l.wake()
}

// acknowledged records the node's acknowledgement of pos and wakes the
// senders waiting for room.
func (l *link) acknowledged(pos int64) {
	l.win.ack(pos)
	l.wakeWaiters()
}

// resetWindow forgets what is in flight to the node: it was lost.
func (l *link) resetWindow() {
	l.mu.Lock()
	l.win.ack(l.win.queued)
	l.signalWaiters()
	l.mu.Unlock()
}

// run publishes what senders queue until the link stops.
func (l *link) run() {
	defer l.c.wg.Done()
	hold := time.NewTimer(time.Hour) // armed while credits wait for frames
	hold.Stop()
	defer hold.Stop()
	held := false
	for {
		due := false // held long enough
		select {
		case <-l.kick:
		case <-hold.C:
			held, due = false, true
		case <-l.stop:
			l.mu.Lock()
			l.c.dropShutdown.Add(countFrames(l.frames))
			l.frames, l.credits = nil, nil
			l.mu.Unlock()
			return
		}
		l.mu.Lock()
		if len(l.frames) == 0 && !due && !l.creditsPressLocked() {
			if !held && (len(l.credits) > 0 || l.readTo > l.ackedTo) {
				hold.Reset(l.c.opt.CreditDelay)
				held = true
			}
			l.mu.Unlock()
			continue
		}
		frames, credits, readTo, end := l.frames, l.credits, l.readTo, l.win.queued
		l.frames, l.credits = l.spareFrames, l.spareCredits
		l.creditBytes = 0
		l.sending = len(frames)
		l.mu.Unlock()
		if held {
			hold.Stop()
			held = false
		}

		max := int(l.c.maxMsg.Load())
		if len(credits) > 0 || readTo > l.ackedTo {
			l.publishCredits(credits, readTo, max)
			l.ackedTo = readTo
		}
		if len(frames) > 0 {
			// The batch ends with where it ends, in its last message: what
			// the node acknowledges once read. Lost, the next batch's
			// covers it.
			frames = appendRecordHeader(frames, kindPos, 8)
			frames = binary.BigEndian.AppendUint64(frames, uint64(end))
			l.publishFrames(frames, max)
		}

		l.mu.Lock()
		l.sending = 0
		// The frames buffer is kept up to the outbound bound: under load
		// every batch grows to it, and regrowing it from nothing cost a
		// third of a node's CPU (growslice in Deliver).
		l.spareFrames, l.spareCredits = reuseUpTo(frames, l.c.outMax), reuse(credits)
		l.signalWaiters()
		l.mu.Unlock()
	}
}

// creditsPressLocked reports whether the credits and acknowledgement
// waiting should go now, without frames: they add up to a quarter of a
// receiver's window, or of the node's. Called by run with mu held.
func (l *link) creditsPressLocked() bool {
	return l.creditBytes >= l.c.window/4 || l.readTo-l.ackedTo >= l.c.nodeWindow/4
}

func countFrames(b []byte) uint64 {
	var n uint64
	for len(b) > 0 {
		kind, _, rest, err := nextRecord(b)
		if err != nil {
			break
		}
		b = rest
		if kind == kindFrame {
			n++
		}
	}
	return n
}

// publishFrames publishes data records in messages of at most max bytes;
// a frame larger than that goes in parts, in messages of its own.
func (l *link) publishFrames(b []byte, max int) {
	start, frames := 0, uint64(0)
	flush := func(end int) {
		if end > start {
			l.publish(l.dataSubj, b[start:end], frames)
		}
		start, frames = end, 0
	}
	for i := 0; i < len(b); {
		n := recHeader + int(binary.BigEndian.Uint32(b[i+1:]))
		switch {
		case n > max:
			flush(i)
			l.publishLarge(b[i+recHeader:i+n], max)
			start = i + n
		case i+n-start > max:
			flush(i)
		}
		if b[i] == kindFrame && n <= max {
			frames++
		}
		i += n
	}
	flush(len(b))
}

// publishLarge publishes one frame in parts that each fit a message.
func (l *link) publishLarge(frame []byte, max int) {
	whole, first := frame, true
	for len(frame) > 0 {
		m := reuse(l.scratch)
		var part int
		if first {
			part = min(len(frame), max-recHeader-4)
			m = appendRecordHeader(m, kindBegin, 4+part)
			m = binary.BigEndian.AppendUint32(m, uint32(len(frame)))
		} else {
			part = min(len(frame), max-recHeader)
			m = appendRecordHeader(m, kindMore, part)
		}
		m = append(m, frame[:part]...)
		frame = frame[part:]
		l.scratch = m
		if err := l.c.nc.Publish(l.dataSubj, m); err != nil {
			l.lost(whole)
			return
		}
		first = false
	}
	l.c.framesSent.Add(1)
}

// publish sends one message of whole frames; frames is how many, for the
// counters.
func (l *link) publish(subj string, m []byte, frames uint64) {
	if err := l.c.nc.Publish(subj, m); err != nil {
		for b := m; len(b) > 0; {
			kind, body, rest, err := nextRecord(b)
			if err != nil {
				break
			}
			if kind == kindFrame {
				l.lost(body)
			}
			b = rest
		}
		return
	}
	l.c.framesSent.Add(frames)
}

// lost counts a frame that could not be published (cluster_down) and gives
// its bytes back to its receiver's window, which no credit will. The node's
// window needs nothing: the next acknowledgement covers the frame.
func (l *link) lost(frame []byte) {
	l.c.dropDown.Add(1)
	if to, ok := protocol.TransferTo(frame); ok {
		if p, ok := l.c.dir.lookupRemote(to); ok && p.node == l.node {
			p.win.give(int64(len(frame)))
		}
	}
}

// publishCredits sends credit entries in messages of at most max bytes,
// each behind the position this node has read the other's frames up to. A
// lost credit message is not retried: the window it would have opened is
// reset after node_timeout, and the next acknowledgement covers its
// position.
func (l *link) publishCredits(b []byte, readTo int64, max int) {
	send := func(entries []byte) {
		m := binary.BigEndian.AppendUint64(reuse(l.scratch), uint64(readTo))
		l.scratch = append(m, entries...)
		_ = l.c.nc.Publish(l.creditSubj, l.scratch)
	}
	start := 0
	for i := 0; i < len(b); {
		n := 1 + int(b[i]) + 4
		if i+n-start > max-8 {
			send(b[start:i])
			start = i
		}
		i += n
	}
	if len(b) > start || len(b) == 0 {
		send(b[start:])
	}
}
