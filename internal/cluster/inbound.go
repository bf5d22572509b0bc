package cluster

import (
	"bytes"
	"encoding/binary"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// Frames from other nodes arrive on one subscription, whose goroutine hands
// each to the local receiver's send queue. A receiver whose queue is full
// but who is reading (its peer answers Wait) gets a pending queue and a
// goroutine of its own that feeds it as it reads, so it never holds up
// frames for other receivers. Every frame taken off the network, delivered
// or dropped, is credited back to the node that sent it; a node sends a
// receiver at most window bytes ahead of its credits, which bounds each
// pending queue and paces the senders of a receiver that reads slowly.

// assembly is a frame larger than one NATS message, being put together.
type assembly struct {
	buf   *bufpool.Buf // nil when none is under way
	total int
	skip  bool // parts of a frame too large to accept are being skipped
}

func (a *assembly) reset(c *Cluster) {
	if a.buf != nil {
		c.dropMalformed.Add(1) // its last parts never came
		bufpool.Put(a.buf)
		a.buf = nil
	}
	a.skip = false
}

// onData is the data subscription's handler.
func (c *Cluster) onData(m *nats.Msg) {
	if lose := c.testLoseData.Load(); lose != nil && (*lose)(m) {
		return
	}
	n := c.dir.liveNode(lastToken(m.Subject))
	l := n.link
	if l == nil {
		return // the cluster is closing
	}
	c.cs, c.csLast, c.csBytes = c.cs[:0], -1, 0
	var frames uint64
	var pos int64 // where the sender says the batch ends, if this message ends one
	for b := m.Data; len(b) > 0; {
		kind, body, rest, err := nextRecord(b)
		if err != nil {
			c.dropMalformed.Add(1)
			break
		}
		b = rest
		switch kind {
		case kindFrame:
			n.asm.reset(c)
			frames++
			c.deliverIn(l, body)
		case kindBegin:
			n.asm.reset(c)
			if len(body) < 4 {
				c.dropMalformed.Add(1)
				continue
			}
			total := int(binary.BigEndian.Uint32(body))
			if total > c.maxFrame || len(body)-4 > total {
				c.dropMalformed.Add(1)
				n.asm.skip = true
				continue
			}
			n.asm.buf = bufpool.Get(total)
			n.asm.total = total
			n.asm.buf.B = append(n.asm.buf.B, body[4:]...)
		case kindPos:
			if len(body) != 8 {
				c.dropMalformed.Add(1)
				continue
			}
			pos = max(pos, int64(binary.BigEndian.Uint64(body)))
		case kindMore:
			a := &n.asm
			if a.skip {
				continue
			}
			if a.buf == nil || len(a.buf.B)+len(body) > a.total {
				a.reset(c)
				c.dropMalformed.Add(1)
				continue
			}
			a.buf.B = append(a.buf.B, body...)
		default:
			c.dropMalformed.Add(1)
		}
		if a := &n.asm; a.buf != nil && len(a.buf.B) == a.total {
			frames++
			c.deliverIn(l, a.buf.B)
			bufpool.Put(a.buf)
			a.buf = nil
		}
	}
	c.framesReceived.Add(frames)
	if len(c.cs) > 0 || pos > 0 {
		l.received(c.cs, c.csBytes, pos)
	}
}

// deliverIn hands one frame from l's node to its local receiver. Called by
// the data subscription's goroutine only.
func (c *Cluster) deliverIn(l *link, frame []byte) {
	to, ok := protocol.TransferTo(frame)
	if !ok {
		c.dropMalformed.Add(1) // not credited: it came from a broken node
		return
	}
	if c.nInbound.Load() > 0 {
		c.inMu.Lock()
		if in := c.inbound[string(to)]; in != nil {
			in.push(l, frame)
			c.inMu.Unlock()
			return
		}
		c.inMu.Unlock()
	}
	p, ok := c.dir.local.Lookup(to)
	if !ok {
		c.dropOffline.Add(1)
		c.credit(to, len(frame))
		return
	}
	switch p.Deliver(frame, c.probe) {
	case registry.Delivered:
	case registry.Wait:
		// The receiver reads more slowly than frames come: queue this one
		// and those after it until it has taken them.
		in := &inbound{c: c, id: string(to), peer: p, w: c.probe}
		c.probe = registry.NewWaiter()
		in.push(l, frame)
		if c.startGoroutine() {
			c.inMu.Lock()
			c.inbound[in.id] = in
			c.nInbound.Add(1)
			c.inMu.Unlock()
			go in.run()
			return // credited once delivered
		}
		in.dropAll(&c.dropShutdown)
		return
	case registry.QueueFull:
		c.dropQueueFull.Add(1)
	default:
		c.dropOffline.Add(1) // the receiver closed just now
	}
	c.credit(to, len(frame))
}

// credit adds n bytes of credit for id to the entries for the current
// message's sender, merging runs of frames to one receiver.
func (c *Cluster) credit(id []byte, n int) {
	c.csBytes += int64(n)
	if c.csLast >= 0 {
		last := c.cs[c.csLast:]
		if l := int(last[0]); bytes.Equal(last[1:1+l], id) {
			if v := int64(binary.BigEndian.Uint32(last[1+l:])) + int64(n); v <= 1<<31 {
				binary.BigEndian.PutUint32(last[1+l:], uint32(v))
				return
			}
		}
	}
	c.csLast = len(c.cs)
	c.cs = appendCredit(c.cs, id, int64(n))
}

// onCredit is the credit subscription's handler: a node took frames we sent
// off the network.
func (c *Cluster) onCredit(m *nats.Msg) {
	n := c.dir.node([]byte(lastToken(m.Subject)))
	if n == nil {
		return
	}
	if len(m.Data) < 8 {
		c.dropMalformed.Add(1)
		return
	}
	pos := int64(binary.BigEndian.Uint64(m.Data))
	now := time.Now().UnixNano()
	for b := m.Data[8:]; len(b) > 0; {
		id, cr, rest, err := nextCredit(b)
		if err != nil {
			c.dropMalformed.Add(1)
			break
		}
		b = rest
		if p, ok := c.dir.lookupRemote(id); ok && p.node == n {
			p.win.credit(cr, now) // also credit for an earlier login of the ID there
		}
	}
	if l := n.link; l != nil {
		l.acknowledged(pos)
	}
}

// inbound holds frames for one local receiver that is reading more slowly
// than they come, and feeds them to it as it reads.
type inbound struct {
	// Static after construction.
	c    *Cluster
	id   string
	peer registry.Peer
	w    *registry.Waiter // signalled by peer when it has room

	mu    sync.Mutex
	q     []byte    // frames waiting, back to back from off, guarded by mu
	off   int       // bytes of q already delivered, guarded by mu
	ents  []pending // one per frame in q from head, guarded by mu
	head  int       // guarded by mu
	bytes int       // bytes waiting, guarded by mu
}

type pending struct {
	l *link // whom to credit
	n int
}

// push queues a frame, or drops it when the queue is over its bound: the
// senders' windows keep it below that unless credits were lost.
func (in *inbound) push(l *link, frame []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.bytes > 0 && in.bytes+len(frame) > in.c.pendingMax {
		in.c.dropQueueFull.Add(1)
		l.addCredits(appendCredit(nil, []byte(in.id), int64(len(frame))), int64(len(frame)))
		return
	}
	in.q = append(in.q, frame...)
	in.ents = append(in.ents, pending{l, len(frame)})
	in.bytes += len(frame)
}

// run feeds the receiver until the queue is empty.
func (in *inbound) run() {
	c := in.c
	defer c.wg.Done()
	t := time.NewTimer(max(in.w.Max, time.Millisecond))
	defer t.Stop()
	var credit []byte
	for {
		select {
		case <-in.w.C:
		case <-t.C:
		case <-c.done:
			c.retire(in, true)
			in.dropAll(&c.dropShutdown)
			return
		}
		for {
			in.mu.Lock()
			if in.head == len(in.ents) {
				in.mu.Unlock()
				if c.retire(in, false) {
					return
				}
				continue
			}
			e := in.ents[in.head]
			frame := in.q[in.off : in.off+e.n]
			in.mu.Unlock()

			r := in.peer.Deliver(frame, in.w)
			if r == registry.Wait {
				t.Reset(max(in.w.Max, time.Millisecond))
				break
			}
			switch r {
			case registry.Delivered:
			case registry.QueueFull:
				c.dropQueueFull.Add(1)
			default:
				c.dropClosed.Add(1)
			}
			in.pop()
			credit = appendCredit(credit[:0], []byte(in.id), int64(e.n))
			e.l.addCredits(credit, int64(e.n))
		}
	}
}

// pop removes the frame at the head, reclaiming space now and then.
func (in *inbound) pop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	e := in.ents[in.head]
	in.ents[in.head] = pending{}
	in.head++
	in.off += e.n
	in.bytes -= e.n
	if in.head == len(in.ents) {
		in.q, in.ents, in.head, in.off = in.q[:0], in.ents[:0], 0, 0
		if cap(in.q) > shrinkAbove {
			in.q = nil
		}
		return
	}
	if in.off > 1<<20 && in.off > len(in.q)/2 {
		in.q = in.q[:copy(in.q, in.q[in.off:])]
		in.off = 0
		in.ents = in.ents[:copy(in.ents, in.ents[in.head:])]
		in.head = 0
	}
}

// retire removes in from the cluster's pending queues if it is empty, or
// whatever it holds when force is set, and reports whether it did.
func (c *Cluster) retire(in *inbound, force bool) bool {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	in.mu.Lock()
	empty := in.head == len(in.ents)
	in.mu.Unlock()
	if !empty && !force {
		return false
	}
	if c.inbound[in.id] == in {
		delete(c.inbound, in.id)
		c.nInbound.Add(-1)
	}
	return true
}

// dropAll drops and credits every frame waiting, counting them in counter.
func (in *inbound) dropAll(counter interface{ Add(uint64) uint64 }) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, e := range in.ents[in.head:] {
		counter.Add(1)
		e.l.addCredits(appendCredit(nil, []byte(in.id), int64(e.n)), int64(e.n))
	}
	in.q, in.ents, in.head, in.off, in.bytes = nil, nil, 0, 0, 0
}

func lastToken(subj string) string {
	for i := len(subj) - 1; i >= 0; i-- {
		if subj[i] == '.' {
			return subj[i+1:]
		}
	}
	return subj
}
