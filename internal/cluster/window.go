package cluster

import (
	"sync/atomic"
	"time"
)

// Two windows bound what a node has in flight to another: one per remote
// receiver, which paces the senders of a slow receiver, and one per link,
// which bounds everything in flight to that node. The NATS server holds
// whatever the receiving node has not read yet, and disconnects it as a
// slow consumer once that passes its max_pending (64 MB by default): 64
// receivers' windows alone would reach it.
//
// A frame goes while its window is not full, so a window holds at most its
// size plus one frame, and a frame larger than the window still goes.

// window counts the bytes of frames sent to one remote receiver that its
// node has not credited back yet.
type window struct {
	inflight   atomic.Int64 // bytes sent and not yet credited
	lastCredit atomic.Int64 // unix nanoseconds of the last credit, or of the first frame into an empty window
}

// take counts n more bytes in flight unless the window, of size bytes, is
// full, and reports whether it did. A window that has had no credit for
// stale while its node is alive lost its credits (a NATS slow consumer, a
// reconnect): it starts over, counted in resets, rather than stop its
// senders for good.
func (w *window) take(n, size int64, stale time.Duration, resets *atomic.Uint64) bool {
	for {
		in := w.inflight.Load()
		if in >= size && in > 0 {
			if time.Now().UnixNano()-w.lastCredit.Load() <= int64(stale) {
				return false
			}
			if w.inflight.CompareAndSwap(in, 0) {
				resets.Add(1)
			}
			continue
		}
		if w.inflight.CompareAndSwap(in, in+n) {
			if in <= 0 {
				w.lastCredit.Store(time.Now().UnixNano())
			}
			return true
		}
	}
}

// give takes back n bytes that take counted and that were not sent.
func (w *window) give(n int64) {
	if v := w.inflight.Add(-n); v < 0 {
		w.inflight.CompareAndSwap(v, 0) // bytes sent before the window started over
	}
}

// credit counts n bytes credited back at now (unix nanoseconds).
func (w *window) credit(n, now int64) {
	w.give(n)
	w.lastCredit.Store(now)
}

// reset forgets what is in flight: it was lost.
func (w *window) reset() { w.inflight.Store(0) }

// nodeWindow is a link's window. It counts positions rather than bytes: the
// sending node numbers the frame bytes it queues for the node, ever; after
// each batch it tells the node the position the batch ended at, and the
// node acknowledges the last position it read in every credit message. A
// lost data message, credit message or acknowledgement costs nothing: the
// next acknowledgement covers it.
type nodeWindow struct {
	queued  int64        // guarded by link.mu: frame bytes queued for the node, ever
	acked   atomic.Int64 // the position the node last acknowledged (or a reset moved it to)
	lastAck atomic.Int64 // unix nanoseconds of the last acknowledgement, or of the first frame into an empty window
}

// fullLocked reports whether the window, of size bytes, is full. Called with
// link.mu held. With no acknowledgement for stale while the node is alive
// (the node cannot answer: its NATS connection broke), it starts over.
func (w *nodeWindow) fullLocked(size int64, stale time.Duration, resets *atomic.Uint64) bool {
	in := w.queued - w.acked.Load()
	if in < size || in <= 0 {
		return false
	}
	if time.Now().UnixNano()-w.lastAck.Load() <= int64(stale) {
		return true
	}
	w.ack(w.queued)
	resets.Add(1)
	return false
}

// queueLocked counts n bytes queued. Called with link.mu held.
func (w *nodeWindow) queueLocked(n int64) {
	if w.queued <= w.acked.Load() {
		w.lastAck.Store(time.Now().UnixNano())
	}
	w.queued += n
}

// ack records that the node has read everything up to pos.
func (w *nodeWindow) ack(pos int64) {
	for {
		old := w.acked.Load()
		if pos <= old || w.acked.CompareAndSwap(old, pos) {
			break
		}
	}
	w.lastAck.Store(time.Now().UnixNano())
}

// inflightLocked is what the node has not acknowledged. Called with
// link.mu held.
func (w *nodeWindow) inflightLocked() int64 { return w.queued - w.acked.Load() }
