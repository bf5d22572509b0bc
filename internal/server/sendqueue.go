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
// Frames wait in a list of pooled buffers. Senders copy frames into the
// last one while it has room, so a burst of small frames goes out in one
// write; a frame that arrived in a pooled buffer of its own (larger than
// the sender's read buffer) is handed over whole instead of copied, and
// its buffer then takes the frames after it like any other.
// The writer takes the whole list at once. The byte limit the sender
// passes (send_queue) bounds the bytes not yet accepted by the kernel; a
// connection's memory is at most that plus what the writer is working
// through (itself at most send_queue).
//
// A write goroutine runs only while there is something to write: the push
// that finds none running starts one, and it exits when the queue is
// empty. An idle connection holds no writer and no buffer.
type sendQueue struct {
	mu      sync.Mutex
	bufs    []*bufpool.Buf // guarded by mu; frames waiting for the writer, in order
	queued  int            // guarded by mu; bytes in bufs plus bytes the writer has yet to write
	closed  bool           // guarded by mu; no frame is accepted once set
	writing bool           // guarded by mu; a write goroutine is running
	hint    int            // guarded by mu; how much the writer took last, to size the next buffer
}

// push copies frame into the queue unless that would take it over limit
// bytes. startWriter tells the caller to start the write goroutine.
func (q *sendQueue) push(frame []byte, limit int) (r registry.Result, startWriter bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.admit(len(frame), limit); r != registry.Delivered {
		return r, false
	}
	var last *bufpool.Buf
	if len(q.bufs) > 0 {
		last = q.bufs[len(q.bufs)-1]
	}
	if last == nil || cap(last.B)-len(last.B) < len(frame) {
		last = bufpool.Get(max(len(frame), q.hint, minBatch))
		q.bufs = append(q.bufs, last)
	}
	last.B = append(last.B, frame...)
	return registry.Delivered, q.startWriter()
}

// pushBuf queues b, a whole frame in a pooled buffer, without copying it.
// On Delivered the queue owns b; otherwise the caller still does.
func (q *sendQueue) pushBuf(b *bufpool.Buf, limit int) (r registry.Result, startWriter bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.admit(len(b.B), limit); r != registry.Delivered {
		return r, false
	}
	q.bufs = append(q.bufs, b)
	return registry.Delivered, q.startWriter()
}

// admit accounts for n more bytes, or says why it cannot.
func (q *sendQueue) admit(n, limit int) registry.Result {
	switch {
	case q.closed:
		return registry.Gone
	case q.queued+n > limit:
		return registry.QueueFull
	}
	q.queued += n
	return registry.Delivered
}

func (q *sendQueue) startWriter() bool {
	start := !q.writing
	q.writing = true
	return start
}

// next appends everything queued to dst for the writer, which writes it,
// reports it with written, and gives each buffer back with bufpool.Put.
// When nothing is queued (or the queue is closed) it returns dst unchanged
// and, if stop is set, marks the writer stopped: it must exit, and the
// next push starts a new one.
func (q *sendQueue) next(dst []*bufpool.Buf, stop bool) []*bufpool.Buf {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.bufs) == 0 {
		if stop {
			q.writing = false
		}
		return dst
	}
	n := 0
	for i, b := range q.bufs {
		n += len(b.B)
		dst = append(dst, b)
		q.bufs[i] = nil
	}
	q.bufs = q.bufs[:0]
	q.hint = min(n, writeChunk) // a larger buffer would not save a write
	return dst
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
	for i, b := range q.bufs {
		bufpool.Put(b)
		q.bufs[i] = nil
	}
	q.bufs = q.bufs[:0]
	q.mu.Unlock()
}
