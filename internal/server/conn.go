package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

const (
	// maxReadBuffer is the read buffer of the busiest connections. Frames
	// up to this size are parsed and forwarded in place; larger ones go
	// through a pooled buffer.
	maxReadBuffer = 64 << 10
	// writeChunk bounds one write call, so that write_timeout measures a
	// stalled receiver rather than a large batch to a slow but moving one,
	// and so that queue space is freed as a batch goes out.
	writeChunk = 64 << 10
)

var (
	// idleAfter is how long a logged-in connection waits with nothing
	// buffered before it gives its read buffer back to the pool and parks:
	// waits for the next byte without a buffer, and on Linux without a
	// goroutine. Short, because during a burst of logins the memory of the
	// connections not yet parked is what the process keeps afterwards (the
	// runtime returns freed stacks and buffers only after a GC, and an
	// idle server rarely runs one); a connection that sends more often
	// than this never parks. A variable for tests.
	idleAfter = 100 * time.Millisecond
	// readBufferSizes are the read buffers a connection moves through. It
	// starts with the first, enough for a login, heartbeats and sparse
	// frames; a read that fills its buffer moves it to the next one at the
	// next frame boundary; parking gives the buffer back. Only connections
	// that keep data waiting hold a large one, and a stream of small frames
	// costs one read per 64 KiB.
	readBufferSizes = [...]int{protocol.MinReadBuffer, 16 << 10, maxReadBuffer}
	readerPools     [len(readBufferSizes)]sync.Pool
	// idleParks counts connections that gave their read buffer back;
	// upgrades counts moves to a larger one.
	idleParks, upgrades atomic.Uint64
)

// conn is one client connection. Its read loop (loop) parses frames and
// forwards them, and parks while the client is silent; a write loop runs
// while its send queue holds frames. Neither has a goroutine of its own
// for long: an idle plain-TCP connection holds none.
type conn struct {
	// Static after construction.
	srv    *Server
	ln     *listener
	raw    net.Conn   // the TCP connection; closing it stops both loops at once
	nc     net.Conn   // what frames are read from and written to: raw, or TLS over raw
	remote net.Addr   // for logs
	ip     netip.Addr // for max_connections_per_ip
	out    *sendQueue // frames queued for this client

	idFromCert bool // the login ClientID must be one of the client certificate's names

	// Owned by the read loop.
	id       string           // the logged-in ClientID; "" before login
	sawFrame bool             // a complete frame arrived since deadline was last moved
	deadline time.Time        // login_timeout, then last complete frame + idle_timeout
	armed    time.Time        // the read deadline last set on the socket
	br       *bufio.Reader    // the pooled read buffer; nil while parked
	fr       *protocol.Reader // parses frames from br
	drain    *bufio.Reader    // the buffer br replaced, fed to br first; nil when none
	grow     bool             // a read filled br: move to the next larger buffer
	pending  int              // a byte read while parked, fed to br first; -1 when none
	one      [1]byte          // what a connection parked on a goroutine reads into
	certIDs  []string         // with client_id_from_cert: the IDs the client certificate allows
	lastPeer *conn            // the receiver of the last frame forwarded, if local
	counts   frameCounts      // per-frame counters; read concurrently by Stats

	// Parking without a goroutine (park_linux.go).
	rawConn   syscall.RawConn // the socket's descriptor, for epoll
	parkTimer *time.Timer     // wakes the connection at its idle deadline; set at its first epoll park
	parkToken uint64          // guarded by srv.park.mu; nonzero while parked there

	// Set once, by whoever closes the connection first.
	closeOnce sync.Once
	reason    atomic.Uint32 // a Reason
	detail    string        // what went wrong, for the debug log
}

// Deliver implements registry.Peer: it queues a copy of frame for this
// client, bounded by the send_queue limit of the client's listener, and
// starts the write goroutine if none is running.
func (c *conn) Deliver(frame []byte) registry.Result {
	r, start := c.out.push(frame, int(c.ln.limits().SendQueue))
	c.startWriter(start)
	return r
}

// deliverBuf is Deliver for a frame in a pooled buffer of its own, which
// the queue takes over instead of copying; on any result but Delivered the
// caller keeps it.
func (c *conn) deliverBuf(b *bufpool.Buf) registry.Result {
	r, start := c.out.pushBuf(b, int(c.ln.limits().SendQueue))
	c.startWriter(start)
	return r
}

func (c *conn) startWriter(start bool) {
	if start {
		// The caller is a live connection's read loop, so the WaitGroup's
		// count is above zero here: Add cannot race with Shutdown's Wait.
		c.srv.wg.Add(1)
		go c.writeLoop()
	}
}

