//go:build linux

package wsconn

import (
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/sockio"
)

// maxIOV is the most entries one writev takes (IOV_MAX).
const maxIOV = 1024

// writev writes every buffer of b.iov with writev on rc, telling blocked
// when the socket refuses bytes (true) and when it takes some again after
// that (false): the server's stall detection then sees the socket, not a
// goroutine that waits for a CPU in the middle of a write.
func (b *batch) writev(rc syscall.RawConn, blocked func(bool)) error {
	iov := b.iovecs[:0]
	for _, p := range b.iov {
		if len(p) > 0 {
			v := unix.Iovec{Base: &p[0]}
			v.SetLen(len(p))
			iov = append(iov, v)
		}
	}
	b.iovecs = iov
	b.blocked, b.waited = blocked, false
	defer func() { b.blocked = nil }()
	for len(iov) > 0 {
		n, err := sockio.Writev(rc, iov[:min(len(iov), maxIOV)], b)
		runtime.KeepAlive(b)
		if err != nil {
			return err
		}
		if b.waited && blocked != nil {
			blocked(false)
		}
		b.waited = false
		iov = sockio.Advance(iov, n)
	}
	return nil
}

// SocketFull implements sockio.Full: tell the server once per wait.
func (b *batch) SocketFull(uintptr) {
	if b.blocked != nil && !b.waited {
		b.blocked(true)
	}
	b.waited = true
}

const haveWritev = true

type iovec = unix.Iovec
