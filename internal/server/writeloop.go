package server

import (
	"encoding/binary"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/sockio"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

const (
	// writeChunk bounds one write call on connections written through
	// their net.Conn (TLS, WebSocket), so that progress, and with it room
	// for senders and stall detection, is seen at least every 16 KiB (a
	// TLS record: no extra syscall).
	writeChunk = 16 << 10
	// maxIOV is how many buffers one writev takes. Buffers hold many small
	// frames each, so 64 of them are megabytes.
	maxIOV = 64
)

// Deliver implements registry.Peer: it queues a copy of frame for this
// client within its listener's send_queue, and starts the write goroutine
// if none is running. Any goroutine may call it.
func (c *conn) Deliver(frame []byte, w *registry.Waiter) registry.Result {
	o := c.terms(w)
	return c.settle(c.out.push(frame, &o))
}

// deliverBuf is Deliver for a frame in a pooled buffer of its own, which
// the queue takes over instead of copying; on any result but Delivered the
// caller keeps it.
func (c *conn) deliverBuf(b *bufpool.Buf, w *registry.Waiter) registry.Result {
	o := c.terms(w)
	return c.settle(c.out.pushBuf(b, &o))
}

func (c *conn) terms(w *registry.Waiter) offer {
	lim := c.ln.limits()
	return offer{
		limit:  int(lim.SendQueue),
		stall:  lim.StallTimeout.D(),
		waiter: w,
		writer: c,
	}
}

// settle applies the receiver's slow_receiver policy to a frame refused
// because this connection is stalled.
func (c *conn) settle(r registry.Result) registry.Result {
	if r == registry.QueueFull && c.ln.limits().SlowReceiver == "disconnect" {
		c.close(ReasonSlowReceiver, "stalled for stall_timeout with a full send queue")
	}
	return r
}

// unsent implements queueOwner.
func (c *conn) unsent() int {
	if c.sock == nil {
		return -1
	}
	n := -1
	_ = c.sock.Control(func(fd uintptr) { n = unsentOn(fd) })
	return n
}

// startWriter starts the write goroutine. The send queue calls it, with its
// lock held, only while the queue is open, and close happens under the
// same lock: so no writer starts after close, and finish's Wait is safe.
func (c *conn) startWriter() {
	c.writers.Add(1)
	go c.writeLoop()
}

// batch is what one round of the write loop holds; pooled, so that a
// writer costs nothing per round.
type batch struct {
	items [maxIOV]queued
	iov   [maxIOV]unix.Iovec
	bufs  [maxIOV][]byte // for a transport's WriteBuffers
}

var batches = sync.Pool{New: func() any { return new(batch) }}

// writeLoop writes queued frames until the queue is empty or the
// connection fails. Whatever accumulated while one batch was on the wire
// goes out in the next one.
func (c *conn) writeLoop() {
	defer c.writers.Done()
	bt := batches.Get().(*batch)
	defer batches.Put(bt)
	for {
		n := c.out.take(bt.items[:], false)
		if n == 0 {
			// Let the senders run once before giving up the goroutine:
			// back-to-back bursts then reuse it instead of starting one each.
			runtime.Gosched()
			if n = c.out.take(bt.items[:], true); n == 0 {
				return
			}
		}
		err := c.writeBatch(bt, n)
		if err != nil {
			r := ReasonEOF
			if isTimeout(err) {
				r = ReasonWriteTimeout
			}
			c.close(r, "write: "+err.Error())
			// The queue is closed now: nothing more is taken, and the
			// writer ends at the next take.
		}
	}
}

// writeBatch writes the first n items of bt, counts each frame as
// forwarded once its buffer is wholly written, gives the buffers back, and
// counts the frames of any buffer it could not finish as dropped.
func (c *conn) writeBatch(bt *batch, n int) error {
	c.armWriteDeadline()
	var err error
	done, off := 0, 0 // items wholly written; bytes of the next one written
	for done < n && err == nil {
		var w int
		switch c.writes {
		case writeDirect:
			w, err = c.writev(bt, done, n, off)
		case writeBuffers:
			w, err = c.writeBuffers(bt, done, n, off)
		default:
			w, err = c.writeChunk(bt.items[done].b.B[off:])
		}
		if w > 0 {
			c.out.written(w)
			c.armWriteDeadline()
		}
		off += w
		for done < n && off >= len(bt.items[done].b.B) {
			it := &bt.items[done]
			off -= len(it.b.B)
			c.counts.framesOut.add(uint64(it.frames))
			c.counts.bytesOut.add(uint64(it.payload))
			bufpool.Put(it.b)
			*it = queued{}
			done++
		}
	}
	if done < n {
		// The socket failed. Whole frames of the buffer it was writing
		// did reach it: they count as forwarded, the rest as dropped.
		it := &bt.items[done]
		sent, payload := wholeFrames(it.b.B[:off])
		c.counts.framesOut.add(uint64(sent))
		c.counts.bytesOut.add(uint64(payload))
		it.frames -= sent
		reason := c.out.dropReason()
		frames, unwritten := 0, -off
		for i := done; i < n; i++ {
			it := &bt.items[i]
			frames += it.frames
			unwritten += len(it.b.B)
			bufpool.Put(it.b)
			*it = queued{}
		}
		c.counts.lose(reason, frames)
		c.out.written(unwritten) // not written, but no longer queued either
	}
	return err
}

// armWriteDeadline keeps the write deadline write_timeout ahead of the last
// progress, moving it only once a quarter of it has passed: a receiver
// that takes data slowly but steadily is never cut off, one whose socket
// takes nothing for write_timeout is.
func (c *conn) armWriteDeadline() {
	timeout := c.ln.limits().WriteTimeout.D()
	now := time.Now()
	if at := c.out.writeArmed; at == 0 || now.UnixNano()-at > int64(timeout/4) {
		_ = c.nc.SetWriteDeadline(now.Add(timeout))
		c.out.writeArmed = now.UnixNano()
	}
}

// writev writes items[from:to] of bt, the first one from off, with one
// writev on the socket, waiting while the socket is full. It returns after
// the first syscall that made progress, so the caller frees queue space as
// the kernel takes it.
func (c *conn) writev(bt *batch, from, to, off int) (int, error) {
	iov := bt.iov[:0]
	for i := from; i < to; i++ {
		b := bt.items[i].b.B
		if i == from {
			b = b[off:]
		}
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	if len(iov) == 0 {
		return 0, nil
	}
	n, err := sockio.Writev(c.sock, iov, c)
	runtime.KeepAlive(bt)
	return n, err
}

// SocketFull implements sockio.Full: the socket refused bytes.
func (c *conn) SocketFull(fd uintptr) { c.out.blocked(unsentOn(fd)) }

// writeMode is how a connection's write loop writes, fixed by its
// transport.
type writeMode uint8

const (
	writeChunks  writeMode = iota // through nc, writeChunk bytes at a time, progress seen per call
	writeDirect                   // writev on the socket itself, progress seen per syscall
	writeBuffers                  // nc.WriteBuffers, which reports a full socket itself
)

// buffersWriter is a transport that writes several buffers at once, with
// writev (internal/wsconn).
type buffersWriter interface {
	WriteBuffers(bufs [][]byte) (int, error)
}

// maxBuffersWrite bounds one WriteBuffers call, so that queue space is
// freed as a batch goes out.
const maxBuffersWrite = 256 << 10

// writeBuffers hands items[from:to] of bt (the first from off) to a
// transport that reports itself when the socket is full, up to
// maxBuffersWrite bytes in one call: a WebSocket batch then costs one
// writev, not one per 16 KiB.
func (c *conn) writeBuffers(bt *batch, from, to, off int) (int, error) {
	bufs := bt.bufs[:0]
	size := 0
	for i := from; i < to && (size == 0 || size < maxBuffersWrite); i++ {
		b := bt.items[i].b.B
		if i == from {
			b = b[off:]
		}
		if room := maxBuffersWrite - size; size > 0 && len(b) > room {
			b = b[:room]
		}
		bufs = append(bufs, b)
		size += len(b)
	}
	n, err := c.nc.(buffersWriter).WriteBuffers(bufs)
	clear(bt.bufs[:len(bufs)])
	return n, err
}

// writeChunk writes up to writeChunk bytes of b through the connection's
// net.Conn. The socket counts as blocked while the call lasts: a transport
// gives no finer view of its progress.
func (c *conn) writeChunk(b []byte) (int, error) {
	b = b[:min(len(b), writeChunk)]
	if !c.selfBlocked {
		c.out.blocked(c.unsent())
	}
	return c.nc.Write(b)
}

// wholeFrames counts the complete frames at the start of b, a prefix of a
// queue buffer (whole frames back to back), and their payload bytes.
func wholeFrames(b []byte) (frames, payload int) {
	for len(b) > protocol.HeaderLen+1 {
		from := int(b[protocol.HeaderLen])
		if len(b) < protocol.HeaderLen+1+from+1 {
			break
		}
		to := int(b[protocol.HeaderLen+1+from])
		head := protocol.TransferLen(from, to, 0)
		if len(b) < head {
			break
		}
		n := int(binary.BigEndian.Uint32(b[head-4:]))
		if len(b) < head+n {
			break
		}
		frames++
		payload += n
		b = b[head+n:]
	}
	return frames, payload
}