// Kick implements registry.Peer.
func (c *conn) Kick() { c.close(ReasonKicked, "") }

// close starts closing the connection for reason; only the first call counts.
// It never blocks: it closes the raw socket, which unblocks both loops.
func (c *conn) close(r Reason, detail string) {
	c.closeOnce.Do(func() {
		c.reason.Store(uint32(r))
		c.detail = detail
		c.out.close()
		_ = c.raw.Close()
	})
	c.srv.park.wake(c) // a connection parked without a goroutine has none to notice
}

// serve runs on the connection's first goroutine: it sets the login
// deadline, completes the TLS handshake and starts the read loop.
func (c *conn) serve(accepted time.Time) {
	c.deadline = accepted.Add(c.ln.limits().LoginTimeout.D())
	c.pending = -1
	_ = c.nc.SetReadDeadline(c.deadline)
	c.armed = c.deadline
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := c.handshake(tc, c.deadline); err != nil {
			c.close(c.classify(err), "tls handshake: "+err.Error())
			c.finish()
			return
		}
	}
	c.br = c.getReader(0)
	c.fr = protocol.NewReader(c.br, c.maxPayload)
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
		idleParks.Add(1)
		if !c.srv.park.park(c) {
			go c.parkOnGoroutine()
		}
		return
	}
	c.close(c.classify(err), err.Error())
	c.fr.Release()
	c.putReader()
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
	upgrades.Add(1)
}

// resume restarts the read loop of a connection the parker woke up.
func (c *conn) resume() {
	c.parkTimer.Stop()
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
	c.armed = c.deadline
	n, err := c.nc.Read(c.one[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		c.close(c.classify(err), err.Error())
		c.finish()
		return
	}
	c.pending = int(c.one[0])
	c.br = c.getReader(0)
	c.fr.Reset(c.br)
	c.loop()
}

// loggedIn reports whether a login has been accepted; IDs are never empty.
func (c *conn) loggedIn() bool { return c.id != "" }

func (c *conn) maxPayload() int { return int(c.ln.limits().MaxPayload) }

func (c *conn) handshake(tc *tls.Conn, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return os.ErrDeadlineExceeded
		}
		return err
	}
	if c.idFromCert {
		c.certIDs = certIDs(tc.ConnectionState())
	}
	return nil
}

// handle acts on one frame; an error is a protocol violation.
func (c *conn) handle(f *protocol.Frame) error {
	if !c.loggedIn() {
		if f.Cmd != protocol.CmdLogin {
			return protocol.TransferBeforeLog
		}
		return c.login(f.ID)
	}
	if f.Cmd == protocol.CmdLogin {
		return protocol.SecondLogin
	}
	if string(f.ID) != c.id {
		return protocol.FromMismatch
	}
	if len(f.To) == 0 {
		c.counts.heartbeats.add(1)
		return nil
	}
	n := uint64(len(f.Payload)) // f is not used after forward
	switch c.forward(f) {
	case registry.Delivered:
		c.counts.forwarded.add(1)
		c.counts.bytes.add(n)
	case registry.QueueFull:
		c.counts.dropped[DropQueueFull].add(1)
	case registry.Gone:
		c.counts.dropped[DropOffline].add(1)
	}
	return nil
}

// forward delivers a transfer frame to its receiver; Gone when there is
// none. The receiver of the previous frame is remembered, so that a stream
// to one receiver looks the registry up once: a remembered receiver that
// has been kicked or has closed refuses the frame (its queue is closed
// before anything else happens to it), and the ID is looked up again.
func (c *conn) forward(f *protocol.Frame) registry.Result {
	if p := c.lastPeer; p != nil && p.id == string(f.To) {
		if r := c.deliverTo(p, f); r != registry.Gone {
			return r
		}
		c.lastPeer = nil
	}
	peer, ok := c.srv.reg.Lookup(f.To)
	if !ok {
		return registry.Gone
	}
	if local, ok := peer.(*conn); ok {
		c.lastPeer = local
		return c.deliverTo(local, f)
	}
	return peer.Deliver(f.Raw)
}

// deliverTo queues f for p. A frame too large for the read buffer has a
// pooled buffer of its own: it is handed over rather than copied.
func (c *conn) deliverTo(p *conn, f *protocol.Frame) registry.Result {
	b := c.fr.Large()
	if b == nil {
		return p.Deliver(f.Raw)
	}
	r := p.deliverBuf(b)
	if r == registry.Delivered {
		c.fr.Disown()
	}
	return r
}

var errIDNotInCert = errors.New("client ID matches neither the certificate's CN nor a SAN")

