package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
)

// proxyListener is a listener that requires the PROXY protocol.
func proxyListener(mod func(*config.Listener)) config.Listener {
	return listenerCfg("lb", func(l *config.Listener) {
		l.ProxyProtocol = true
		if mod != nil {
			mod(l)
		}
	})
}

// proxyHeader is a v1 or v2 header saying the client is src.
func proxyHeader(t *testing.T, version byte, src string) []byte {
	t.Helper()
	s, err := net.ResolveTCPAddr("tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	h := proxyproto.HeaderProxyFromAddrs(version, s, &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 33333})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Behind a load balancer, the PROXY header's source address is the
// client's: in /clients, and for max_connections_per_ip, which counts the
// header's addresses rather than the balancer's.
func TestProxyProtocolGivesTheClientAddress(t *testing.T) {
	s := startServer(t, configWith(proxyListener(func(l *config.Listener) { l.Limits.MaxConnectionsPerIP = 1 })))
	addr := s.Addrs()["lb"].String()
	for _, v := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			src := fmt.Sprintf("192.0.2.%d:4000%d", v, v)
			c := dialRaw(t, addr)
			mustWrite(t, c, append(proxyHeader(t, v, src), loginFrame(fmt.Sprintf("v%d", v))...))
			waitOnline(t, s, fmt.Sprintf("v%d", v))
			cl := s.Clients(fmt.Sprintf("v%d", v))
			if len(cl) != 1 || cl[0].Remote != src {
				t.Fatalf("clients = %+v, want remote %s", cl, src)
			}
			// A second connection from the same client address is over
			// max_connections_per_ip; one from another address is not,
			// although both come from the same balancer.
			before := disconnects(s, ReasonLimit)
			again := dialRaw(t, addr)
			mustWrite(t, again, append(proxyHeader(t, v, fmt.Sprintf("192.0.2.%d:50000", v)), loginFrame("again")...))
			waitClosed(t, again, 5*time.Second)
			eventually(t, "the refusal to be counted", func() bool { return disconnects(s, ReasonLimit) == before+1 })
			other := dialRaw(t, addr)
			mustWrite(t, other, append(proxyHeader(t, v, fmt.Sprintf("198.51.100.%d:50000", v)), loginFrame(fmt.Sprintf("other%d", v))...))
			waitOnline(t, s, fmt.Sprintf("other%d", v))
		})
	}
}

// Frames flow both ways behind a PROXY header, also when the login came in
// the same segment as the header.
func TestProxyProtocolForwards(t *testing.T) {
	s := startServer(t, configWith(proxyListener(nil)))
	addr := s.Addrs()["lb"].String()
	a := dialRaw(t, addr)
	frame := transferFrame("a", "b", []byte("through the balancer"))
	mustWrite(t, a, append(proxyHeader(t, 2, "192.0.2.7:1000"), loginFrame("a")...))
	b := dialRaw(t, addr)
	mustWrite(t, b, []byte("PROXY UNKNOWN\r\n")) // keeps the TCP peer's address
	mustWrite(t, b, loginFrame("b"))
	waitOnline(t, s, "a")
	waitOnline(t, s, "b")
	if cl := s.Clients("b"); len(cl) != 1 || cl[0].Remote != b.LocalAddr().String() {
		t.Fatalf("an UNKNOWN header gave %+v, want the TCP peer %s", cl, b.LocalAddr())
	}
	mustWrite(t, a, frame)
	readExactly(t, b, frame)
}

// A connection without a valid PROXY header is closed and counted as a
// protocol error; one that sends nothing is closed at login_timeout.
func TestProxyProtocolRefusesBadHeaders(t *testing.T) {
	s := startServer(t, configWith(proxyListener(func(l *config.Listener) {
		l.Limits.LoginTimeout = config.Duration(300 * time.Millisecond)
	})))
	addr := s.Addrs()["lb"].String()
	oversized := append([]byte(nil), proxyproto.SIGV2...)
	oversized = append(oversized, 0x21, 0x11, 0xff, 0xff) // PROXY, TCP over IPv4, 65535 bytes follow
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"no header", loginFrame("x")},
		{"garbage v1", []byte("PROXY TCP4 not an address\r\n")},
		{"bad v2 signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 12)},
		{"v2 bad command", append(append([]byte(nil), proxyproto.SIGV2...), 0x2f, 0x11, 0, 12)},
		{"v2 over the header limit", oversized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := disconnects(s, ReasonProtocolError)
			c := dialRaw(t, addr)
			mustWrite(t, c, tc.b)
			waitClosed(t, c, 5*time.Second)
			eventually(t, "a protocol error to be counted", func() bool { return disconnects(s, ReasonProtocolError) == before+1 })
		})
	}
	t.Run("silent", func(t *testing.T) {
		before := disconnects(s, ReasonLoginTimeout)
		c := dialRaw(t, addr)
		waitClosed(t, c, 5*time.Second)
		eventually(t, "a login timeout to be counted", func() bool { return disconnects(s, ReasonLoginTimeout) == before+1 })
	})
}

