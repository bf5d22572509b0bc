package wsconn

import (
	"net"
	"sync"
	"syscall"
)

// copyMax is the largest piece of a frame a batch copies next to its
// WebSocket header instead of pointing the system call at it: a writev
// entry costs more than copying a few hundred bytes.
const copyMax = 256

// batch assembles one write: WebSocket headers and small pieces in buf,
// large pieces in place, all as one net.Buffers for writev.
type batch struct {
	buf     []byte
	iov     net.Buffers
	mark    int  // start in buf of the bytes not yet in iov
	copyAll bool // copy everything: the connection is not a socket that takes writev
	iovecs  []iovec
	blocked func(bool) // during writev: told when the socket is full and when it takes bytes again
	waited  bool       // during writev: the socket was found full since it last took bytes
}

var batches sync.Pool

func getBatch(copyAll bool) *batch {
	b, _ := batches.Get().(*batch)
	if b == nil {
		b = &batch{buf: make([]byte, 0, 4096)}
	}
	b.copyAll = copyAll
	return b
}

func putBatch(b *batch) {
	if cap(b.buf) > 256<<10 {
		return // grown by an unusual batch: let it go
	}
	clear(b.iov[:cap(b.iov)]) // hold on to no one's buffers
	clear(b.iovecs[:cap(b.iovecs)])
	b.buf, b.iov, b.iovecs, b.mark = b.buf[:0], b.iov[:0], b.iovecs[:0], 0
	batches.Put(b)
}

func (b *batch) header(n int) { b.buf = appendHeader(b.buf, opBinary, n) }

func (b *batch) copy(p []byte) { b.buf = append(b.buf, p...) }

func (b *batch) add(p []byte) {
	if len(p) <= copyMax || b.copyAll {
		b.buf = append(b.buf, p...)
		return
	}
	b.cut()
	b.iov = append(b.iov, p)
}

// cut ends the run of copied bytes as one entry of iov. If buf grows
// later, earlier entries keep pointing at the old array, which still holds
// their bytes.
func (b *batch) cut() {
	if len(b.buf) > b.mark {
		b.iov = append(b.iov, b.buf[b.mark:len(b.buf):len(b.buf)])
		b.mark = len(b.buf)
	}
}

// flush writes the batch: with writev on rc when it is set, else through w.
func (b *batch) flush(w net.Conn, rc syscall.RawConn, blocked func(bool)) error {
	b.cut()
	if len(b.iov) == 0 {
		return nil
	}
	if rc != nil && haveWritev {
		return b.writev(rc, blocked)
	}
	if len(b.iov) == 1 {
		_, err := w.Write(b.iov[0])
		return err
	}
	iov := b.iov // WriteTo consumes its receiver
	_, err := iov.WriteTo(w)
	return err
}
