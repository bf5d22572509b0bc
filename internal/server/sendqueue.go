package server

import (
	"sync"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/registry"
)

// minBatch is the smallest buffer a send queue takes from the pool.
const minBatch = 512

// sendQueue holds the frames accepted for one connection and not yet written.
//
// Senders copy whole frames into one contiguous pooled buffer; the writer
// takes the whole buffer at once and writes it in as few syscalls as it
// can, so a burst of small frames costs one write. The byte limit the
// sender passes (send_queue) bounds the bytes not yet accepted by the
// kernel; a connection's memory is at most that plus the batch the writer
// is working through (itself at most send_queue).
//
// A write goroutine runs only while there is something to write: the push
// that finds none running starts one, and it exits when the queue is
// empty. An idle connection holds no writer and no buffer.
type sendQueue struct {
	mu      sync.Mutex
	buf     *bufpool.Buf // guarded by mu; frames waiting for the writer, nil when none
	queued  int          // guarded by mu; bytes in buf plus bytes the writer has yet to write
	closed  bool         // guarded by mu; no frame is accepted once set
	writing bool         // guarded by mu; a write goroutine is running
	hint    int          // guarded by mu; the size of the last batch, to size the next one
}

// push copies frame into the queue unless that would take it over limit
// bytes. startWriter tells the caller to start the write goroutine.
func (q *sendQueue) push(frame []byte, limit int) (r registry.Result, startWriter bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return registry.Gone, false
	}
	if q.queued+len(frame) > limit {
		return registry.QueueFull, false
	}
	switch {
	case q.buf == nil:
		q.buf = bufpool.Get(max(len(frame), q.hint, minBatch))
	case cap(q.buf.B)-len(q.buf.B) < len(frame):
		bigger := bufpool.Get(len(q.buf.B) + len(frame))
		bigger.B = append(bigger.B, q.buf.B...)
		bufpool.Put(q.buf)
		q.buf = bigger
	}
	q.buf.B = append(q.buf.B, frame...)
	q.queued += len(frame)
	startWriter = !q.writing
	q.writing = true
	return registry.Delivered, startWriter
}

// next hands the writer everything queued, which it writes, reports with
// written, and gives back with bufpool.Put. When nothing is queued (or the
// queue is closed) it returns nil and, if stop is set, marks the writer
// stopped: it must exit, and the next push starts a new one.
func (q *sendQueue) next(stop bool) *bufpool.Buf {
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.buf
	q.buf = nil
	if b != nil {
		q.hint = len(b.B)
	}
	if b == nil && stop {
		q.writing = false
	}
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
