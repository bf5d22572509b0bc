package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/wsconn"
)

// startWS runs a server with a plain TCP listener and a websocket
// listener; it returns the TCP address and the ws:// URL.
func startWS(t *testing.T, mod func(*config.Listener)) (*Server, string, string) {
	t.Helper()
	cfg := testConfig(nil)
	web := cfg.Listeners[0]
	web.Name, web.Transport, web.WSPath = "web", config.TransportWebSocket, config.DefaultWSPath
	if mod != nil {
		mod(&web)
	}
	cfg.Listeners = append(cfg.Listeners, web)
	s := startServer(t, cfg)
	return s, s.Addrs()["plain"].String(), "ws://" + s.Addrs()["web"].String() + web.WSPath
}

// dialWS opens a WebSocket with gobwas/ws, an implementation independent
// of relayd's own.
func dialWS(t *testing.T, url string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", url, err)
	}
	if br != nil {
		t.Fatal("server sent data before the client's first message")
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func loginWS(t *testing.T, s *Server, url, id string) net.Conn {
	t.Helper()
	c := dialWS(t, url)
	sendWS(t, c, loginFrame(id))
	waitOnline(t, s, id)
	return c
}

func sendWS(t *testing.T, c net.Conn, msg []byte) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if err := wsutil.WriteClientBinary(c, msg); err != nil {
		t.Fatalf("websocket write: %v", err)
	}
}

// readWS reads the next data message: it must be binary.
func readWS(t *testing.T, c net.Conn) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	msg, op, err := wsutil.ReadServerData(c)
	if err != nil {
		t.Fatalf("websocket read: %v", err)
	}
	if op != ws.OpBinary {
		t.Fatalf("server sent a message with opcode %v, want binary", op)
	}
	return msg
}

// expectWSClose reads until the server's close frame and checks its code.
// It reads frames itself: wsutil would answer the close on a socket the
// server may have closed already.
func expectWSClose(t *testing.T, c net.Conn, code ws.StatusCode) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		h, err := ws.ReadHeader(c)
		if err != nil {
			t.Fatalf("waiting for close %d: %v", code, err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c, p); err != nil {
			t.Fatalf("waiting for close %d: %v", code, err)
		}
		if h.OpCode != ws.OpClose {
			continue
		}
		if got, _ := ws.ParseCloseFrameData(p); got != code {
			t.Fatalf("close code %d, want %d", got, code)
		}
		return
	}
}

// Frames go both ways between a WebSocket and a TCP client byte for byte,
// one message per frame, also when the TCP side sends many in one write.
func TestWebSocketRelaysToTCP(t *testing.T) {
	s, tcpAddr, url := startWS(t, nil)
	alice := loginWS(t, s, url, "alice")
	bob := loginRaw(t, s, tcpAddr, "bob")

	f := transferFrame("alice", "bob", []byte("hello from the browser"))
	sendWS(t, alice, f)
	readExactly(t, bob, f)
	big := transferFrame("alice", "bob", bytes.Repeat([]byte("b"), 200<<10))
	sendWS(t, alice, big)
	readExactly(t, bob, big)
	sendWS(t, alice, transferFrame("alice", "", nil)) // a heartbeat, never forwarded

	var batch [][]byte
	for i := range 100 {
		batch = append(batch, transferFrame("bob", "alice", seqPayload(uint64(i), i*37)))
	}
	batch = append(batch, transferFrame("bob", "alice", bytes.Repeat([]byte("c"), 300<<10)))
	mustWrite(t, bob, bytes.Join(batch, nil))
	for i, want := range batch {
		if got := readWS(t, alice); !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes, want the frame of %d bytes", i, len(got), len(want))
		}
	}
	// Between two WebSocket clients too, and to oneself.
	carol := loginWS(t, s, url, "carol")
	g := transferFrame("carol", "alice", []byte("hi alice"))
	sendWS(t, carol, g)
	if got := readWS(t, alice); !bytes.Equal(got, g) {
		t.Fatalf("got %q, want %q", got, g)
	}
	self := transferFrame("carol", "carol", []byte("me"))
	sendWS(t, carol, self)
	if got := readWS(t, carol); !bytes.Equal(got, self) {
		t.Fatalf("got %q, want %q", got, self)
	}
}

// A login on one transport kicks the same ID on the other.
func TestWebSocketKickAcrossTransports(t *testing.T) {
	s, tcpAddr, url := startWS(t, nil)
	ws1 := loginWS(t, s, url, "alice")
	old, _ := s.reg.Lookup([]byte("alice"))
	tcp := dialRaw(t, tcpAddr)
	mustWrite(t, tcp, loginFrame("alice"))
	waitPeer(t, s, "alice", old)
	expectWSClose(t, ws1, ws.StatusNormalClosure)

	old, _ = s.reg.Lookup([]byte("alice"))
	ws2 := dialWS(t, url)
	sendWS(t, ws2, loginFrame("alice"))
	waitPeer(t, s, "alice", old)
	waitClosed(t, tcp, 5*time.Second)
	eventually(t, "two kicks counted", func() bool { return disconnects(s, ReasonKicked) == 2 })
}

