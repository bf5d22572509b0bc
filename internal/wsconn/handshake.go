package wsconn

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
)

// MaxHandshake bounds the upgrade request: request line and headers. A
// larger one is refused with 431 and never buffered beyond this.
const MaxHandshake = 8 << 10

// handshakeWriteTimeout bounds writing the 101 or a refusal: a client that
// does not read its answer does not hold the connection's goroutine.
var handshakeWriteTimeout = 5 * time.Second

// Options configure Accept. The server builds them from a listener's
// configuration; MaxFrame is consulted per message, so a reloaded
// max_payload applies to open connections.
type Options struct {
	Path           string         // upgrade only on this path; others get 404
	Origins        []string       // "app.example.com", "*.example.com", "*", "host:port"; empty: Origin must match Host
	TrustedProxies []netip.Prefix // peers whose X-Forwarded-For is believed
	MaxFrame       func() int     // largest RELY frame accepted in one message
}

// HandshakeError is a refused upgrade: the HTTP status it was answered
// with and why, for the server's debug log.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("websocket handshake refused (%d): %s", e.Status, e.Reason)
}

// Unwrap makes a refused upgrade a protocol violation: the server counts
// it as a protocol error, like any other bytes that are not RELY.
func (e *HandshakeError) Unwrap() error { return errHandshake }

var errHandshake = protocol.Violation("websocket upgrade refused")

// Accept reads the HTTP/1.1 upgrade request from raw, whose read deadline
// the caller has set (the login deadline), and completes the handshake: it
// returns the connection and the client's address (peer, or the last
// untrusted address of X-Forwarded-For when peer is a trusted proxy). A
// request that is not an acceptable upgrade is answered with its HTTP
// status and returned as a *HandshakeError; raw is left to the caller to
// close either way on error.
func Accept(raw net.Conn, peer netip.AddrPort, opt *Options) (*Conn, netip.AddrPort, error) {
	buf := bufpool.Get(MaxHandshake)
	defer bufpool.Put(buf)
	b := buf.B[:MaxHandshake]
	n, end := 0, -1
	for end < 0 {
		if n == len(b) {
			return nil, peer, refuse(raw, 431, "request headers larger than 8 KiB")
		}
		m, err := raw.Read(b[n:])
		// Search only what is new, and the three bytes before it.
		if i := bytes.Index(b[max(0, n-3):n+m], []byte("\r\n\r\n")); i >= 0 {
			end = max(0, n-3) + i + 4
		}
		n += m
		if err != nil && end < 0 {
			return nil, peer, fmt.Errorf("websocket handshake: read request: %w", err)
		}
	}
	req, herr := parseRequest(b[:end], opt)
	if herr != nil {
		return nil, peer, refuse(raw, herr.Status, herr.Reason)
	}
	client := clientAddr(peer, req.forwardedFor, opt.TrustedProxies)

	resp := make([]byte, 0, 160)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = append(resp, acceptKey(req.key)...)
	resp = append(resp, "\r\n\r\n"...)
	if err := writeWithin(raw, resp); err != nil {
		return nil, client, fmt.Errorf("websocket handshake: write 101: %w", err)
	}
	c := newConn(raw, opt.MaxFrame)
	if n > end {
		// A client must wait for the 101 before it sends frames (RFC
		// 6455 §4.1); one that did not loses nothing all the same.
		c.pre = bytes.Clone(b[end:n])
	}
	return c, client, nil
}

// request is what Accept needs of an upgrade request.
type request struct {
	key          string
	forwardedFor []string // X-Forwarded-For header values, in order
}

