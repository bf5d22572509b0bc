//go:build !linux

package wsconn

import (
	"errors"
	"syscall"
)

type iovec struct{}

func (b *batch) writev(rc syscall.RawConn, blocked func(bool)) error {
	return errors.New("wsconn: writev is Linux only")
}

const haveWritev = false
