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

// listener is one bound [[listener]]: its accept loop, the transport that
// turns an accepted socket into an Accepted, and its connections.
type listener struct {
	// Static after construction.
	srv *Server
	ln  net.Listener

	// Swapped whole by a reload; read once per frame or write.
	st atomic.Pointer[listenerState]

	logins atomic.Uint64 // successful logins

	mu      sync.Mutex
	conns   map[*conn]struct{} // guarded by mu; open connections
	perIP   map[netip.Addr]int // guarded by mu; open connections per client IP
	rates   ipRates            // guarded by mu; logins_per_ip buckets
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
		ln:    ln,
		conns: make(map[*conn]struct{}),
		perIP: make(map[netip.Addr]int),
	}
	l.st.Store(&listenerState{cfg: cfg, tls: tc})
	return l
}

func (l *listener) limits() *config.Limits { return &l.st.Load().cfg.Limits }

// name is the listener's name; a reload may rename a listener in place.
func (l *listener) name() string { return l.st.Load().cfg.Name }

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
			l.srv.log.Warn("accept failed; retrying", "listener", l.name(), "error", err, "delay", delay)
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

// admit starts serving nc unless the listener is full. Limits by client
// address are checked once the transport has said who the client is.
func (l *listener) admit(nc net.Conn) {
	now := time.Now()
	st := l.st.Load()
	l.mu.Lock()
	var refuse string
	switch {
	case l.closed:
		refuse = "listener closed"
	case st.cfg.Limits.MaxConnections > 0 && len(l.conns) >= st.cfg.Limits.MaxConnections:
		refuse = "max_connections reached"
	}
	if refuse != "" {
		l.mu.Unlock()
		_ = nc.Close()
		l.refused(addrPort(nc.RemoteAddr()), refuse)
		return
	}
	c := newConn(l, nc)
	l.conns[c] = struct{}{}
	l.srv.wg.Add(1)
	l.mu.Unlock()
	go c.serve(now)
}

// refusedCount counts and logs a connection refused over a limit after
// its transport said who the client is (the disconnect is counted by the
// connection's teardown).
func (l *listener) refusedCount(remote netip.AddrPort, why string) {
	if l.srv.debugging() {
		l.srv.log.Debug("connection refused", "listener", l.name(), "remote", remote.String(), "reason", ReasonLimit.String(), "detail", why)
	}
}

func (l *listener) refused(remote netip.AddrPort, why string) {
	l.srv.disconnects[ReasonLimit].Add(1)
	if l.srv.debugging() {
		l.srv.log.Debug("connection refused", "listener", l.name(), "remote", remote.String(), "reason", ReasonLimit.String(), "detail", why)
	}
}

// accept runs on the connection's goroutine: the transport turns the
// socket into an Accepted by deadline, and the connection's address is
// checked against the per-address limits.
func (l *listener) accept(c *conn, deadline time.Time, a *Accepted) error {
	st := l.st.Load()
	tc, ok := c.raw.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	*a = acceptTCP(tc, int64(st.cfg.Limits.SendQueue))
	if st.cfg.ProxyProtocol {
		if err := readProxyHeader(a); err != nil {
			return err
		}
	}
	if st.cfg.WebSocket() {
		// wss: TLS first, then the upgrade, which may say (behind a
		// trusted proxy) that the client is another address: count that one.
		if st.tls != nil {
			if err := handshakeTLS(a, st.tls, deadline); err != nil {
				return err
			}
		}
		if err := l.upgradeWebSocket(a, st, deadline); err != nil {
			return err
		}
		c.remote = a.Remote
		if why := l.countIP(c, a.Remote.Addr(), st); why != "" {
			a.Goodbye(ReasonLimit)
			return &refusal{why}
		}
		return nil
	}
	c.remote = a.Remote // for the refusal's log line
	if why := l.countIP(c, a.Remote.Addr(), st); why != "" {
		return &refusal{why}
	}
	if st.tls != nil {
		if err := handshakeTLS(a, st.tls, deadline); err != nil {
			return err
		}
	}
	return nil
}

// refusal ends a connection over a per-address limit (reason limit).
type refusal struct{ why string }

func (r *refusal) Error() string { return "refused: " + r.why }

// countIP counts c under ip unless that exceeds max_connections_per_ip or
// logins_per_ip; it returns why it refused, or "".
func (l *listener) countIP(c *conn, ip netip.Addr, st *listenerState) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if m := st.cfg.Limits.MaxConnectionsPerIP; m > 0 && l.perIP[ip] >= m {
		return "max_connections_per_ip reached"
	}
	if n := st.cfg.Limits.LoginsPerIP; n > 0 && !l.rates.allow(ip, n, time.Now()) {
		return "logins_per_ip reached"
	}
	l.perIP[ip]++
	c.counted = true
	return ""
}

// remove forgets a closed connection, keeping its counts.
func (l *listener) remove(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	if c.counted {
		ip := c.remote.Addr()
		if l.perIP[ip]--; l.perIP[ip] <= 0 {
			delete(l.perIP, ip)
		}
	}
	l.retired.addCounts(&c.counts)
	l.mu.Unlock()
}

// connections returns the open connections.
func (l *listener) connections() []*conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	return conns
}

// stopAccepting closes the socket; no connection is admitted after.
func (l *listener) stopAccepting() {
	_ = l.ln.Close()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
}

// stop closes the socket and every connection, for reason.
func (l *listener) stop(reason Reason) {
	l.stopAccepting()
	for _, c := range l.connections() {
		c.close(reason, "")
	}
}

// stats adds the listener's frame counts, live and retired, to fs and
// returns its description.
func (l *listener) stats(fs *FrameStats) ListenerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs.add(&l.retired)
	for c := range l.conns {
		fs.addCounts(&c.counts)
	}
	return ListenerStats{
		Name:        l.name(),
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
