//go:build linux

package server

import (
	"os"
	"sync"
	"syscall"
	"time"
)

// parker waits for every parked plain-TCP connection with one epoll
// instance and one goroutine, so that an idle connection holds no goroutine
// at all: no stack, only its socket, its conn and a timer for idle_timeout.
//
// The epoll instance is itself a file the Go runtime polls, so the
// goroutine that collects its events is parked by the scheduler like any
// network read, not blocked in a system call. A parked connection is
// registered one-shot under a token; whichever comes first, readability
// (data, EOF or an error on the socket), its idle deadline or close,
// removes the token and resumes the connection's read loop on a new
// goroutine. Waking is idempotent, and a stale event or timer finds no
// token and does nothing; a spurious resume only costs one read that
// parks again.
type parker struct {
	mu     sync.Mutex
	epfd   int
	file   *os.File         // epfd; nil until the first park and after stop
	conns  map[uint64]*conn // guarded by mu; parked connections by token
	token  uint64           // guarded by mu; the last token handed out
	failed bool             // guarded by mu; no epoll here: park on goroutines
	done   chan struct{}    // closed when the event goroutine has returned
}

// park registers c, whose read loop has just returned errIdle with no read
// buffer held, and reports whether it is now parked here. When it returns
// false the caller parks c on a goroutine instead.
func (p *parker) park(c *conn) bool {
	if c.pollable == nil {
		return false
	}
	rc, ok := c.pollable()
	if !ok {
		return false // the transport holds bytes no epoll event would announce
	}
	c.rawConn = rc

	p.mu.Lock()
	defer p.mu.Unlock()
	// Shutdown sets stopping, then wakes everything parked here under mu:
	// a connection that went idle just before must not park after that.
	if c.srv.stopping.Load() || !p.startLocked() {
		return false
	}
	p.token++
	token := p.token
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(token)),
		Pad:    int32(uint32(token >> 32)),
	}
	// A connection parked here before (it has its timer) is still
	// registered: a one-shot registration stays after it fires, and is
	// re-armed.
	op := syscall.EPOLL_CTL_MOD
	if c.parkTimer == nil {
		op = syscall.EPOLL_CTL_ADD
	}
	var ctlErr error
	err := c.rawConn.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err != nil || ctlErr != nil {
		// Closed meanwhile, most likely: let the goroutine path find out.
		return false
	}
	p.conns[token] = c
	c.parkToken = token
	// The timer's function waits for mu, so it cannot run before park
	// returns; a timer left over from an earlier park only wakes c early.
	if c.parkTimer == nil {
		c.parkTimer = time.AfterFunc(time.Until(c.deadline), func() { p.wake(c) })
	} else {
		c.parkTimer.Reset(time.Until(c.deadline))
	}
	return true
}

// wake resumes c if it is parked here; close calls it after closing the
// socket, so that the resumed read loop sees the connection closed.
func (p *parker) wake(c *conn) {
	p.mu.Lock()
	token := c.parkToken
	if token != 0 {
		delete(p.conns, token)
		c.parkToken = 0
	}
	p.mu.Unlock()
	if token != 0 {
		go c.resume()
	}
}

// wakeAll resumes every parked connection (shutdown: they stop reading).
func (p *parker) wakeAll() {
	p.mu.Lock()
	conns := make([]*conn, 0, len(p.conns))
	for token, c := range p.conns {
		delete(p.conns, token)
		c.parkToken = 0
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		go c.resume()
	}
}

func (p *parker) wakeToken(token uint64) {
	p.mu.Lock()
	c := p.conns[token]
	if c != nil {
		delete(p.conns, token)
		c.parkToken = 0
	}
	p.mu.Unlock()
	if c != nil {
		go c.resume()
	}
}

// startLocked creates the epoll instance and its event goroutine on the
// first park. Without epoll it reports false, once and for all.
func (p *parker) startLocked() bool {
	if p.file != nil {
		return true
	}
	if p.failed {
		return false
	}
	p.failed = true // until everything below has worked
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return false
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return false
	}
	f := os.NewFile(uintptr(epfd), "park-epoll")
	// Only a file the runtime polls accepts a deadline: anything else
	// would block a thread in epoll_wait.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return false
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return false
	}
	p.failed = false
	p.epfd, p.file = epfd, f
	p.conns = make(map[uint64]*conn)
	p.done = make(chan struct{})
	go p.run(rc)
	return true
}

// run collects epoll events until stop closes the instance.
func (p *parker) run(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		var waitErr error
		err := rc.Read(func(fd uintptr) bool {
			n, waitErr = syscall.EpollWait(int(fd), events, 0)
			if waitErr == syscall.EINTR {
				n, waitErr = 0, nil
			}
			return n > 0 || waitErr != nil // false: wait until the runtime sees events
		})
		if err != nil || waitErr != nil {
			return // stop closed the instance
		}
		for _, ev := range events[:n] {
			p.wakeToken(uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32)
		}
	}
}

// stop closes the epoll instance once no connection is left to park, and
// waits for the event goroutine to return.
func (p *parker) stop() {
	p.mu.Lock()
	f := p.file
	p.file = nil
	p.failed = true
	p.mu.Unlock()
	if f != nil {
		f.Close()
		<-p.done
	}
}
