//go:build !linux

package server

// parker is epoll-based on Linux; elsewhere every idle connection parks on
// its own goroutine.
type parker struct{}

func (p *parker) park(*conn) bool { return false }
func (p *parker) wake(*conn)      {}
func (p *parker) stop()           {}
func (p *parker) wakeAll()        {}
