package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/protocol"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's sample nonce

// upgradeRequest is a valid upgrade request for path, with extra header lines.
func upgradeRequest(path string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path)
	fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", testKey)
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// pair is one upgraded connection over real loopback sockets: the server's
// *Conn and the raw client socket.
type pair struct {
	srv    *Conn
	addr   netip.AddrPort // what Accept returned as the client's address
	client net.Conn
	cr     *bufio.Reader // reads the client's side, after the 101
}

// newPair upgrades a connection with opt (Path "/relay" and a 1 MiB
// MaxFrame by default); the client sends request and whatever follows it
// in the same write.
func newPair(t *testing.T, opt *Options, request string) (*pair, error) {
	t.Helper()
	if opt == nil {
		opt = &Options{}
	}
	if opt.Path == "" {
		opt.Path = "/relay"
	}
	if opt.MaxFrame == nil {
		opt.MaxFrame = protocol.Fixed(1 << 20)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if _, err := client.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	srv, addr, err := Accept(raw, raw.RemoteAddr().(*net.TCPAddr).AddrPort(), opt)
	_ = raw.SetReadDeadline(time.Time{})
	p := &pair{srv: srv, addr: addr, client: client, cr: bufio.NewReader(client)}
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	status, rerr := p.cr.ReadString('\n')
	if rerr != nil {
		t.Fatalf("client: read status line: %v", rerr)
	}
	for { // the rest of the response header
		l, err := p.cr.ReadString('\n')
		if err != nil {
			t.Fatalf("client: read response: %v", err)
		}
		if l == "\r\n" {
			break
		}
	}
	if err != nil {
		return &pair{client: client, cr: p.cr}, &statusError{status, err}
	}
	if !strings.HasPrefix(status, "HTTP/1.1 101 ") {
		t.Fatalf("handshake accepted but the client got %q", status)
	}
	return p, nil
}

type statusError struct {
	line string
	err  error
}

func (e *statusError) Error() string { return strings.TrimSpace(e.line) + ": " + e.err.Error() }

// clientFrame encodes a masked client frame.
func clientFrame(b0 byte, payload []byte) []byte {
	key := [4]byte{0xA1, 0xB2, 0xC3, 0xD4}
	var f []byte
	switch n := len(payload); {
	case n <= 125:
		f = append(f, b0, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		f = binary.BigEndian.AppendUint64(append(f, b0, 0x80|127), uint64(n))
	}
	f = append(f, key[:]...)
	start := len(f)
	f = append(f, payload...)
	unmask(f[start:], key, 0)
	return f
}

// binaryMsg is one unfragmented binary message.
func binaryMsg(payload []byte) []byte { return clientFrame(0x80|opBinary, payload) }

// readServerFrame reads one frame the server sent: opcode, FIN and payload.
func readServerFrame(r io.Reader) (op byte, fin bool, payload []byte, err error) {
	var h [2]byte
	if _, err = io.ReadFull(r, h[:]); err != nil {
		return
	}
	if h[1]&0x80 != 0 {
		return 0, false, nil, fmt.Errorf("server frame is masked")
	}
	if h[0]&0x70 != 0 {
		return 0, false, nil, fmt.Errorf("server frame has reserved bits set")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var e [2]byte
		if _, err = io.ReadFull(r, e[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(e[:]))
		if n < 126 {
			return 0, false, nil, fmt.Errorf("length %d not in its shortest form", n)
		}
	case 127:
		var e [8]byte
		if _, err = io.ReadFull(r, e[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(e[:])
		if n <= 0xFFFF {
			return 0, false, nil, fmt.Errorf("length %d not in its shortest form", n)
		}
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return h[0] & 0x0F, h[0]&0x80 != 0, payload, err
}

// expectClose reads server frames until a close frame and checks its code.
func expectClose(t *testing.T, r io.Reader, code uint16) {
	t.Helper()
	for {
		op, _, p, err := readServerFrame(r)
		if err != nil {
			t.Fatalf("waiting for close %d: %v", code, err)
		}
		if op != opClose {
			continue
		}
		got := uint16(0)
		if len(p) >= 2 {
			got = binary.BigEndian.Uint16(p)
		}
		if got != code {
			t.Fatalf("close code %d, want %d", got, code)
		}
		return
	}
}

// readAll reads from the server side until n bytes arrived or an error.
func readN(c *Conn, n int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 1024)
	for len(out) < n {
		m, err := c.Read(buf[:min(len(buf), n-len(out))])
		out = append(out, buf[:m]...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// readAll reads from the server side with a large buffer until an error.
func readAll(c *Conn) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		m, err := c.Read(buf)
		out = append(out, buf[:m]...)
		if err != nil {
			return out, err
		}
	}
}

func login(id string) []byte {
	f, _ := protocol.AppendLogin(nil, id)
	return f
}

func transfer(from, to string, payload []byte) []byte {
	f, _ := protocol.AppendTransfer(nil, from, to, payload)
	return f
}

func concat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
