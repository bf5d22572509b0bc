package server

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/protocol"
)

const (
	// maxReadBuffer is the read buffer of the busiest connections. Frames
	// up to this size are parsed and forwarded in place; larger ones go
	// through a pooled buffer.
	maxReadBuffer = 64 << 10
	// defaultIdleAfter is how long a logged-in connection waits with
	// nothing buffered before it gives its read buffer back to the pool and
	// parks: waits for the next byte without a buffer, and on Linux without
	// a goroutine. Short, because during a burst of logins the memory of
	// the connections not yet parked is what the process keeps afterwards
	// (the runtime returns freed stacks and buffers only after a GC, and an
	// idle server rarely runs one); a connection that sends more often than
	// this never parks.
	defaultIdleAfter = 100 * time.Millisecond
)

var (
	// readBufferSizes are the read buffers a connection moves through. It
	// starts with the first, enough for a login, heartbeats and sparse
	// frames; a read that fills its buffer moves it to the next one at the
	// next frame boundary; parking gives the buffer back. Only connections
	// that keep data waiting hold a large one, and a stream of small frames
	// costs one read per 64 KiB.
	readBufferSizes = [...]int{protocol.MinReadBuffer, 16 << 10, maxReadBuffer}
	readerPools     [len(readBufferSizes)]sync.Pool
)

// serve runs on the connection's first goroutine: the transport produces
// the connection by the login deadline, then the read loop starts.
func (c *conn) serve(accepted time.Time) {
	c.deadline = accepted.Add(c.ln.limits().LoginTimeout.D())
	_ = c.raw.SetReadDeadline(c.deadline)
	c.armed = c.deadline.UnixNano()
	var a Accepted
	if err := c.ln.accept(c, c.deadline, &a); err != nil {
		r := c.classify(err)
		var refused *refusal
		if errors.As(err, &refused) {
			r = ReasonLimit
			c.ln.refusedCount(c.remote, refused.why)
		}
		c.close(r, err.Error())
		c.finish()
		return
	}
	c.attach(&a)
	c.br = c.getReader(0)
	c.fr = protocol.NewReader(c.br, c.maxPayload)
	c.fr.SetLoginOnly(true)
	c.loop()
}

// loop is the connection's read loop. It returns when the connection ends,
// after tearing it down, or when it goes idle: it then gives back its read
// buffer and parks, with the epoll parker or on a new goroutine, either of
// which resumes the loop on a fresh goroutine at the next byte. The
// goroutine that ran the loop exits, and the stack it grew while frames
// flowed goes with it.
func (c *conn) loop() {
	err := c.readFrames()
	if c.drain != nil {
		putReader(c.drain)
		c.drain = nil
	}
	if errors.Is(err, errIdle) {
		c.putReader()
		c.shed()
		c.srv.idleParks.Add(1)
		if !c.srv.park.park(c) {
			go c.parkOnGoroutine()
		}
		return
	}
	c.fr.Release()
	c.putReader()
	if errors.Is(err, errStopped) {
		c.srv.flush(c)
	} else {
		c.close(c.classify(err), err.Error())
	}
	c.finish()
}

// readFrames reads and acts on frames until a read fails, a frame breaks
// the protocol, or the connection goes idle (errIdle).
func (c *conn) readFrames() error {
	for {
		f, err := c.fr.Next()
		if err != nil {
			return err
		}
		c.sawFrame = true
		if err := c.handle(&f); err != nil {
			return err
		}
		if c.grow {
			c.upgrade()
		}
	}
}

// upgrade moves a connection whose reads fill its buffer to the next larger
// one. Bytes the old buffer already holds are read out of it first.
func (c *conn) upgrade() {
	c.grow = false
	c.fr.Release() // the frame just handled leaves the old buffer
	c.drain = c.br
	c.br = c.getReader(readerTier(c.br) + 1)
	c.fr.Reset(c.br)
	c.srv.upgrades.Add(1)
}

// shed lets go of what the read loop makes again when it needs it, so that
// an idle connection holds less: its waiter and wait timer, and the last
// receiver it sent to, which may have closed since (the reference would
// keep that connection in memory). A waiter still listed at a receiver
// from an earlier wait is signalled there once, harmlessly.
func (c *conn) shed() {
	c.waiter.Store(nil)
	c.waitTimer = nil // stopped: every wait stops it
	c.lastTo, c.lastPeer = nil, nil
}

// resume restarts the read loop of a connection the parker woke up.
func (c *conn) resume() {
	c.br = c.getReader(0)
	c.fr.Reset(c.br)
	c.loop()
}

