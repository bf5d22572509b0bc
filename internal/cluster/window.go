package cluster

import (
	"sync/atomic"
	"time"
)

// window counts the bytes of frames sent to a remote node that it has not
// credited back yet. A node keeps one per remote receiver, which paces the
// senders of a slow receiver, and one per link, which bounds everything in
// flight to a node: the NATS server holds whatever the receiving node has
// not read yet, and disconnects it as a slow consumer once that passes its
// max_pending (64 MB by default).
type window struct {
	inflight   atomic.Int64 // bytes sent and not yet credited
	lastCredit atomic.Int64 // unix nanoseconds of the last credit, or of the first frame into an empty window
}

// take counts n more bytes in flight unless that would overflow a window
// of size bytes, and reports whether it did. An empty window always takes
// a frame, so a frame larger than the window still goes. A window that has
// had no credit for stale while its node is alive lost its credits (a NATS
// slow consumer, a reconnect): it starts over, counted in resets, rather
// than stop its senders for good.
func (w *window) take(n, size int64, stale time.Duration, resets *atomic.Uint64) bool {
	for {
		in := w.inflight.Load()
		if in > 0 && in+n > size {
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
		w.inflight.CompareAndSwap(v, 0)
	}
}

// credit counts n bytes credited back at now (unix nanoseconds).
func (w *window) credit(n, now int64) {
	if v := w.inflight.Add(-n); v < 0 {
		// Credit for bytes sent before the window started over.
		w.inflight.CompareAndSwap(v, 0)
	}
	w.lastCredit.Store(now)
}

// reset forgets what is in flight: it was lost.
func (w *window) reset() { w.inflight.Store(0) }
