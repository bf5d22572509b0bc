//go:build linux

package server

import "golang.org/x/sys/unix"

// unsentOn returns the bytes the kernel has yet to get acknowledged on the
// TCP socket fd (SIOCOUTQ), -1 on error.
func unsentOn(fd uintptr) int {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
	if err != nil {
		return -1
	}
	return n
}
