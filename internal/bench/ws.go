package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"

	"github.com/gobwas/ws"

	"github.com/relayd/relayd/internal/protocol"
)

// wsConn is the client side of RELY v1 over WebSocket (SPEC §10), made to
// look like the TCP stream client.Client expects, so that every mode runs
// the same client code over either transport. Writes are runs of RELY
// frames cut anywhere (what the client's write buffer emits); each frame
// goes out as one masked binary message. Reads return the payload bytes of
// the server's binary messages as one stream.
//
// relayd's own wsconn is the server side only; gobwas/ws does the
// handshake, and the framing is done here without allocating per message:
// the load generator shares its one core between senders and receivers,
// and any CPU it spends on itself lowers what it can offer the server.
type wsConn struct {
	net.Conn // the upgraded TCP connection: deadlines, Close, addresses

	// Owned by Read.
	br   *bufio.Reader
	left uint64 // payload bytes of the current server frame not yet returned
	rerr error  // sticky

	// Guarded by wmu: Write, and Read's rare pong.
	wmu    sync.Mutex
	meter  protocol.Meter // the outgoing frame being sent
	begun  bool           // its WebSocket header went out
	pend   []byte         // its first bytes, while its length is not known yet
	key    [4]byte        // its mask key
	keyOff int
	out    []byte // the write being assembled
	rng    *rand.PCG
	werr   error // sticky
}

// wsChunk bounds one socket write, as the TCP client's 64 KiB buffer does.
const wsChunk = 64 << 10

// dialWS opens a WebSocket to url from src (nil: any address) and returns
// it as a net.Conn for client.New. readBuf sizes its read buffer: small for
// the idle mode's thousands of connections, 64 KiB for throughput.
func dialWS(ctx context.Context, url string, src *net.TCPAddr, readBuf int) (net.Conn, error) {
	nd := net.Dialer{}
	if src != nil {
		nd.LocalAddr = src
	}
	d := ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return nd.DialContext(ctx, network, addr)
	}}
	conn, pre, _, err := d.Dial(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("websocket %s: %w", url, err)
	}
	var r io.Reader = conn
	if pre != nil { // bytes that came with the handshake response
		r = io.MultiReader(pre, conn)
	}
	seed := uint64(rand.Int64())
	return &wsConn{
		Conn: conn,
		br:   bufio.NewReaderSize(r, max(readBuf, 512)),
		rng:  rand.NewPCG(seed, seed^0x9e3779b97f4a7c15),
	}, nil
}

// Read returns the payload bytes of the server's binary messages. It goes
// on past a message's end while the next header is already buffered, so a
// 64 KiB read of small frames is one call, as on TCP. A deadline that
// expires mid-header loses nothing: a header is consumed only once whole.
func (c *wsConn) Read(p []byte) (int, error) {
	if c.rerr != nil {
		return 0, c.rerr
	}
	n := 0
	for n < len(p) {
		if c.left == 0 {
			if n > 0 && !c.headerBuffered() {
				break
			}
			if err := c.nextFrame(); err != nil {
				if n == 0 {
					return 0, err
				}
				break
			}
			continue
		}
		k, err := c.br.Read(p[n:min(uint64(len(p)), uint64(n)+c.left)])
		n += k
		c.left -= uint64(k)
		if err != nil {
			if n == 0 {
				return 0, c.fail(err)
			}
			break
		}
		if c.br.Buffered() == 0 {
			break // more would mean a system call: return what we have
		}
	}
	return n, nil
}

// headerBuffered reports whether a whole frame header is in the buffer.
func (c *wsConn) headerBuffered() bool {
	b, _ := c.br.Peek(min(2, c.br.Buffered()))
	if len(b) < 2 {
		return false
	}
	return c.br.Buffered() >= headerLen(b[1])
}

