package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pires/go-proxyproto"
)

// Accepted is a client connection as a transport hands it to the server:
// how frames reach it and what the transport learned about the client. The
// server serves every Accepted the same way, so plain TCP, TLS, the PROXY
// protocol and WebSocket differ only in the code that produces one.
type Accepted struct {
	// Conn is what frames are read from and written to.
	Conn net.Conn
	// Raw is the socket under Conn. Closing it must stop reads and writes
	// on Conn at once, without blocking (a TLS close_notify could).
	Raw net.Conn
	// Remote is the client's address: the TCP peer's, or the one a proxy
	// in front of relayd vouched for.
	Remote netip.AddrPort
	// TLS is the completed handshake's state; nil without TLS.
	TLS *tls.ConnectionState
	// Parks says that a read may time out without harm to the connection:
	// the read loop then probes for idleness with a short read deadline and
	// parks an idle connection (see Pollable), giving its read buffer back.
	// An adapter that breaks when a deadline fires (coder/websocket's
	// NetConn does) leaves it false and is never parked.
	Parks bool
	// Pollable, when set, says whether the read loop may park the
	// connection on the epoll parker now: it returns the socket and
	// whether Conn holds no buffered bytes that readability of the socket
	// would not announce. Nil: never park on epoll.
	Pollable func() (syscall.RawConn, bool)
	// Socket is the TCP socket under Conn, whatever transport is on top:
	// the writer asks it how much the kernel has yet to send, to tell a
	// stalled receiver from its own backlog.
	Socket syscall.RawConn
	// FD, when set, is the socket Conn writes to unchanged: the writer
	// then writes batches with writev on it directly, seeing each
	// syscall's progress.
	FD syscall.RawConn
	// ReportBlocked, when set, is handed a function that Conn's writes
	// call when they find the socket full (true) and when it takes bytes
	// again (false). The writer then leaves stall detection to it instead
	// of counting every write call as blocked while it lasts, which would
	// take a write that only waits for a CPU for a stalled receiver.
	ReportBlocked func(func(blocked bool))
	// Goodbye, when set, tells the client why its connection ends (a
	// WebSocket close frame) just before Raw is closed. Best-effort and
	// brief: it must not block on a socket that takes nothing.
	Goodbye func(Reason)
}

// sockbufFor is the kernel buffer relayd asks for in each direction of a
// client socket. Left to autotuning, a socket whose client stops reading
// grows to several MiB of kernel memory (and keeps it in FIN-WAIT-1 after
// it is closed: 500 such receivers held 1.4 GiB), and so does the receive
// side of a sender relayd stops reading from (rule 9, rate_limit): 21 MiB
// for one paced sender. A fixed buffer of a quarter of the send queue,
// between 32 KiB and 256 KiB, keeps what the kernel holds within the
// configuration; it still gives full speed on loopback and LANs, and bounds
// one connection to about 256 KiB / RTT on long fat links.
func sockbufFor(sendQueue int64) int {
	return int(min(max(sendQueue/4, 32<<10), 256<<10))
}

// acceptTCP produces the Accepted for a plain TCP connection.
func acceptTCP(tc *net.TCPConn, sendQueue int64) Accepted {
	_ = tc.SetWriteBuffer(sockbufFor(sendQueue))
	_ = tc.SetReadBuffer(sockbufFor(sendQueue))
	a := Accepted{Conn: tc, Raw: tc, Remote: addrPort(tc.RemoteAddr()), Parks: true}
	if rc, err := tc.SyscallConn(); err == nil {
		a.FD, a.Socket = rc, rc
		a.Pollable = func() (syscall.RawConn, bool) { return rc, true }
	}
	return a
}

// handshakeTLS wraps a in TLS and completes the handshake by deadline.
// TLS connections park on a goroutine: the TLS layer may hold decrypted
// bytes that no epoll event would announce.
func handshakeTLS(a *Accepted, tc *tls.Config, deadline time.Time) error {
	conn := tls.Server(a.Conn, tc)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return os.ErrDeadlineExceeded
		}
		return err
	}
	st := conn.ConnectionState()
	a.Conn, a.TLS, a.Pollable, a.FD = conn, &st, nil, nil
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// maxProxyHeader bounds a PROXY protocol v2 header (16 bytes and the
// addresses and TLVs it announces). Load balancers send a few hundred bytes
// at most; a client must not make relayd buffer 64 KiB before its login.
const maxProxyHeader = 2048

var proxyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 512) }}

// readProxyHeader reads the PROXY protocol v1 or v2 header that must open
// a (by the login deadline already set on the socket). The header's source
// address becomes the client's; LOCAL (v2) and UNKNOWN (v1) headers keep the
// TCP peer's. Bytes read past the header are fed to the read loop first.
func readProxyHeader(a *Accepted) error {
	br := proxyReaders.Get().(*bufio.Reader)
	br.Reset(a.Conn)
	defer func() {
		br.Reset(nil)
		proxyReaders.Put(br)
	}()
	if b, err := br.Peek(1); err == nil && b[0] == proxyproto.SIGV2[0] {
		if b, err := br.Peek(16); err == nil && bytes.Equal(b[:12], proxyproto.SIGV2) {
			if n := int(binary.BigEndian.Uint16(b[14:])); 16+n > maxProxyHeader {
				return &proxyError{fmt.Errorf("v2 header of %d bytes, over %d", 16+n, maxProxyHeader)}
			}
		}
	}
	h, err := proxyproto.Read(br)
	if err != nil {
		if isTimeout(err) {
			return err
		}
		return &proxyError{err}
	}
	if h.Command.IsProxy() {
		if src, _, ok := h.TCPAddrs(); ok {
			ap := src.AddrPort()
			a.Remote = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	if n := br.Buffered(); n > 0 {
		rest, _ := br.Peek(n)
		p := &prefixConn{Conn: a.Conn, rest: bytes.Clone(rest)}
		a.Conn = p
		if poll := a.Pollable; poll != nil {
			a.Pollable = func() (syscall.RawConn, bool) {
				rc, ok := poll()
				return rc, ok && len(p.rest) == 0
			}
		}
	}
	return nil
}

// proxyError is a connection that did not open with a valid PROXY header.
type proxyError struct{ err error }

func (e *proxyError) Error() string { return "PROXY protocol header: " + e.err.Error() }
func (e *proxyError) Unwrap() error { return e.err }

// prefixConn is a connection with bytes already read from it in front.
// Only the read loop reads it, so rest needs no lock.
type prefixConn struct {
	net.Conn
	rest []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.rest) > 0 {
		n := copy(b, p.rest)
		p.rest = p.rest[n:]
		if len(p.rest) == 0 {
			p.rest = nil
		}
		return n, nil
	}
	return p.Conn.Read(b)
}
