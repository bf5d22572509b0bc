package server

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

const (
	// minBatch is the smallest buffer a send queue takes from the pool.
	minBatch = 512
	// maxBatch is the largest buffer it takes for copied frames: a
	// larger one would not save a writev.
	maxBatch = 64 << 10
)

// sendQueue holds the frames accepted for one connection and not yet
// written, and decides what a sender gets when one does not fit (docs/PROTOCOL.md
// rule 9).
//
// Frames wait in a list of pooled buffers. Senders copy frames into the
// last one while it has room, so a burst of small frames goes out in one
// write; a frame that arrived in a pooled buffer of its own (larger than
// the sender's read buffer) is handed over whole instead of copied, and its
// buffer then takes the frames after it like any other. The writer takes
// up to a batch of buffers at once and reports every syscall's progress
// with written, which frees their bytes for new frames at once.
//
// The byte limit the sender passes (send_queue) bounds the bytes not yet
// accepted by the kernel. When a frame does not fit, the queue tells a
// receiver that is merely behind from one that is stalled: stalled means
// the writer has had bytes the socket would not take (blockedAt) for
// stall_timeout. A sender gets Wait while the receiver is behind, and
// QueueFull once it is stalled.
//
// A write goroutine runs only while there is something to write: the push
// that finds none running starts one, and it exits when the queue is empty.
// An idle connection holds no writer and no buffer.
type sendQueue struct {
	mu      sync.Mutex
	items   []queued         // guarded by mu; frames waiting for the writer, in order
	queued  int              // guarded by mu; bytes in items plus bytes the writer has yet to write
	waiters registry.Waiters // guarded by mu; senders to signal when room is freed or the queue closes
	closed  bool             // guarded by mu; no frame is accepted once set
	reason  Drop             // guarded by mu; what frames still queued at close count as
	writing bool             // guarded by mu; a write goroutine is running
	hint    int              // guarded by mu; how much the writer took last, to size the next buffer

	writeArmed int64 // owned by the writer; when the write deadline was last moved (unix nanoseconds)

	// unsentAt is what the kernel still had to send on the socket (SIOCOUTQ)
	// at blockedAt; -1 when unknown. Written with blockedAt.
	unsentAt atomic.Int64

	// blockedAt is when the writer last found the socket full with nothing
	// accepted since (unix nanoseconds); 0 while the socket takes data.
	// Written by the writer, read by senders.
	blockedAt atomic.Int64
}

// queued is one buffer of whole frames and what it holds, so the writer can
// count frames as they reach the socket.
type queued struct {
	b       *bufpool.Buf
	frames  int // frames in b
	payload int // their payload bytes
}

// offer is what a push needs to know about the frame's receiver.
type offer struct {
	limit  int           // send_queue
	stall  time.Duration // stall_timeout
	waiter *registry.Waiter
	writer queueOwner
}

// queueOwner is the connection a queue belongs to.
type queueOwner interface {
	// startWriter starts the write goroutine; the queue calls it with its
	// lock held, at most once until the writer has stopped.
	startWriter()
	// unsent returns the bytes the kernel has yet to get acknowledged on
	// the socket, -1 when it cannot tell.
	unsent() int
}

// push copies frame into the queue, or says why it cannot (see
// registry.Result). On Wait, w is registered and w.Max set.
func (q *sendQueue) push(frame []byte, o *offer) registry.Result {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.admit(len(frame), o); r != registry.Delivered {
		return r
	}
	var last *queued
	if n := len(q.items); n > 0 {
		last = &q.items[n-1]
	}
	if last == nil || cap(last.b.B)-len(last.b.B) < len(frame) {
		q.items = append(q.items, queued{b: bufpool.Get(max(len(frame), q.hint, minBatch))})
		last = &q.items[len(q.items)-1]
	}
	last.b.B = append(last.b.B, frame...)
	last.frames++
	last.payload += protocol.PayloadLen(frame)
	q.start(o)
	return registry.Delivered
}

// pushBuf queues b, a whole frame in a pooled buffer, without copying it.
// On Delivered the queue owns b; otherwise the caller still does.
func (q *sendQueue) pushBuf(b *bufpool.Buf, o *offer) registry.Result {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.admit(len(b.B), o); r != registry.Delivered {
		return r
	}
	q.items = append(q.items, queued{b: b, frames: 1, payload: protocol.PayloadLen(b.B)})
	q.start(o)
	return registry.Delivered
}

// paceAbove is how much a queue holds for a receiver that is taking data
// before its senders wait. send_queue (up to 16 MiB by default) is the
// bound for a receiver that stalls: it gets that much headroom before
// frames are dropped for it. A receiver that keeps reading needs no more
// than this on top of its socket's buffer, and filling 16 MiB per
// receiver only to drain it cold cost a third of the throughput at 64
// pairs (page faults and cache misses).
const paceAbove = 1 << 20