// headerLen is the length of a server frame header, from its second byte.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// nextFrame consumes the next frame header; for a data frame it sets left
// to its payload length. It answers pings and ends the stream at a close.
func (c *wsConn) nextFrame() error {
	b, err := c.br.Peek(2)
	if err != nil {
		return c.timeoutOr(err)
	}
	hl := headerLen(b[1])
	h, err := c.br.Peek(hl)
	if err != nil {
		return c.timeoutOr(err)
	}
	op, masked := h[0]&0x0f, h[1]&0x80 != 0
	length := uint64(h[1] & 0x7f)
	switch length {
	case 126:
		length = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		length = binary.BigEndian.Uint64(h[2:])
	}
	_, _ = c.br.Discard(hl)
	if masked {
		return c.fail(errors.New("websocket: the server sent a masked frame"))
	}
	switch op {
	case byte(ws.OpBinary), byte(ws.OpContinuation):
		c.left = length
		return nil
	case byte(ws.OpPing), byte(ws.OpPong), byte(ws.OpClose):
		if length > 125 {
			return c.fail(errors.New("websocket: control frame over 125 bytes"))
		}
		body := make([]byte, length) // rare: relayd sends no pings, closes once
		if _, err := io.ReadFull(c.br, body); err != nil {
			return c.fail(err)
		}
		switch op {
		case byte(ws.OpPing):
			c.control(ws.OpPong, body)
		case byte(ws.OpClose):
			// Answer with the same code: a kick or a shutdown then
			// ends cleanly, and Recv sees the end of the stream.
			c.control(ws.OpClose, body[:min(len(body), 2)])
			return c.fail(io.EOF)
		}
		return nil
	default:
		return c.fail(fmt.Errorf("websocket: the server sent opcode %d, not binary", op))
	}
}

// timeoutOr keeps an expired deadline retryable and makes anything else sticky.
func (c *wsConn) timeoutOr(err error) error {
	if isTimeout(err) {
		return err
	}
	return c.fail(err)
}

func (c *wsConn) fail(err error) error {
	if c.rerr == nil {
		c.rerr = err
	}
	return c.rerr
}

// control sends a control frame, at a frame boundary of the outgoing
// stream only: a pong inside a half-sent message would corrupt it. A pong
// owed mid-message is dropped; relayd never pings, and a close mid-message
// ends the connection anyway.
func (c *wsConn) control(op ws.OpCode, body []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.begun || len(c.pend) > 0 || c.werr != nil {
		return
	}
	c.out = c.header(c.out[:0], op, len(body))
	c.out = c.masked(c.out, body)
	_, _ = c.Conn.Write(c.out)
	c.out = c.out[:0]
}

// Write sends p, RELY frames that may start and end anywhere in it, one
// binary message per frame. The frame's length must be known before its
// message header goes out, so the first bytes of a frame whose header is
// split across writes wait in pend.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return 0, c.werr
	}
	total := len(p)
	out := c.out[:0]
	for len(p) > 0 {
		if len(out) >= wsChunk {
			if err := c.write(out); err != nil {
				return 0, err
			}
			out = out[:0]
		}
		n, err := c.meter.Feed(p[:min(len(p), wsChunk)])
		if err != nil {
			c.werr = fmt.Errorf("websocket client: not a RELY frame stream: %w", err)
			return 0, c.werr
		}
		chunk := p[:n]
		p = p[n:]
		if !c.begun {
			if c.meter.Total() == 0 {
				c.pend = append(c.pend, chunk...)
				continue
			}
			c.key = c.newKey()
			c.keyOff = 0
			out = c.header(out, ws.OpBinary, c.meter.Total())
			out = c.masked(out, c.pend)
			c.pend = c.pend[:0]
			c.begun = true
		}
		out = c.masked(out, chunk)
		if c.meter.Done() {
			c.meter.Reset()
			c.begun = false
		}
	}
	if len(out) > 0 {
		if err := c.write(out); err != nil {
			return 0, err
		}
	}
	c.out = out[:0]
	return total, nil
}

func (c *wsConn) write(b []byte) error {
	if _, err := c.Conn.Write(b); err != nil {
		c.werr = err
	}
	return c.werr
}

// header appends a masked client frame header with FIN set. A control
// frame gets a key of its own; a data frame's was drawn by Write.
func (c *wsConn) header(b []byte, op ws.OpCode, n int) []byte {
	if op != ws.OpBinary {
		c.key, c.keyOff = c.newKey(), 0
	}
	b = append(b, 0x80|byte(op))
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = binary.BigEndian.AppendUint16(append(b, 0x80|126), uint16(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	return append(b, c.key[:]...)
}

// masked appends p masked with the current key: the copy and the XOR a
// browser does for every message, so the server unmasks what it would in
// production. A fresh pseudo-random key per message as RFC 6455 asks;
// math/rand is enough here, where no proxy cache needs protecting.
func (c *wsConn) masked(b, p []byte) []byte {
	b = append(b, p...)
	ws.Cipher(b[len(b)-len(p):], c.key, c.keyOff)
	c.keyOff += len(p)
	return b
}

func (c *wsConn) newKey() (k [4]byte) {
	binary.LittleEndian.PutUint32(k[:], uint32(c.rng.Uint64()))
	return k
}
