//go:build linux

package server

import (
	"container/heap"
	"os"
	"sync"
	"syscall"
	"time"
)

// parker waits for every parked plain-TCP connection with one epoll
// instance and one goroutine, so that an idle connection holds no goroutine
// at all: no stack, only its socket and its conn. One timer serves every
// parked connection's idle deadline: it fires at the earliest, kept at the
// top of a heap.
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

	base    time.Time   // when the parker started: deadlines are kept as monotonic offsets from it
	due     deadlines   // guarded by mu; parked connections, earliest idle deadline first
	timer   *time.Timer // guarded by mu; fires at due's earliest deadline
	timerAt int64       // guarded by mu; when timer fires (offset from base); 0: stopped
}

// deadlines is a heap of parked connections by idle deadline; each knows
// its index, so that a connection woken early leaves it in O(log n).
type deadlines []parked

type parked struct {
	at int64 // c.deadline as an offset from parker.base, in nanoseconds
	c  *conn
}

func (d deadlines) Len() int           { return len(d) }
func (d deadlines) Less(i, j int) bool { return d[i].at < d[j].at }
func (d deadlines) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].c.parkIndex, d[j].c.parkIndex = int32(i), int32(j)
}
func (d *deadlines) Push(x any) {
	e := x.(parked)
	e.c.parkIndex = int32(len(*d))
	*d = append(*d, e)
}
func (d *deadlines) Pop() any {
	old := *d
	e := old[len(old)-1]
	old[len(old)-1] = parked{}
	*d = old[:len(old)-1]
	e.c.parkIndex = -1
	return e
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
	// A connection parked here before is still registered: a one-shot
	// registration stays after it fires, and is re-armed.
	op := syscall.EPOLL_CTL_MOD
	if !c.epollAdded {
		op = syscall.EPOLL_CTL_ADD
	}
	var ctlErr error
	err := rc.Control(func(fd uintptr) { ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev) })
	if err != nil || ctlErr != nil {
		// Closed meanwhile, most likely: let the goroutine path find out.
		return false
	}
	c.epollAdded = true
	p.conns[token] = c
	c.parkToken = token
	heap.Push(&p.due, parked{int64(c.deadline.Sub(p.base)), c})
	p.armLocked()
	return true
}

// unparkLocked takes c, parked here, out of the parker. Called with mu held.
func (p *parker) unparkLocked(c *conn) {
	delete(p.conns, c.parkToken)
	c.parkToken = 0
	if c.parkIndex >= 0 {
		heap.Remove(&p.due, int(c.parkIndex))
	}
}

// armLocked sets the timer to the earliest idle deadline. Called with mu
// held.
func (p *parker) armLocked() {
	if len(p.due) == 0 {
		return // a timer left running finds nothing due
	}
	at := p.due[0].at
	if p.timerAt != 0 && p.timerAt <= at {
		return // it fires no later than needed, and looks again then
	}
	p.timerAt = at
	d := time.Duration(at) - time.Since(p.base)
	if p.timer == nil {
		p.timer = time.AfterFunc(d, p.expire)
	} else {
		p.timer.Reset(d)
	}
}

// expire resumes every connection whose idle deadline has come.
func (p *parker) expire() {
	var woken []*conn
	p.mu.Lock()
	p.timerAt = 0
	now := int64(time.Since(p.base))
	for len(p.due) > 0 && p.due[0].at <= now {
		c := p.due[0].c
		p.unparkLocked(c)
		woken = append(woken, c)
	}
	p.armLocked()
	p.mu.Unlock()
	for _, c := range woken {
		go c.resume()
	}
}

// wake resumes c if it is parked here; close calls it after closing the
// socket, so that the resumed read loop sees the connection closed.
func (p *parker) wake(c *conn) {
	p.mu.Lock()
	token := c.parkToken
	if token != 0 {
		p.unparkLocked(c)
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
	for _, c := range p.conns {
		conns = append(conns, c)
	}
	for _, c := range conns {
		p.unparkLocked(c)
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
		p.unparkLocked(c)
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
	p.base = time.Now()
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