// logins_per_ip: new connections per second per client address, counted
// by the address the PROXY header gives; refused ones take no token.
func TestLoginsPerIP(t *testing.T) {
	s := startServer(t, configWith(proxyListener(func(l *config.Listener) { l.Limits.LoginsPerIP = 3 })))
	addr := s.Addrs()["lb"].String()
	connect := func(src, id string) net.Conn {
		c := dialRaw(t, addr)
		mustWrite(t, c, append(proxyHeader(t, 2, src), loginFrame(id)...))
		return c
	}
	before := disconnects(s, ReasonLimit)
	for i := range 3 {
		connect("192.0.2.1:1000", fmt.Sprintf("ok%d", i))
		waitOnline(t, s, fmt.Sprintf("ok%d", i))
	}
	over := connect("192.0.2.1:1000", "over")
	waitClosed(t, over, 5*time.Second)
	eventually(t, "the refusal to be counted", func() bool { return disconnects(s, ReasonLimit) == before+1 })
	// Another address has its own bucket.
	connect("192.0.2.2:1000", "elsewhere")
	waitOnline(t, s, "elsewhere")
	// The bucket refills: one more a little later.
	time.Sleep(400 * time.Millisecond) // a third of a second's worth of tokens: the rate under test
	connect("192.0.2.1:1000", "later")
	waitOnline(t, s, "later")
}

// rate_limit paces a sender by reading more slowly: 6 MiB at 1 MiB/s takes
// about 5 s after a 1 MiB burst, arrives whole, and nothing is dropped or
// disconnected although idle_timeout is shorter than the transfer.
func TestRateLimitPacesTheSender(t *testing.T) {
	const size = 64 << 10
	s, addr := startDefault(t, func(l *config.Limits) {
		l.MaxPayload = size
		l.RateLimit = 1 << 20
		l.RateBurst = 1 << 20
		l.IdleTimeout = config.Duration(2 * time.Second)
	})
	snd := dialClient(t, s, addr, "snd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rcv, err := client.Dial(ctx, addr, "rcv", &client.Options{Heartbeat: 500 * time.Millisecond}) // the receiver must not idle out
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	waitOnline(t, s, "rcv")
	const frames = 96 // 6 MiB
	done := make(chan error, 1)
	go func() { done <- receiveAll(rcv, frames, time.Minute) }()
	start := time.Now()
	if err := openLoop(snd, "rcv", frames, size); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if el < 4500*time.Millisecond || el > 7*time.Second {
		t.Fatalf("6 MiB at 1 MiB/s with a 1 MiB burst took %v, want about 5 s", el)
	}
	if st := s.Stats(); totalDropped(st) != 0 || disconnects(s, ReasonIdleTimeout) != 0 {
		t.Fatalf("dropped %v, idle timeouts %d", st.Frames.Dropped, disconnects(s, ReasonIdleTimeout))
	}
	t.Logf("6 MiB in %v", el)
}

// readerConn is a connection whose client sent b and nothing more.
type readerConn struct {
	net.Conn
	r *bytes.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Any bytes a client opens with give a client address or an error, never a
// panic, and whatever followed a valid header reaches the read loop intact.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 10.0.0.1 4000 33333\r\nRELY"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("PROXY TCP6 ::1 ::1 1 2\r\n"))
	v2, _ := proxyproto.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1}, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 2}).Format()
	f.Add(append(v2, "RELY"...))
	f.Add(append(append([]byte(nil), proxyproto.SIGV2...), 0x20, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		a := &Accepted{Conn: readerConn{r: bytes.NewReader(b)}}
		if err := readProxyHeader(a); err != nil {
			return
		}
		rest := make([]byte, len(b)+1)
		n, _ := io.ReadFull(a.Conn, rest)
		if !bytes.HasSuffix(b, rest[:n]) {
			t.Fatalf("after the header the read loop got %q, not a suffix of %q", rest[:n], b)
		}
	})
}
