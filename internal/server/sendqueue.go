package server

import (
	"sync"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/registry"
)

// minBatch is the smallest buffer a send queue takes from the pool.
const minBatch = 4 << 10

// sendQueue holds the frames accepted for one connection and not yet written.
//
// Senders copy whole frames into one contiguous pooled buffer; the writer
// takes the whole buffer at once and writes it in as few syscalls as it
// can, so a burst of small frames costs one write. The byte limit the
// sender passes (send_queue) bounds the bytes not yet accepted by the
// kernel; a connection's memory is at most that plus the batch the writer
// is working through (itself at most send_queue).
type sendQueue struct {
	mu     sync.Mutex
	buf    *bufpool.Buf  // guarded by mu; frames waiting for the writer, nil when none
	queued int           // guarded by mu; bytes in buf plus bytes the writer has yet to write
	closed bool          // guarded by mu; no frame is accepted once set
	wake   chan struct{} // capacity 1; signalled when buf goes from empty to non-empty
}

func newSendQueue() *sendQueue {
	return &sendQueue{wake: make(chan struct{}, 1)}
}

// push copies frame into the queue unless that would take it over limit bytes.
func (q *sendQueue) push(frame []byte, limit int) registry.Result {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return registry.Gone
	}
	if q.queued+len(frame) > limit {
		q.mu.Unlock()
		return registry.QueueFull
	}
	wasEmpty := q.buf == nil
	switch {
	case wasEmpty:
		q.buf = bufpool.Get(max(len(frame), minBatch))
	case cap(q.buf.B)-len(q.buf.B) < len(frame):
		bigger := bufpool.Get(len(q.buf.B) + len(frame))
		bigger.B = append(bigger.B, q.buf.B...)
		bufpool.Put(q.buf)
		q.buf = bigger
	}
	q.buf.B = append(q.buf.B, frame...)
	q.queued += len(frame)
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
	return registry.Delivered
}

// take hands the queued frames to the writer, which calls written as parts
// of them reach the kernel and gives the buffer back with bufpool.Put.
func (q *sendQueue) take() *bufpool.Buf {
	q.mu.Lock()
	b := q.buf
	q.buf = nil
	q.mu.Unlock()
	return b
}

// written releases n bytes of the limit after the writer sent them.
func (q *sendQueue) written(n int) {
	q.mu.Lock()
	q.queued -= n
	q.mu.Unlock()
}

// close refuses further frames and drops those still queued.
func (q *sendQueue) close() {
	q.mu.Lock()
	q.closed = true
	bufpool.Put(q.buf)
	q.buf = nil
	q.mu.Unlock()
}