// parseRequest checks an upgrade request (RFC 6455 §4.2.1) in the order a
// client best learns what to fix: the path, the upgrade itself, then
// whether its Origin may use this server.
func parseRequest(b []byte, opt *Options) (*request, *HandshakeError) {
	lines := strings.Split(string(b[:len(b)-4]), "\r\n")
	method, rest, ok1 := strings.Cut(lines[0], " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !strings.HasPrefix(proto, "HTTP/1.") {
		return nil, &HandshakeError{400, "malformed HTTP request line"}
	}
	path, _, _ := strings.Cut(target, "?")
	if path != opt.Path {
		return nil, &HandshakeError{404, "websocket upgrades are served on " + opt.Path + " only"}
	}
	if method != "GET" {
		return nil, &HandshakeError{405, "a websocket upgrade is a GET request"}
	}
	if proto != "HTTP/1.1" {
		return nil, &HandshakeError{505, "a websocket upgrade needs HTTP/1.1"}
	}
	var req request
	var host, origin, upgrade, connection, version string
	var haveOrigin bool
	for _, l := range lines[1:] {
		name, value, ok := strings.Cut(l, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, &HandshakeError{400, "malformed header line"}
		}
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "host":
			host = value
		case "origin":
			origin, haveOrigin = value, true
		case "upgrade":
			upgrade += "," + value
		case "connection":
			connection += "," + value
		case "sec-websocket-version":
			version = value
		case "sec-websocket-key":
			req.key = value
		case "x-forwarded-for":
			req.forwardedFor = append(req.forwardedFor, value)
		}
	}
	if !hasToken(upgrade, "websocket") || !hasToken(connection, "upgrade") {
		return nil, &HandshakeError{426, "this path only accepts websocket upgrades (Upgrade: websocket, Connection: Upgrade)"}
	}
	if version != "13" {
		return nil, &HandshakeError{426, "Sec-WebSocket-Version must be 13"}
	}
	if host == "" {
		return nil, &HandshakeError{400, "missing Host header"}
	}
	if k, err := base64.StdEncoding.DecodeString(req.key); err != nil || len(k) != 16 {
		return nil, &HandshakeError{400, "Sec-WebSocket-Key must be 16 bytes in base64"}
	}
	if haveOrigin && !originAllowed(origin, host, opt.Origins) {
		return nil, &HandshakeError{403, "origin " + strconv.Quote(origin) + " is not allowed by ws_origins"}
	}
	return &req, nil
}

func hasToken(list, token string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// originAllowed matches an Origin header against the ws_origins patterns:
// "*" any; "*.example.com" any subdomain of example.com; otherwise the host
// exactly, its port too when the pattern has one. Without patterns the
// Origin must be the same host and port the request was sent to.
func originAllowed(origin, host string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return hasStar(patterns) // "null" and other opaque origins: only "*" admits them
	}
	hostname := strings.ToLower(u.Hostname())
	hostport := strings.ToLower(u.Host)
	if u.Port() == "" {
		hostport = net.JoinHostPort(hostname, defaultPort(u.Scheme))
	}
	if len(patterns) == 0 {
		h := strings.ToLower(host)
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), defaultPort(u.Scheme))
		}
		return h == hostport
	}
	for _, p := range patterns {
		p = strings.ToLower(p)
		target := hostname
		if _, _, err := net.SplitHostPort(p); err == nil {
			target = hostport
		}
		switch {
		case p == "*":
			return true
		case strings.HasPrefix(p, "*."):
			if strings.HasSuffix(target, p[1:]) {
				return true
			}
		case p == target:
			return true
		}
	}
	return false
}

func hasStar(patterns []string) bool {
	for _, p := range patterns {
		if p == "*" {
			return true
		}
	}
	return false
}

func defaultPort(scheme string) string {
	if scheme == "https" || scheme == "wss" {
		return "443"
	}
	return "80"
}

// clientAddr is peer, unless peer is a trusted proxy: then the last
// address of X-Forwarded-For that is not itself a trusted proxy (each
// proxy appends the address it received the request from, so only the
// entries after the last untrusted one can be believed).
func clientAddr(peer netip.AddrPort, xff []string, trusted []netip.Prefix) netip.AddrPort {
	if len(xff) == 0 || !isTrusted(peer.Addr(), trusted) {
		return peer
	}
	hops := strings.Split(strings.Join(xff, ","), ",")
	client := peer.Addr()
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(strings.TrimSpace(hops[i]))
		if !ok {
			break // what comes before a malformed entry cannot be believed
		}
		client = a
		if !isTrusted(a, trusted) {
			break
		}
	}
	if client == peer.Addr() {
		return peer
	}
	return netip.AddrPortFrom(client, 0)
}

func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// acceptKey is Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// refuse answers a refused upgrade with its status and a one-line body
// saying what to fix, and returns the error Accept reports.
func refuse(raw net.Conn, status int, reason string) error {
	body := reason + "\n"
	var extra string
	if status == 426 {
		extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
	}
	resp := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n%s",
		status, statusText(status), len(body), extra, body)
	_ = writeWithin(raw, []byte(resp))
	return &HandshakeError{status, reason}
}

func statusText(status int) string {
	switch status {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 426:
		return "Upgrade Required"
	case 431:
		return "Request Header Fields Too Large"
	case 505:
		return "HTTP Version Not Supported"
	}
	return "Error"
}

func writeWithin(raw net.Conn, b []byte) error {
	_ = raw.SetWriteDeadline(time.Now().Add(handshakeWriteTimeout))
	_, err := raw.Write(b)
	_ = raw.SetWriteDeadline(time.Time{})
	return err
}

// IsHandshake reports whether err is a refused upgrade.
func IsHandshake(err error) bool {
	var h *HandshakeError
	return errors.As(err, &h)
}