// admit accounts for n more bytes, or says why it cannot.
func (q *sendQueue) admit(n int, o *offer) registry.Result {
	if q.closed {
		return registry.Gone
	}
	fits := q.queued+n <= o.limit
	if fits && (q.queued == 0 || q.queued+n <= paceAbove) {
		q.queued += n
		return registry.Delivered
	}
	if n > o.limit {
		// Larger than this receiver's whole send_queue (it is on a
		// listener with a smaller one than the sender's): it can never
		// fit, so waiting would hold the sender forever.
		return registry.QueueFull
	}
	left := o.stall
	if at := q.blockedAt.Load(); at != 0 {
		now := time.Now().UnixNano()
		left -= time.Duration(now - at)
		if left <= 0 && q.movedSinceBlocked(o, now) {
			left = o.stall
		}
	}
	if left <= 0 || o.waiter == nil {
		// Stalled (or a sender that cannot wait): what fits is queued,
		// the rest dropped.
		if fits {
			q.queued += n
			return registry.Delivered
		}
		return registry.QueueFull
	}
	o.waiter.Max = left
	q.waiters.Add(o.waiter)
	return registry.Wait
}

func (q *sendQueue) start(o *offer) {
	if !q.writing {
		q.writing = true
		o.writer.startWriter()
	}
}

// take moves up to len(dst) queued buffers into dst for the writer and
// returns how many. The writer writes them, reports progress with written
// and gives each buffer back with bufpool.Put. When nothing is queued (or
// the queue is closed) it returns 0 and, if stop is set, marks the writer
// stopped: it must exit, and the next push starts a new one.
func (q *sendQueue) take(dst []queued, stop bool) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		if stop {
			q.writing = false
			q.waiters.Signal() // a flush at shutdown waits for this
		}
		return 0
	}
	n := copy(dst, q.items)
	bytes := 0
	for i := range n {
		bytes += len(q.items[i].b.B)
	}
	rest := copy(q.items, q.items[n:])
	clear(q.items[rest:])
	q.items = q.items[:rest]
	q.hint = min(bytes, maxBatch)
	return n
}

// written releases n bytes of the limit after the socket accepted them and
// wakes the senders waiting for room.
func (q *sendQueue) written(n int) {
	q.blockedAt.Store(0)
	q.mu.Lock()
	q.queued -= n
	q.waiters.Signal()
	q.mu.Unlock()
}

// blocked records that the socket has just refused more bytes, and what
// the kernel had left to send then (-1: unknown).
func (q *sendQueue) blocked(unsent int) {
	if q.blockedAt.Load() == 0 {
		q.unsentAt.Store(int64(unsent))
		q.blockedAt.Store(time.Now().UnixNano())
	}
}

// movedSinceBlocked tells relayd's own backlog from a stalled receiver.
// The writer last found the socket full stall_timeout ago; if the kernel
// has sent (and had acknowledged) bytes since, the receiver is reading
// and only relayd is behind: its writer has not run since the socket
// took the data (a busy CPU, many connections). The receiver then counts
// as moving from now on.
func (q *sendQueue) movedSinceBlocked(o *offer, now int64) bool {
	before := q.unsentAt.Load()
	if before < 0 {
		return false
	}
	u := o.writer.unsent()
	if u < 0 || int64(u) >= before {
		return false
	}
	q.unsentAt.Store(int64(u))
	q.blockedAt.Store(now)
	return true
}

// pending returns the bytes accepted and not yet written.
func (q *sendQueue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued
}

// awaitEmpty registers w to be signalled at the next progress and reports
// whether the queue is already empty (nothing queued, no writer running).
func (q *sendQueue) awaitEmpty(w *registry.Waiter) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == 0 && !q.writing || q.closed {
		return true
	}
	q.waiters.Add(w)
	return false
}

// close refuses further frames, wakes the waiting senders, and drops the
// frames still queued, counting them in lost by reason. A running writer
// drops what it holds itself.
func (q *sendQueue) close(reason Drop, counts *frameCounts) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.closed = true
	q.reason = reason
	frames := 0
	for i, it := range q.items {
		frames += it.frames
		q.queued -= len(it.b.B)
		bufpool.Put(it.b)
		q.items[i] = queued{}
	}
	q.items = q.items[:0]
	counts.lose(reason, frames)
	q.waiters.Signal()
}

// dropReason is what frames the writer could not write count as.
func (q *sendQueue) dropReason() Drop {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		return DropClosed
	}
	return q.reason
}