func TestWebSocketViolations(t *testing.T) {
	tests := []struct {
		name string
		send func(net.Conn) error
		code ws.StatusCode
	}{
		{"text message", func(c net.Conn) error { return wsutil.WriteClientText(c, []byte("hello")) }, ws.StatusUnsupportedData},
		{"oversized", func(c net.Conn) error {
			return wsutil.WriteClientBinary(c, transferFrame("alice", "bob", make([]byte, 2000)))
		}, ws.StatusMessageTooBig},
		{"two frames in a message", func(c net.Conn) error {
			return wsutil.WriteClientBinary(c, append(transferFrame("alice", "bob", nil), transferFrame("alice", "bob", nil)...))
		}, ws.StatusProtocolError},
		{"RELY violation", func(c net.Conn) error { // a second login
			return wsutil.WriteClientBinary(c, loginFrame("alice"))
		}, ws.StatusProtocolError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, url := startWS(t, func(l *config.Listener) { l.Limits.MaxPayload = 1024 })
			c := loginWS(t, s, url, "alice")
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			expectWSClose(t, c, tt.code)
			eventually(t, "protocol_error counted", func() bool { return disconnects(s, ReasonProtocolError) == 1 })
		})
	}
}

// A refused upgrade gets its HTTP status; counted as a protocol error.
func TestWebSocketRefusedUpgrade(t *testing.T) {
	s, _, url := startWS(t, func(l *config.Listener) { l.WSOrigins = []string{"app.example.com"} })
	httpURL := "http" + url[len("ws"):]
	for _, tt := range []struct {
		path   string
		origin string
		status int
	}{
		{"/elsewhere", "", http.StatusNotFound},
		{"/relay", "", http.StatusUpgradeRequired}, // a plain GET
		{"/relay", "https://evil.example", http.StatusForbidden},
	} {
		req, _ := http.NewRequest("GET", httpURL[:len(httpURL)-len("/relay")]+tt.path, nil)
		if tt.origin != "" {
			req.Header.Set("Origin", tt.origin)
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s with Origin %q: status %d, want %d", tt.path, tt.origin, resp.StatusCode, tt.status)
		}
	}
	http.DefaultClient.CloseIdleConnections()
	eventually(t, "refusals counted", func() bool { return disconnects(s, ReasonProtocolError) == 3 })
	// An allowed origin is accepted.
	d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {"https://app.example.com"}})}
	c, _, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	c.Close()
}

// An idle WebSocket connection parks on epoll like TCP, holding no read
// buffer nor goroutine, and wakes for the next frame.
func TestWebSocketIdleParksOnEpoll(t *testing.T) {
	s, tcpAddr, url := startWS(t, nil)
	alice := loginWS(t, s, url, "alice")
	bob := loginRaw(t, s, tcpAddr, "bob")
	eventually(t, "alice parked on epoll", func() bool { return parkedOnEpoll(s, "alice") })
	f := transferFrame("alice", "bob", []byte("after parking"))
	sendWS(t, alice, f)
	readExactly(t, bob, f)
	// A ping while parked is answered, and the connection parks again.
	eventually(t, "alice parked again", func() bool { return parkedOnEpoll(s, "alice") })
	_ = alice.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wsutil.WriteClientMessage(alice, ws.OpPing, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	h, err := ws.ReadHeader(alice)
	if err != nil || h.OpCode != ws.OpPong {
		t.Fatalf("got %v, %v; want a pong", h, err)
	}
	if _, err := io.CopyN(io.Discard, alice, h.Length); err != nil {
		t.Fatal(err)
	}
	eventually(t, "alice parked after the ping", func() bool { return parkedOnEpoll(s, "alice") })
	g := transferFrame("bob", "alice", []byte("to a parked browser"))
	mustWrite(t, bob, g)
	if got := readWS(t, alice); !bytes.Equal(got, g) {
		t.Fatalf("got %q, want %q", got, g)
	}
}

// bufferedConn reads what the dialer buffered first.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func parkedOnEpoll(s *Server, id string) bool {
	s.park.mu.Lock()
	defer s.park.mu.Unlock()
	for _, c := range s.park.conns {
		if c.loginID() == id {
			return true
		}
	}
	return false
}

// Behind a trusted proxy the client's address is X-Forwarded-For's, and
// per-IP limits apply to it.
func TestWebSocketForwardedFor(t *testing.T) {
	s, _, url := startWS(t, func(l *config.Listener) {
		l.WSTrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		l.Limits.MaxConnectionsPerIP = 1
	})
	dial := func(xff string) (net.Conn, error) {
		d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(http.Header{"X-Forwarded-For": {xff}})}
		c, br, _, err := d.Dial(context.Background(), url)
		if br != nil { // what came with the 101 (a close frame)
			c = &bufferedConn{c, br}
		}
		return c, err
	}
	a, err := dial("198.51.100.7")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	sendWS(t, a, loginFrame("alice"))
	waitOnline(t, s, "alice")
	if cs := s.Clients(""); len(cs) != 1 || cs[0].Remote != "198.51.100.7:0" {
		t.Fatalf("clients %+v, want alice from 198.51.100.7", cs)
	}
	b, err := dial("198.51.100.8") // another client behind the same proxy
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := dial("198.51.100.7") // the same client again: over max_connections_per_ip
	if err == nil {
		expectWSClose(t, c, ws.StatusPolicyViolation)
		c.Close()
	}
	eventually(t, "limit counted", func() bool { return disconnects(s, ReasonLimit) == 1 })
}

// Shutting down tells WebSocket clients the server is going away.
func TestWebSocketShutdownGoingAway(t *testing.T) {
	cfg := testConfig(nil)
	cfg.Listeners[0].Transport, cfg.Listeners[0].WSPath = config.TransportWebSocket, "/relay"
	s := New(testLogger(), nil)
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	c := loginWS(t, s, "ws://"+s.Addrs()["plain"].String()+"/relay", "alice")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	expectWSClose(t, c, ws.StatusGoingAway)
	_ = wsconn.CloseGoingAway
}
