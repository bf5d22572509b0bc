package wsconn

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestAccept(t *testing.T) {
	p, err := newPair(t, nil, upgradeRequest("/relay?v=1", "Origin: http://127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.addr.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("client address %v", p.addr)
	}
	if p.srv.Buffered() != 0 {
		t.Fatalf("Buffered() = %d after the handshake", p.srv.Buffered())
	}
}

func TestAcceptKey(t *testing.T) {
	// RFC 6455 §1.3's example.
	if got := acceptKey(testKey); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %q", got)
	}
}

func TestAcceptRefusals(t *testing.T) {
	valid := upgradeRequest("/relay")
	tests := []struct {
		name    string
		opt     *Options
		request string
		status  string
	}{
		{"wrong path", nil, upgradeRequest("/other"), "404"},
		{"plain GET", nil, "GET /relay HTTP/1.1\r\nHost: x\r\n\r\n", "426"},
		{"POST", nil, strings.Replace(valid, "GET", "POST", 1), "405"},
		{"HTTP/1.0", nil, strings.Replace(valid, "HTTP/1.1", "HTTP/1.0", 1), "505"},
		{"garbage", nil, "hello\r\n\r\n", "400"},
		{"version 8", nil, strings.Replace(valid, "Version: 13", "Version: 8", 1), "426"},
		{"bad key", nil, strings.Replace(valid, testKey, "c2hvcnQ=", 1), "400"},
		{"no host", nil, strings.Replace(valid, "Host: 127.0.0.1\r\n", "", 1), "400"},
		{"folded header", nil, strings.Replace(valid, "Host: 127.0.0.1\r\n", "Host: 127.0.0.1\r\n continued\r\n", 1), "400"},
		{"cross origin", nil, upgradeRequest("/relay", "Origin: http://evil.example"), "403"},
		{"origin not listed", &Options{Origins: []string{"app.example.com"}}, upgradeRequest("/relay", "Origin: https://evil.example"), "403"},
		{"headers too large", nil, upgradeRequest("/relay", "X-Big: "+strings.Repeat("a", MaxHandshake)), "431"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newPair(t, tt.opt, tt.request)
			var se *statusError
			if !errors.As(err, &se) {
				t.Fatalf("upgrade accepted (err %v)", err)
			}
			if !strings.HasPrefix(se.line, "HTTP/1.1 "+tt.status+" ") {
				t.Fatalf("status line %q, want %s", se.line, tt.status)
			}
			if !IsHandshake(se.err) {
				t.Fatalf("Accept error %v is not a HandshakeError", se.err)
			}
			_ = p
		})
	}
}

func TestAcceptKeepsPipelinedFrames(t *testing.T) {
	f := login("alice")
	p, err := newPair(t, nil, upgradeRequest("/relay")+string(binaryMsg(f)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := readN(p.srv, len(f))
	if err != nil || string(got) != string(f) {
		t.Fatalf("read %q, %v; want %q", got, err, f)
	}
}

func TestOriginAllowed(t *testing.T) {
	tests := []struct {
		origin, host string
		patterns     []string
		want         bool
	}{
		{"http://127.0.0.1:8080", "127.0.0.1:8080", nil, true},
		{"http://127.0.0.1:8081", "127.0.0.1:8080", nil, false},
		{"https://example.com", "example.com", nil, true},
		{"https://example.com", "example.com:443", nil, true},
		{"http://Example.COM", "example.com", nil, true},
		{"http://[::1]:8080", "[::1]:8080", nil, true},
		{"null", "example.com", nil, false},
		{"null", "example.com", []string{"*"}, true},
		{"https://evil.example", "example.com", []string{"*"}, true},
		{"https://app.example.com", "relay.example.com", []string{"app.example.com"}, true},
		{"https://app.example.com:8443", "relay.example.com", []string{"app.example.com"}, true},
		{"https://app.example.com:8443", "relay.example.com", []string{"app.example.com:443"}, false},
		{"https://app.example.com", "relay.example.com", []string{"app.example.com:443"}, true},
		{"http://127.0.0.1:8081", "127.0.0.1:8080", []string{"127.0.0.1:8081"}, true},
		{"https://a.b.example.com", "x", []string{"*.example.com"}, true},
		{"https://example.com", "x", []string{"*.example.com"}, false},
		{"https://badexample.com", "x", []string{"*.example.com"}, false},
		{"https://other.org", "x", []string{"*.example.com", "other.org"}, true},
	}
	for _, tt := range tests {
		if got := originAllowed(tt.origin, tt.host, tt.patterns); got != tt.want {
			t.Errorf("originAllowed(%q, host %q, %q) = %v, want %v", tt.origin, tt.host, tt.patterns, got, tt.want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	peer := netip.MustParseAddrPort("10.0.0.2:5555")
	tests := []struct {
		name string
		peer netip.AddrPort
		xff  []string
		want string
	}{
		{"no header", peer, nil, "10.0.0.2:5555"},
		{"untrusted peer", netip.MustParseAddrPort("192.0.2.1:1234"), []string{"203.0.113.9"}, "192.0.2.1:1234"},
		{"one hop", peer, []string{"203.0.113.9"}, "203.0.113.9:0"},
		{"forged first entry", peer, []string{"1.2.3.4, 203.0.113.9"}, "203.0.113.9:0"},
		{"chain of proxies", peer, []string{"203.0.113.9, 10.1.1.1", "10.2.2.2"}, "203.0.113.9:0"},
		{"all trusted", peer, []string{"10.1.1.1"}, "10.1.1.1:0"},
		{"with port", peer, []string{"203.0.113.9:4711"}, "203.0.113.9:0"},
		{"ipv6", netip.MustParseAddrPort("[::1]:80"), []string{"2001:db8::1"}, "[2001:db8::1]:0"},
		{"malformed last", peer, []string{"203.0.113.9, bogus"}, "10.0.0.2:5555"},
		{"malformed before trusted", peer, []string{"bogus, 10.1.1.1"}, "10.1.1.1:0"},
		{"mapped", peer, []string{"::ffff:203.0.113.9"}, "203.0.113.9:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clientAddr(tt.peer, tt.xff, proxies).String(); got != tt.want {
				t.Fatalf("clientAddr = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestAcceptForwardedFor(t *testing.T) {
	opt := &Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	p, err := newPair(t, opt, upgradeRequest("/relay", "X-Forwarded-For: 198.51.100.7"))
	if err != nil {
		t.Fatal(err)
	}
	if p.addr.Addr() != netip.MustParseAddr("198.51.100.7") {
		t.Fatalf("client address %v, want 198.51.100.7", p.addr)
	}
}
