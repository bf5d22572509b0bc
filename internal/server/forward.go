package server

import (
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// forward offers a transfer frame to its receiver and returns the outcome;
// Gone when nobody is logged in as its ToClientID.
//
// The receiver of the previous frame is remembered, so that a stream to
// one receiver looks the registry up once; a remembered receiver that has
// been kicked, has closed or (in a cluster) has moved answers Gone, and
// the ID is looked up again.
//
// When the receiver has no room but is taking data, the sender waits here:
// its read loop stops reading, so TCP paces the client to what its
// receiver takes (docs/PROTOCOL.md rule 9). Wait comes back only when this
// connection closed meanwhile.
func (c *conn) forward(f *protocol.Frame, large *bufpool.Buf) registry.Result {
	waited := false
	for {
		r := c.offer(f, large)
		if r != registry.Wait {
			return r
		}
		if !waited {
			waited = true
			c.counts.waits.add(1)
		}
		if !c.await(c.waiterFor().Max) {
			return registry.Wait
		}
	}
}

// offer offers f once, to the remembered receiver or the one the registry
// names.
func (c *conn) offer(f *protocol.Frame, large *bufpool.Buf) (r registry.Result) {
	if p := c.lastPeer; p != nil && string(c.lastTo) == string(f.To) {
		if r := c.deliverTo(p, f, large); r != registry.Gone {
			return r
		}
		c.lastPeer = nil
	}
	peer, ok := c.srv.reg.Lookup(f.To)
	if !ok {
		return registry.Gone
	}
	defer func() {
		if r == registry.Gone {
			// Still registered, yet gone: the receiver is closing (kicked,
			// flushed at shutdown) and has not unregistered yet.
			r = closing
		}
	}()
	// Remembered before delivering: a frame in a buffer of its own is the
	// receiver's once delivered, and f's slices with it.
	c.lastPeer = peer
	c.lastTo = append(c.lastTo[:0], f.To...)
	r = c.deliverTo(peer, f, large)
	if r == registry.Gone {
		c.lastPeer = nil
	}
	return r
}

// closing is what offer returns for a receiver that is still registered
// but closing: the frame counts as dropped "closed", not "offline".
const closing registry.Result = 255

// bufDeliverer is a Peer that can take over a frame's pooled buffer
// instead of copying it.
type bufDeliverer interface {
	deliverBuf(b *bufpool.Buf, w *registry.Waiter) registry.Result
}

// deliverTo offers f to p. A frame too large for the read buffer has a
// pooled buffer of its own: a local receiver takes it over rather than
// copying it.
func (c *conn) deliverTo(p registry.Peer, f *protocol.Frame, large *bufpool.Buf) registry.Result {
	if large != nil {
		if bd, ok := p.(bufDeliverer); ok {
			r := bd.deliverBuf(large, c.waiterFor())
			if r == registry.Delivered {
				c.fr.Disown()
			}
			return r
		}
	}
	return p.Deliver(f.Raw, c.waiterFor())
}

// await waits up to max for a receiver to signal room. It reports false
// when the wait must end without another offer: this connection is closing
// or the server stops reading.
func (c *conn) await(max time.Duration) bool {
	if c.waitTimer == nil {
		c.waitTimer = time.NewTimer(max)
	} else {
		c.waitTimer.Reset(max)
	}
	select {
	case <-c.waiterFor().C:
	case <-c.waitTimer.C:
	case <-c.srv.done:
	}
	c.waitTimer.Stop()
	return !c.closed() && !c.srv.stopping.Load()
}
