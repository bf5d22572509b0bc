//go:build linux

package wsconn

import (
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
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
	waited := false
	for len(iov) > 0 {
		var n int
		var errno syscall.Errno
		err := rc.Write(func(fd uintptr) bool {
			for {
				r, _, e := unix.Syscall(unix.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(min(len(iov), maxIOV)))
				switch e {
				case 0:
					n = int(r)
					return true
				case unix.EINTR:
					continue
				case unix.EAGAIN:
					if blocked != nil && !waited {
						blocked(true)
					}
					waited = true
					return false // the runtime waits until the socket takes data
				default:
					errno = e
					return true
				}
			}
		})
		runtime.KeepAlive(b)
		if err != nil {
			return err
		}
		if errno != 0 {
			return errno
		}
		if waited && blocked != nil {
			blocked(false)
		}
		waited = false
		for n > 0 {
			if l := int(iov[0].Len); n >= l {
				n -= l
				iov = iov[1:]
			} else {
				iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
				iov[0].SetLen(l - n)
				n = 0
			}
		}
	}
	return nil
}

const haveWritev = true

type iovec = unix.Iovec
