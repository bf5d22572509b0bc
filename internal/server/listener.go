package server

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/config"
)

// listener is one bound [[listener]]: its accept loop and its connections.
type listener struct {
	// Static after construction.
	srv  *Server
	name string
	ln   net.Listener

	// Swapped whole by a reload; read once per frame or write.
	st atomic.Pointer[listenerState]

	logins atomic.Uint64 // successful logins

	mu      sync.Mutex
	conns   map[*conn]struct{} // guarded by mu; open connections
	perIP   map[netip.Addr]int // guarded by mu; open connections per client IP
	retired FrameStats         // guarded by mu; frame counts of closed connections
	closed  bool               // guarded by mu; set when it stops: no connection is admitted after
}

// listenerState is the reloadable part of a listener.
type listenerState struct {
	cfg config.Listener
	tls *tls.Config // nil for a plain listener
}

func newListener(s *Server, cfg config.Listener, tc *tls.Config, ln net.Listener) *listener {
	l := &listener{
		srv:   s,
		name:  cfg.Name,
		ln:    ln,
		conns: make(map[*conn]struct{}),
		perIP: make(map[netip.Addr]int),
	}
	l.st.Store(&listenerState{cfg: cfg, tls: tc})
	return l
}

func (l *listener) limits() *config.Limits { return &l.st.Load().cfg.Limits }

// listensOn reports whether addr names this listener's socket.
func (l *listener) listensOn(addr string) bool {
	return SameAddress(l.st.Load().cfg.Address, l.ln.Addr(), addr)
}

// SameAddress reports whether addr names a socket that was configured as
// configured and is bound to bound: the same text, or the bound address
// itself (a port 0 resolved by the kernel).
func SameAddress(configured string, bound net.Addr, addr string) bool {
	if addr == configured {
		return true
	}
	want, err := net.ResolveTCPAddr("tcp", addr)
	b, ok := bound.(*net.TCPAddr)
	return err == nil && ok && want.Port == b.Port && want.IP.Equal(b.IP)
}

// serve accepts connections until the listener is closed. Like net/http, it
// backs off on errors (running out of file descriptors) instead of spinning.
func (l *listener) serve() {
	defer l.srv.wg.Done()
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.srv.log.Warn("accept failed; retrying", "listener", l.name, "error", err, "delay", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-l.srv.done:
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		l.admit(nc)
	}
}

// admit starts serving nc unless that would exceed a connection limit.
func (l *listener) admit(nc net.Conn) {
	now := time.Now()
	st := l.st.Load()
	var ip netip.Addr
	if ta, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.AddrPort().Addr().Unmap()
	}

	l.mu.Lock()
	var refuse string
	switch {
	case l.closed:
		refuse = "listener closed"
	case st.cfg.Limits.MaxConnections > 0 && len(l.conns) >= st.cfg.Limits.MaxConnections:
		refuse = "max_connections reached"
	case st.cfg.Limits.MaxConnectionsPerIP > 0 && l.perIP[ip] >= st.cfg.Limits.MaxConnectionsPerIP:
		refuse = "max_connections_per_ip reached"
	}
	if refuse != "" {
		l.mu.Unlock()
		_ = nc.Close()
		l.srv.disconnects[ReasonLimit].Add(1)
		if l.srv.debugging() {
			l.srv.log.Debug("connection refused", "listener", l.name, "remote", nc.RemoteAddr().String(), "reason", ReasonLimit.String(), "detail", refuse)
		}
		return
	}
	c := &conn{
		srv:    l.srv,
		ln:     l,
		raw:    nc,
		nc:     nc,
		remote: nc.RemoteAddr(),
		ip:     ip,
		out:    &sendQueue{},
	}
	if st.tls != nil {
		c.nc = tls.Server(nc, st.tls)
		c.idFromCert = st.cfg.ClientIDFromCert
	}
	l.conns[c] = struct{}{}
	l.perIP[ip]++
	l.srv.wg.Add(1)
	l.mu.Unlock()
	go c.serve(now)
}

// remove forgets a closed connection, keeping its counts.
func (l *listener) remove(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	if l.perIP[c.ip]--; l.perIP[c.ip] <= 0 {
		delete(l.perIP, c.ip)
	}
	l.retired.addCounts(&c.counts)
	l.mu.Unlock()
}

// stop closes the socket and every connection, for reason.
func (l *listener) stop(reason Reason) {
	_ = l.ln.Close()
	l.mu.Lock()
	l.closed = true
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		c.close(reason, "")
	}
}

// frameStats adds the listener's frame counts, live and retired, to fs and
// returns its description.
func (l *listener) stats(fs *FrameStats) ListenerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs.add(&l.retired)
	for c := range l.conns {
		fs.addCounts(&c.counts)
	}
	return ListenerStats{
		Name:        l.name,
		Address:     l.ln.Addr().String(),
		Connections: len(l.conns),
		Logins:      l.logins.Load(),
	}
}

// drained reports whether a stopped listener has no connection left.
func (l *listener) drained() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed && len(l.conns) == 0
}
