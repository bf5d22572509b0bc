package server

import (
	"bufio"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// conn is one client connection: the state its read loop (readloop.go,
// frames.go, forward.go) and its write loop (writeloop.go) share, and its
// teardown. Neither loop has a goroutine of its own for long: an idle
// plain-TCP connection holds none.
//
// Lock order: Server.mu → listener.mu → sendQueue.mu and parker.mu (the
// last two are never held together).
type conn struct {
	// Static after construction.
	srv         *Server
	ln          *listener
	raw         net.Conn                       // the socket; closing it stops both loops at once
	nc          net.Conn                       // what frames are read from and written to: raw, or a transport over it
	remote      netip.AddrPort                 // the client's address, for logs, limits and /clients
	parks       bool                           // reads may time out harmlessly: idle connections park
	pollable    func() (syscall.RawConn, bool) // non-nil: may park on epoll when it says so
	writes      writeMode                      // how the write loop hands bytes to the transport; set once at attach
	sock        syscall.RawConn                // the TCP socket under every transport; nil when not TCP
	goodbye     func(Reason)                   // non-nil: tells the client why it is closed
	selfBlocked bool                           // nc reports when the socket is full (Accepted.ReportBlocked)
	counted     bool                           // guarded by ln.mu; counted in ln.perIP under remote's address
	out         sendQueue                      // frames queued for this client
	writers     sync.WaitGroup                 // the write goroutine, while one runs
	// waiter is how the read loop waits for room at its receivers, made at
	// its first wait (an idle connection has none); close signals it.
	waiter atomic.Pointer[registry.Waiter]

	idFromCert bool     // the login ClientID must be one of the client certificate's names
	certIDs    []string // with client_id_from_cert: the IDs the client certificate allows

	// Owned by the read loop.
	id        string                 // the logged-in ClientID; "" before login
	token     *signedLogin           // with client_id_from_token: how the connection signed in
	sawFrame  bool                   // a complete frame arrived since deadline was last moved
	deadline  time.Time              // login_timeout, then last complete frame + idle_timeout
	armed     int64                  // the read deadline last set on the socket (unix nanoseconds)
	br        *bufio.Reader          // the pooled read buffer; nil while parked
	fr        *protocol.Reader       // parses frames from br
	drain     *bufio.Reader          // the buffer br replaced, fed to br first; nil when none
	grow      bool                   // a read filled br: move to the next larger buffer
	pending   int                    // a byte read while parked, fed to br first; -1 when none
	one       [1]byte                // what a connection parked on a goroutine reads into
	lastTo    []byte                 // the ToClientID of the last frame forwarded...
	lastPeer  registry.Peer          // ...and its receiver, until it says Gone
	waitTimer *time.Timer            // bounds a wait for room; made at the first wait
	pace      *pacer                 // rate_limit; nil until a listener has one
	counts    frameCounts            // per-frame counters; read concurrently by Stats
	loginAt   atomic.Int64           // when the login completed (unix nanoseconds); read by Clients
	idShared  atomic.Pointer[string] // id, for other goroutines; set at login

	// Parking without a goroutine (park_linux.go).
	parkToken  uint64 // guarded by srv.park.mu; nonzero while parked there
	parkIndex  int32  // guarded by srv.park.mu; its place in the parker's deadlines; -1: none
	epollAdded bool   // guarded by srv.park.mu; registered with the parker's epoll instance

	// Set once, by whoever closes the connection first.
	closeOnce sync.Once
	closing   atomic.Bool
	reason    atomic.Uint32 // a Reason
	detail    string        // what went wrong, for the debug log
}

func newConn(l *listener, raw net.Conn) *conn {
	return &conn{
		srv:       l.srv,
		ln:        l,
		raw:       raw,
		nc:        raw,
		remote:    addrPort(raw.RemoteAddr()),
		pending:   -1,
		parkIndex: -1,
	}
}

// attach takes what the transport produced. It runs on the connection's
// goroutine before the read loop starts.
func (c *conn) attach(a *Accepted) {
	c.nc, c.remote, c.parks, c.pollable, c.goodbye = a.Conn, a.Remote, a.Parks, a.Pollable, a.Goodbye
	c.sock = a.Socket
	if c.sock == nil {
		c.sock = a.FD
	}
	if a.ReportBlocked != nil {
		a.ReportBlocked(func(blocked bool) {
			if blocked {
				c.out.blocked(c.unsent())
			} else {
				c.out.blockedAt.Store(0) // taking data again, though the write goes on
			}
		})
		c.selfBlocked = true
	}
	_, buffers := a.Conn.(buffersWriter)
	switch {
	case a.FD != nil:
		c.writes = writeDirect
	case buffers && c.selfBlocked:
		c.writes = writeBuffers
	default:
		c.writes = writeChunks
	}
	if a.TLS != nil && c.ln.st.Load().cfg.ClientIDFromCert {
		c.idFromCert = true
		c.certIDs = certIDs(*a.TLS)
	}
}

// signedLogin is what a connection that signed in with a token keeps.
type signedLogin struct {
	token string // the login ClientID: a token may also be sent as FromClientID
	sub   []byte // the ID it stands for, to rewrite FromClientID with
}

// Kick implements registry.Peer.
func (c *conn) Kick() { c.close(ReasonKicked, "") }

// close starts closing the connection for reason; only the first call
// counts. It never blocks: it closes the socket, which unblocks both loops,
// and wakes the read loop if it is parked or waiting for room.
func (c *conn) close(r Reason, detail string) {
	c.closeOnce.Do(func() {
		c.reason.Store(uint32(r))
		c.detail = detail
		c.closing.Store(true)
		drop := DropClosed
		if r == ReasonShutdown {
			drop = DropShutdown
		}
		c.out.close(drop, &c.counts)
		if r == ReasonWriteTimeout || r == ReasonSlowReceiver {
			// Whatever the kernel still holds for a receiver that stopped
			// reading would otherwise linger in FIN-WAIT-1: reset instead.
			if tc, ok := c.raw.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
		} else if c.goodbye != nil {
			// The close frame may have to wait for a write in progress to
			// end: not on the goroutine closing (a kick runs on the new
			// login's read loop). The socket is closed right after it.
			c.writers.Add(1) // finish waits for it like for a writer
			go func() {
				defer c.writers.Done()
				c.goodbye(r)
				_ = c.raw.Close()
			}()
			if w := c.waiter.Load(); w != nil {
				w.Signal()
			}
			return
		}
		_ = c.raw.Close()
		if w := c.waiter.Load(); w != nil {
			w.Signal()
		}
	})
	c.srv.park.wake(c) // a connection parked without a goroutine has none to notice
}

// waiterFor returns the read loop's waiter, made on first use. Only the
// read loop calls it.
func (c *conn) waiterFor() *registry.Waiter {
	w := c.waiter.Load()
	if w == nil {
		w = registry.NewWaiter()
		c.waiter.Store(w)
		if c.closed() { // close may have looked before the waiter existed
			w.Signal()
		}
	}
	return w
}

// loginID is the logged-in ClientID, for goroutines other than the read
// loop; "" before login.
func (c *conn) loginID() string {
	if p := c.idShared.Load(); p != nil {
		return *p
	}
	return ""
}

// closed reports whether close has been called.
func (c *conn) closed() bool { return c.closing.Load() }

// loggedIn reports whether a login has been accepted; IDs are never empty.
func (c *conn) loggedIn() bool { return c.id != "" }

func (c *conn) maxPayload() int { return int(c.ln.limits().MaxPayload) }

// finish tears the connection down once its read loop has returned.
func (c *conn) finish() {
	c.close(ReasonEOF, "") // no-op if already closed for another reason
	c.writers.Wait()       // no writer starts once the queue is closed
	if c.loggedIn() {
		c.srv.reg.Unregister(c.id, c)
	}
	r := Reason(c.reason.Load())
	c.ln.remove(c)
	c.srv.disconnects[r].Add(1)
	if c.srv.debugging() {
		attrs := []any{"listener", c.ln.name(), "remote", c.remote.String(), "reason", r.String()}
		if c.loggedIn() {
			attrs = append(attrs, "client_id", c.id)
		}
		if c.detail != "" && r != ReasonEOF {
			attrs = append(attrs, "detail", c.detail)
		}
		c.srv.log.Debug("disconnect", attrs...)
	}
	c.srv.wg.Done()
}
