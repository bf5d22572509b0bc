// Package wsconn carries RELY v1 over WebSocket (RFC 6455), server side.
//
// Accept completes the HTTP upgrade; the *Conn it returns is a net.Conn
// whose reads are the bytes of the client's binary messages, one RELY frame
// each, and whose writes are batches of RELY frames that go out one binary
// message per frame. It is built so that the server treats it like a TCP
// connection: a read deadline that expires is not fatal (the next Read
// resumes exactly where the last one stopped), an idle connection holds no
// buffer (Buffered reports 0 and the server may poll Raw's descriptor), and
// every byte goes from the socket into the caller's buffer, unmasked in
// place, without a copy in between.
package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
)

var (
	// controlWriteTimeout bounds writing a pong or a close frame: a client
	// that reads nothing does not hold the read loop for longer.
	controlWriteTimeout = 2 * time.Second
	// closeTimeout bounds the close frame Close sends. Close is called
	// from other connections' goroutines (a kick), so it must be short.
	closeTimeout = 250 * time.Millisecond
)

// Conn is one upgraded WebSocket connection. Read and Write may be called
// concurrently with each other, as on a net.Conn; Read must not be called
// concurrently with Read, nor Write with Write.
type Conn struct {
	// Static after construction.
	raw      net.Conn
	maxFrame func() int      // largest message accepted, consulted at each frame header
	copyAll  bool            // raw is not a plain socket (TLS): coalesce a batch into one write
	rc       syscall.RawConn // raw's descriptor, for writev; nil unless raw is a plain socket

	// Owned by Read.
	pre      []byte             // bytes that arrived with the handshake; read before raw
	hdr      [maxHeaderLen]byte // a frame header split across reads
	hdrN     int                // bytes of hdr filled; 0 unless a header is split
	inFrame  bool               // the current frame's header has been read, its payload has not
	op       byte               // the current frame's opcode
	fin      bool               // the current frame ends its message
	left     uint64             // payload bytes of the current frame still to read
	key      [4]byte            // the current frame's mask key
	keyOff   int                // offset in the current payload, for the mask
	ctl      [maxControl]byte   // a control frame's payload as far as read
	ctlN     int                // bytes of ctl filled
	inMsg    bool               // a binary message has begun and not ended
	msgLen   uint64             // length of the message before the current frame
	frameEnd uint64             // length of the message once the current frame is read
	meter    protocol.Meter     // the message's RELY frame
	held     int                // the message's last byte, held until the message ends; -1 when none
	rerr     error              // sticky: what every later Read returns

	// Guarded by wmu: the outgoing stream, written by Write and, for
	// control frames, by Read and Close.
	wmu       sync.Mutex
	wdl       time.Time      // the write deadline the caller set
	wm        protocol.Meter // the outgoing frame whose bytes are being sent
	wleft     int            // bytes of that frame still to come after its WebSocket header went out; 0 at a boundary
	wpend     *bufpool.Buf   // the start of an outgoing frame whose length is not known yet
	closeSent bool           // a close frame went out: nothing may follow it
	blocked   func(bool)     // told when writes find the socket full, and free again
	werr      error          // sticky: what every later Write returns

	pongOwed  atomic.Pointer[[]byte] // a ping's payload not answered yet; sent at the next frame boundary
	closeOnce sync.Once
	closeErr  error
}

func newConn(raw net.Conn, maxFrame func() int) *Conn {
	if maxFrame == nil {
		maxFrame = protocol.Fixed(8<<20 + protocol.MaxTransferOverhead)
	}
	c := &Conn{raw: raw, maxFrame: maxFrame, copyAll: true, held: -1}
	if tc, ok := raw.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			c.rc, c.copyAll = rc, false
		}
	}
	return c
}

// OnBlocked sets a function told when a write finds the socket full (true)
// and when the socket takes bytes again after that (false). The server's
// stall detection uses it to tell a receiver that takes nothing from a
// write that merely waits for a CPU. Call it before the first Write.
func (c *Conn) OnBlocked(f func(blocked bool)) {
	c.wmu.Lock()
	c.blocked = f
	c.wmu.Unlock()
}

// Raw returns the connection the WebSocket runs over: the one to poll for
// readability when Buffered is 0, and to close without a close frame.
func (c *Conn) Raw() net.Conn { return c.raw }

