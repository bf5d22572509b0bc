//go:build unix

// Package sockio writes to sockets below net.Conn, where the caller must
// see each system call's progress: how many bytes the kernel took, and when
// the socket was full.
package sockio

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Writev makes one writev(2) of iov on rc, waiting (through the runtime's
// poller, honouring the write deadline) while the socket is full, and
// returns after the first call that wrote anything. full, when not nil, is
// told each time the socket refuses bytes. The caller keeps the buffers
// iov points into alive until Writev returns.
func Writev(rc syscall.RawConn, iov []unix.Iovec, full Full) (int, error) {
	if len(iov) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		for {
			r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
			switch e {
			case 0:
				n = int(r)
				return true
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				if full != nil {
					full.SocketFull(fd)
				}
				return false // the runtime waits until the socket takes data
			default:
				errno = e
				return true
			}
		}
	})
	if err != nil {
		return n, err
	}
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// Full is told when a socket refuses bytes; an interface rather than a
// func, so that passing a connection allocates nothing.
type Full interface{ SocketFull(fd uintptr) }

// Advance drops the first n bytes from iov, which the kernel wrote.
func Advance(iov []unix.Iovec, n int) []unix.Iovec {
	for n > 0 && len(iov) > 0 {
		if l := int(iov[0].Len); n >= l {
			n -= l
			iov = iov[1:]
		} else {
			iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
			iov[0].SetLen(l - n)
			n = 0
		}
	}
	return iov
}
