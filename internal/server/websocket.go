package server

import (
	"net"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/wsconn"
)

// upgradeWebSocket turns a (the TCP or TLS connection of a websocket
// listener) into a WebSocket connection by deadline: the HTTP upgrade, then
// RELY frames one per binary message (internal/wsconn). The client's
// address becomes the one X-Forwarded-For gives behind a trusted proxy.
func (l *listener) upgradeWebSocket(a *Accepted, st *listenerState, deadline time.Time) error {
	_ = a.Conn.SetReadDeadline(deadline)
	opt := &wsconn.Options{
		Path:           st.cfg.WSPath,
		Origins:        st.cfg.WSOrigins,
		TrustedProxies: st.cfg.WSTrustedProxies,
		// Per message, so that a reloaded max_payload applies at once.
		MaxFrame: func() int { return int(l.limits().MaxPayload) + protocol.MaxTransferOverhead },
	}
	ws, remote, err := wsconn.Accept(a.Conn, a.Remote, opt)
	if err != nil {
		return err
	}
	a.Conn, a.Remote = ws, remote
	// A read deadline only interrupts a wsconn.Conn, and it holds no
	// buffer of its own between frames: it parks like TCP, on epoll when
	// plain and nothing is held back.
	a.Parks = true
	a.Pollable = nil
	if a.TLS == nil {
		if rc, err := a.Raw.(*net.TCPConn).SyscallConn(); err == nil {
			a.Pollable = func() (syscall.RawConn, bool) { return rc, ws.Buffered() == 0 }
		}
	}
	a.FD = nil // frames must go out through the adapter, one message each
	if a.TLS == nil {
		a.ReportBlocked = ws.OnBlocked // its writev sees the socket refuse bytes
	}
	a.Goodbye = func(r Reason) {
		if code := wsCloseCode(r); code != 0 {
			ws.SendClose(code)
		}
	}
	return nil
}

// wsCloseCode is the close code a WebSocket client is told when its
// connection ends for r; 0 for none (the client left, or its socket takes
// nothing any more).
func wsCloseCode(r Reason) uint16 {
	switch r {
	case ReasonKicked, ReasonIdleTimeout, ReasonLoginTimeout:
		return wsconn.CloseNormal
	case ReasonShutdown, ReasonDrain, ReasonListenerRemoved:
		return wsconn.CloseGoingAway
	case ReasonProtocolError:
		return wsconn.CloseProtocol
	case ReasonLimit:
		return wsconn.ClosePolicy
	}
	return 0
}