// parkOnGoroutine waits, without a read buffer, for the next byte or the
// idle deadline; then it takes a small buffer again and resumes the read
// loop. It is how TLS connections park, and every connection where the
// epoll parker is not available.
func (c *conn) parkOnGoroutine() {
	_ = c.nc.SetReadDeadline(c.deadline)
	c.armed = c.deadline.UnixNano()
	var n int
	var err error
	if c.srv.stopping.Load() {
		err = errStopped
	} else {
		n, err = c.nc.Read(c.one[:])
	}
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		if errors.Is(err, errStopped) || isTimeout(err) && c.srv.stopping.Load() {
			c.srv.flush(c)
		} else {
			c.close(c.classify(err), err.Error())
		}
		c.finish()
		return
	}
	c.pending = int(c.one[0])
	c.br = c.getReader(0)
	c.fr.Reset(c.br)
	c.loop()
}

// getReader takes a pooled read buffer of readBufferSizes[tier] bytes.
func (c *conn) getReader(tier int) *bufio.Reader {
	br, _ := readerPools[tier].Get().(*bufio.Reader)
	if br == nil {
		br = bufio.NewReaderSize(nil, readBufferSizes[tier])
	}
	br.Reset(deadlineReader{c})
	return br
}

// putReader gives the read buffer back to its pool.
func (c *conn) putReader() {
	if c.br != nil {
		putReader(c.br)
		c.br = nil
	}
}

func putReader(br *bufio.Reader) { readerPools[readerTier(br)].Put(br) }

// readerTier is the index of br's size in readBufferSizes.
func readerTier(br *bufio.Reader) int {
	for i, n := range readBufferSizes {
		if br.Size() == n {
			return i
		}
	}
	panic("server: read buffer of a size not in readBufferSizes")
}

var (
	// errIdle reports that a logged-in connection has waited idleAfter with
	// nothing buffered: the read loop parks it.
	errIdle = errors.New("idle")
	// errStopped reports that the server stopped reading (shutdown): the
	// connection's queue is flushed before it closes.
	errStopped = errors.New("server stopped reading")
)

// deadlineReader sits under the bufio.Reader, so it runs once per read
// syscall rather than once per frame. Before each read it moves the idle
// deadline if a complete frame arrived since it was last set: the deadline
// thus always counts from the last complete frame, and a client trickling
// bytes without completing frames times out. When nothing is buffered it
// waits at most idleAfter, after which the connection parks (errIdle).
type deadlineReader struct{ c *conn }

func (d deadlineReader) Read(p []byte) (int, error) {
	c := d.c
	if c.pending >= 0 && len(p) > 0 { // the byte that woke a parked connection
		p[0] = byte(c.pending)
		c.pending = -1
		return 1, nil
	}
	if c.drain != nil { // what the old buffer held when the connection outgrew it
		if c.drain.Buffered() > 0 {
			return c.drain.Read(p)
		}
		putReader(c.drain)
		c.drain = nil
	}
	now := time.Now()
	if c.sawFrame {
		c.sawFrame = false
		c.deadline = now.Add(c.ln.limits().IdleTimeout.D())
	}
	deadline := c.deadline
	// Park only between frames: nothing buffered, and not in the middle of
	// a payload larger than the buffer (read around it).
	idleAfter := c.srv.idleAfter
	parkable := c.parks && c.loggedIn() && c.br.Buffered() == 0 && !c.fr.InPayload() && now.Add(idleAfter).Before(deadline)
	if parkable {
		deadline = now.Add(idleAfter)
	}
	if at := deadline.UnixNano(); at != c.armed { // a timer update costs; most reads mid-payload need none
		_ = c.nc.SetReadDeadline(deadline)
		c.armed = at
	}
	// Checked after arming: Shutdown sets the flag, then a deadline in the
	// past, so either this read sees the flag or its deadline is replaced.
	if c.srv.stopping.Load() {
		return 0, errStopped
	}
	lim := c.ln.limits()
	if lim.RateLimit > 0 && c.pace == nil {
		c.pace = new(pacer)
	}
	if c.pace != nil {
		if most := c.pace.reads(lim, now); most > 0 && len(p) > most {
			p = p[:most]
		}
	}
	n, err := c.nc.Read(p)
	if d := c.pace.delay(n, now); d > 0 {
		// rate_limit: wait before reading on, so TCP slows the client.
		// The wait is relayd's doing: it does not count toward idle_timeout.
		if !c.sleep(d) {
			if c.srv.stopping.Load() {
				return n, errStopped
			}
			return n, errClosedWaiting
		}
		c.deadline = c.deadline.Add(d)
	}
	if n == len(p) && c.br.Size() < maxReadBuffer {
		c.grow = true
	}
	if n == 0 && isTimeout(err) {
		if c.srv.stopping.Load() {
			return 0, errStopped
		}
		if parkable {
			return 0, errIdle
		}
	}
	return n, err
}

// sleep waits d unless the connection closes or the server stops reading
// first; it reports whether the whole wait passed.
func (c *conn) sleep(d time.Duration) bool {
	until := time.Now().Add(d)
	for d > 0 {
		if !c.await(d) {
			return false
		}
		d = time.Until(until)
	}
	return true
}