// Buffered is the number of bytes the adapter holds that Read has not
// returned: a header or a control frame split across reads, or bytes that
// came with the handshake. While it is not 0, readability of Raw does not
// announce everything there is to read.
func (c *Conn) Buffered() int {
	n := len(c.pre) + c.hdrN + c.ctlN
	if c.held >= 0 {
		n++
	}
	return n
}

// Read reads the bytes of binary messages as one stream. A message that is
// not exactly one RELY frame, a text message, a message over MaxFrame (at
// its header, before its payload is read) and any breach of RFC 6455 is an
// error that protocol.IsViolation recognises; the client has then been
// sent the matching close frame. Pings are answered and pongs ignored; a
// close frame is answered and ends the stream with io.EOF. A read deadline
// that expires returns a timeout and loses nothing: the next Read goes on.
func (c *Conn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	for len(p) > 0 {
		var m int
		var err error
		if len(c.pre) > 0 {
			m = copy(p, c.pre)
			if c.pre = c.pre[m:]; len(c.pre) == 0 {
				c.pre = nil
			}
		} else {
			m, err = c.raw.Read(p)
		}
		n, perr := c.parse(p[:m])
		if perr != nil {
			c.rerr = perr
			var v *violation
			if errors.As(perr, &v) {
				c.sendClose(v.code)
			}
			if n > 0 {
				return n, nil // the messages before the bad one are good
			}
			return 0, perr
		}
		if err != nil {
			if !isTimeout(err) { // a deadline only interrupts; all else ends the stream
				if errors.Is(err, io.EOF) && (c.inMsg || c.inFrame || c.hdrN > 0) {
					err = io.ErrUnexpectedEOF
				}
				c.rerr = err
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if n > 0 {
			return n, nil
		}
	}
	return 0, nil
}

// isTimeout reports an expired deadline, without errors.As: an idle
// connection times out every time it parks, and must not allocate for it.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// parse takes the bytes just read into b, strips the WebSocket framing and
// unmasks the payloads in place, and returns how many bytes of b are now
// message bytes for the caller. What a split header or control frame left
// over is kept in c. On a violation it returns the message bytes that came
// before the offending message.
func (c *Conn) parse(b []byte) (int, error) {
	w, i := 0, 0  // write and read offsets in b; w <= i
	msgStart := 0 // where the current message's bytes begin in b
	for i < len(b) {
		if !c.inFrame {
			need := 2
			if c.hdrN >= 2 {
				need = headerLen(c.hdr[1])
			}
			for c.hdrN < need && i < len(b) {
				c.hdr[c.hdrN] = b[i]
				c.hdrN++
				i++
				if c.hdrN == 2 {
					need = headerLen(c.hdr[1])
				}
			}
			if c.hdrN < need {
				break
			}
			if !c.inMsg {
				msgStart = w // whatever comes now starts a message, or is a control frame
			}
			if err := c.startFrame(); err != nil {
				return c.keep(w, msgStart), err
			}
			if c.left > 0 {
				continue
			}
		} else {
			k := int(min(c.left, uint64(len(b)-i)))
			seg := b[i : i+k]
			i += k
			c.keyOff = unmask(seg, c.key, c.keyOff)
			c.left -= uint64(k)
			if c.op >= opClose {
				c.ctlN += copy(c.ctl[c.ctlN:], seg)
			} else {
				copy(b[w:], seg)
				fed, err := c.meter.Feed(b[w : w+k])
				if err != nil {
					return c.keep(w, msgStart), &violation{err.(protocol.Violation), CloseProtocol}
				}
				if fed < k {
					return c.keep(w, msgStart), errNotOneFrame
				}
				if err := c.checkLen(); err != nil {
					return c.keep(w, msgStart), err
				}
				w += k
			}
			if c.left > 0 {
				continue
			}
		}
		// The current frame is complete.
		c.inFrame = false
		if c.op >= opClose {
			if err := c.control(); err != nil {
				if err == io.EOF {
					return w, err
				}
				return c.keep(w, msgStart), err
			}
			continue
		}
		c.msgLen = c.frameEnd
		if !c.fin {
			if c.meter.Done() && c.held < 0 && w > 0 {
				// The frame ended with the RELY frame, but the message
				// has not: its end may still show it is not one frame,
				// and the caller must not get a whole frame before.
				w--
				c.held = int(b[w])
			}
			continue
		}
		if !c.meter.Done() {
			return c.keep(w, msgStart), errNotOneFrame
		}
		if c.held >= 0 {
			b[w] = byte(c.held) // w < i: this frame's header was read from b
			w++
			c.held = -1
		}
		c.inMsg = false
		c.meter.Reset()
	}
	return w, nil
}

// keep is how many of the w bytes parsed so far may be returned after a
// violation: those before the message it happened in.
func (c *Conn) keep(w, msgStart int) int {
	if c.inMsg {
		c.held = -1
		return msgStart
	}
	return w
}

// startFrame checks the frame header in c.hdr and makes it the current frame.
func (c *Conn) startFrame() error {
	h := c.hdr[:c.hdrN]
	c.hdrN = 0
	b0, b1 := h[0], h[1]
	if b0&0x70 != 0 {
		return errReserved
	}
	if b1&0x80 == 0 {
		return errUnmasked
	}
	op, fin := b0&0x0F, b0&0x80 != 0
	length := uint64(b1 & 0x7F)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:])
		if length>>63 != 0 {
			return errLength
		}
	}
	copy(c.key[:], h[len(h)-4:])
	switch op {
	case opClose, opPing, opPong:
		if !fin || length > maxControl {
			return errBadControl
		}
	case opText:
		return errText
	case opBinary:
		if c.inMsg {
			return errInterleaved
		}
		c.inMsg, c.msgLen = true, 0
		c.meter.Reset()
	case opContinuation:
		if !c.inMsg {
			return errContinuation
		}
	default:
		return errOpcode
	}
	c.op, c.fin, c.left, c.keyOff = op, fin, length, 0
	c.inFrame = true
	if op < opClose {
		if maxFrame := c.maxFrame(); maxFrame < 0 || c.msgLen+length > uint64(maxFrame) {
			return errTooBig
		}
		c.frameEnd = c.msgLen + length
		return c.checkLen()
	}
	return nil
}