func (c *conn) login(id []byte) error {
	if c.idFromCert && !allowedID(c.certIDs, id) {
		return errIDNotInCert
	}
	c.id = string(id)
	if prev := c.srv.reg.Register(c.id, c); prev != nil {
		c.srv.kicks.Add(1) // before the kicked connection can count its disconnect
		prev.Kick()
		if c.srv.debugging() {
			c.srv.log.Debug("kick", "listener", c.ln.name, "client_id", c.id, "remote", c.remote.String())
		}
	}
	c.ln.logins.Add(1)
	if c.srv.debugging() {
		c.srv.log.Debug("login", "listener", c.ln.name, "client_id", c.id, "remote", c.remote.String())
	}
	return nil
}

// writeLoop writes queued frames until the queue is empty or the
// connection fails. Whatever accumulated while one write was on the wire
// goes out in the next one.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	var spare [8]*bufpool.Buf
	bufs := spare[:0]
	for {
		bufs = c.out.next(bufs[:0], false)
		if len(bufs) == 0 {
			// Let the senders run once before giving up the goroutine:
			// back-to-back bursts then reuse it instead of starting one each.
			runtime.Gosched()
			if bufs = c.out.next(bufs, true); len(bufs) == 0 {
				return
			}
		}
		var err error
		for i, b := range bufs {
			if err == nil {
				err = c.write(b.B)
			}
			bufpool.Put(b)
			bufs[i] = nil
		}
		if err != nil {
			r := ReasonEOF
			if errors.Is(err, os.ErrDeadlineExceeded) {
				r = ReasonWriteTimeout
			}
			c.close(r, "write: "+err.Error())
			return
		}
	}
}

// write sends a batch in chunks, each bounded by write_timeout, and frees
// send-queue space as the kernel accepts each chunk: a receiver that keeps
// up has its whole send_queue for new frames while a large batch is still
// going out.
func (c *conn) write(b []byte) error {
	timeout := c.ln.limits().WriteTimeout.D()
	for len(b) > 0 {
		n := min(len(b), writeChunk)
		_ = c.nc.SetWriteDeadline(time.Now().Add(timeout))
		if _, err := c.nc.Write(b[:n]); err != nil {
			return err
		}
		c.out.written(n)
		b = b[n:]
	}
	return nil
}

// classify maps a read error to the reason the connection ends.
func (c *conn) classify(err error) Reason {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		if c.loggedIn() {
			return ReasonIdleTimeout
		}
		return ReasonLoginTimeout
	case isViolation(err):
		return ReasonProtocolError
	default: // EOF, reset, or closed by us (then the first reason already stands)
		return ReasonEOF
	}
}

func isViolation(err error) bool {
	_, ok := protocol.IsViolation(err)
	return ok || errors.Is(err, errIDNotInCert) || isTLSAlert(err)
}

func isTLSAlert(err error) bool {
	var re tls.RecordHeaderError
	var ae tls.AlertError
	var ve *tls.CertificateVerificationError
	return errors.As(err, &re) || errors.As(err, &ae) || errors.As(err, &ve)
}

// finish tears the connection down once its read loop has returned.
func (c *conn) finish() {
	c.close(ReasonEOF, "") // no-op if already closed for another reason
	if c.loggedIn() {
		c.srv.reg.Unregister(c.id, c)
	}
	r := Reason(c.reason.Load())
	c.ln.remove(c)
	c.srv.disconnects[r].Add(1)
	if c.srv.debugging() {
		attrs := []any{"listener", c.ln.name, "remote", c.remote.String(), "reason", r.String()}
		if c.loggedIn() {
			attrs = append(attrs, "client_id", c.id)
		}
		if c.detail != "" && r != ReasonEOF {
			attrs = append(attrs, "detail", c.detail)
		}
		c.srv.log.Debug("disconnect", attrs...)
	}
	c.srv.wg.Done()
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

// errIdle reports that a logged-in connection has waited idleAfter with
// nothing buffered: the read loop parks it.
var errIdle = errors.New("idle")

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
	parkable := c.loggedIn() && c.br.Buffered() == 0 && !c.fr.InPayload() && now.Add(idleAfter).Before(deadline)
	if parkable {
		deadline = now.Add(idleAfter)
	}
	if deadline != c.armed { // a timer update costs; most reads mid-payload need none
		_ = c.nc.SetReadDeadline(deadline)
		c.armed = deadline
	}
	n, err := c.nc.Read(p)
	if n == len(p) && c.br.Size() < maxReadBuffer {
		c.grow = true
	}
	if parkable && n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, errIdle
	}
	return n, err
}