// checkLen refuses a message as soon as its length and its RELY frame's
// are known to differ, so that a read that ends where the frame ends does
// not return a whole frame of a message longer than it.
func (c *Conn) checkLen() error {
	total := uint64(c.meter.Total())
	if total > 0 && (c.frameEnd > total || c.fin && c.frameEnd != total) {
		return errNotOneFrame
	}
	return nil
}

// control acts on a complete control frame.
func (c *Conn) control() error {
	p := c.ctl[:c.ctlN]
	c.ctlN = 0
	switch c.op {
	case opPing:
		b := append([]byte(nil), p...) // rare: a ping allocates its answer
		c.pongOwed.Store(&b)
		if c.wmu.TryLock() {
			c.unlockW()
		}
	case opClose:
		code := uint16(0)
		switch {
		case len(p) == 1:
			return errCloseFrame
		case len(p) >= 2:
			code = binary.BigEndian.Uint16(p)
			if !validCloseCode(code) {
				return errCloseFrame
			}
			if !utf8.Valid(p[2:]) {
				return errCloseReason
			}
		}
		c.sendClose(code)
		return io.EOF
	}
	return nil
}

func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// Write sends p, a run of RELY frames that may start or end anywhere in a
// frame, as one binary message per frame. It returns len(p) on success:
// the count is of frame bytes, never of WebSocket framing.
func (c *Conn) Write(p []byte) (int, error) {
	bufs := [1][]byte{p}
	return c.WriteBuffers(bufs[:])
}

// WriteBuffers is Write for several buffers, sent with as few system calls
// as the socket allows (writev). On an error the connection is unusable
// and the count is only of frame bytes known to be on the wire: possibly 0.
func (c *Conn) WriteBuffers(bufs [][]byte) (int, error) {
	c.wmu.Lock()
	defer c.unlockW()
	if c.werr != nil {
		return 0, c.werr
	}
	bt := getBatch(c.copyAll)
	defer putBatch(bt)
	n := 0
	for _, b := range bufs {
		for len(b) > 0 {
			if c.wleft > 0 { // inside a frame whose header is out
				k := min(c.wleft, len(b))
				bt.add(b[:k])
				c.wleft -= k
				b = b[k:]
				n += k
				if c.wleft == 0 {
					c.wm.Reset()
				}
				continue
			}
			fed, err := c.wm.Feed(b)
			if err != nil {
				c.werr = fmt.Errorf("wsconn: written bytes are not RELY frames: %w", err)
				return 0, c.werr
			}
			total := c.wm.Total()
			if total == 0 { // the header is split: keep its start until its length is known
				if c.wpend == nil {
					c.wpend = bufpool.Get(protocol.MaxTransferOverhead)
				}
				c.wpend.B = append(c.wpend.B, b[:fed]...)
				b = b[fed:]
				n += fed
				continue
			}
			bt.header(total)
			if c.wpend != nil {
				bt.copy(c.wpend.B)
				bufpool.Put(c.wpend)
				c.wpend = nil
			}
			bt.add(b[:fed])
			b = b[fed:]
			n += fed
			if c.wleft = total - c.wm.Pos(); c.wleft == 0 {
				c.wm.Reset()
			}
		}
	}
	if err := bt.flush(c.raw, c.rc, c.blocked); err != nil {
		c.werr = err
		return 0, err
	}
	return n, nil
}

// unlockW releases wmu, then sends a pong that Read left owed while the
// lock was taken, if the stream is at a frame boundary; Read leaves a pong
// owed and then tries the lock, so one of the two always sends it.
func (c *Conn) unlockW() {
	for {
		c.wmu.Unlock()
		if c.pongOwed.Load() == nil || !c.wmu.TryLock() {
			return
		}
		if c.werr != nil || c.closeSent {
			c.pongOwed.Store(nil)
		}
		if c.wleft > 0 || c.wpend != nil {
			c.wmu.Unlock() // mid-frame: the next Write ends the frame, then sends it
			return
		}
		if p := c.pongOwed.Swap(nil); p != nil {
			if err := c.writeControl(opPong, *p, controlWriteTimeout); err != nil {
				c.werr = err
			}
		}
	}
}

// writeControl writes one control frame; wmu is held and the stream is at
// a frame boundary.
func (c *Conn) writeControl(op byte, payload []byte, timeout time.Duration) error {
	var a [2 + maxControl]byte
	f := append(appendHeader(a[:0], op, len(payload)), payload...)
	_ = c.raw.SetWriteDeadline(time.Now().Add(timeout))
	_, err := c.raw.Write(f)
	_ = c.raw.SetWriteDeadline(c.wdl)
	return err
}

// sendClose sends a close frame with code (none when 0), once, if the
// stream is at a frame boundary and no write holds it; after it nothing
// more is written.
func (c *Conn) sendClose(code uint16) {
	c.sendCloseWithin(code, controlWriteTimeout)
}

func (c *Conn) sendCloseWithin(code uint16, timeout time.Duration) {
	// A write in progress holds the lock: wait for it to end, up to
	// timeout (a write blocked on a full socket would not let the close
	// frame out either).
	give := time.Now().Add(timeout)
	for !c.wmu.TryLock() {
		if time.Now().After(give) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	defer c.wmu.Unlock()
	if c.closeSent || c.werr != nil || c.wleft > 0 || c.wpend != nil {
		return
	}
	c.closeSent = true
	var p []byte
	if code != 0 {
		p = binary.BigEndian.AppendUint16(make([]byte, 0, 2), code)
	}
	_ = c.writeControl(opClose, p, timeout)
	c.werr = net.ErrClosed
}

// SendClose sends a close frame with code, best-effort within a short
// deadline, without closing the connection: for a server that closes the
// socket itself. It never waits for a write that is blocked on the socket,
// and sends nothing when a close frame went out already.
func (c *Conn) SendClose(code uint16) { c.sendCloseWithin(code, closeTimeout) }

// Close sends a close frame with code 1000, best-effort within a short
// deadline, and closes the connection.
func (c *Conn) Close() error { return c.CloseWith(CloseNormal) }

// CloseWith is Close with another close code, e.g. CloseGoingAway when the
// server shuts down or CloseProtocol after a RELY violation. It never
// waits for a write that is blocked on the socket.
func (c *Conn) CloseWith(code uint16) error {
	c.closeOnce.Do(func() {
		c.sendCloseWithin(code, closeTimeout)
		c.closeErr = c.raw.Close()
	})
	return c.closeErr
}

func (c *Conn) LocalAddr() net.Addr               { return c.raw.LocalAddr() }
func (c *Conn) RemoteAddr() net.Addr              { return c.raw.RemoteAddr() }
func (c *Conn) SetReadDeadline(t time.Time) error { return c.raw.SetReadDeadline(t) }
func (c *Conn) SetDeadline(t time.Time) error {
	_ = c.SetWriteDeadline(t)
	return c.raw.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline of writes; control frames, which have
// their own, restore it after them.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.unlockW()
	c.wdl = t
	return c.raw.SetWriteDeadline(t)
}
