package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/relayd/relayd/internal/protocol"
)

func (c *Config) validate() error {
	if c.Server.ShutdownTimeout <= 0 {
		return invalid(key("server", "shutdown_timeout"), "must be positive, got %s", c.Server.ShutdownTimeout)
	}
	if c.Server.DrainPeriod <= 0 {
		return invalid(key("server", "drain_period"), "must be positive, got %s", c.Server.DrainPeriod)
	}
	if err := c.Log.validate(); err != nil {
		return err
	}
	if c.Admin != nil {
		if err := checkAddress(c.Admin.Address); err != nil {
			return invalid(key("admin", "address"), "%v", err)
		}
	}
	if err := c.Limits.validate(func(k string) path { return key("limits", k) }); err != nil {
		return err
	}
	if c.Auth != nil && c.Auth.JWTKeyFile == "" {
		return invalid(key("auth", "jwt_key_file"), "required in [auth]: the PEM file of the keys that sign login tokens")
	}
	if c.Cluster != nil {
		if err := c.Cluster.validate(); err != nil {
			return err
		}
	}
	names := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Name == "" {
			return invalid(listenerKey(i, "name"), "every listener needs a name")
		}
		if j, dup := names[l.Name]; dup {
			return invalid(listenerKey(i, "name"), "duplicate listener name %q (also listener[%d])", l.Name, j)
		}
		names[l.Name] = i
		if err := c.validateListener(i); err != nil {
			return err
		}
	}
	return c.checkCollisions()
}

func (c *Config) validateListener(i int) error {
	l := &c.Listeners[i]
	lkey := func(k string) path { return listenerKey(i, k) }
	if err := checkAddress(l.Address); err != nil {
		return invalid(lkey("address"), "listener %q: %v", l.Name, err)
	}
	switch {
	case l.TLSKey != "" && l.TLSCert == "":
		return invalid(lkey("tls_cert"), "listener %q: tls_key is set but tls_cert is not", l.Name)
	case l.TLSCert != "" && l.TLSKey == "":
		return invalid(lkey("tls_key"), "listener %q: tls_cert is set but tls_key is not", l.Name)
	case l.TLSClientCA != "" && l.TLSCert == "":
		return invalid(lkey("tls_client_ca"), "listener %q: tls_client_ca needs tls_cert and tls_key", l.Name)
	case l.ClientIDFromCert && l.TLSClientCA == "":
		return invalid(lkey("client_id_from_cert"), "listener %q: client_id_from_cert needs tls_client_ca (client certificates)", l.Name)
	case l.ClientIDFromToken && l.ClientIDFromCert:
		return invalid(lkey("client_id_from_token"), "listener %q: client_id_from_token and client_id_from_cert are exclusive: the ClientID comes from a token or from a certificate, not both", l.Name)
	case l.ClientIDFromToken && c.Auth == nil:
		return invalid(lkey("client_id_from_token"), "listener %q: client_id_from_token needs an [auth] section with jwt_key_file", l.Name)
	}
	if v := l.TLSMinVersion; l.TLS() && v != "1.2" && v != "1.3" {
		return invalid(lkey("tls_min_version"), "listener %q: want \"1.2\" or \"1.3\", got %q", l.Name, v)
	}
	switch l.Transport {
	case TransportTCP:
	case TransportWebSocket:
		if err := l.validateWebSocket(lkey); err != nil {
			return err
		}
	default:
		return invalid(lkey("transport"), "listener %q: want %s or %s, got %q", l.Name, TransportTCP, TransportWebSocket, l.Transport)
	}
	return l.Limits.validate(lkey)
}

func (l *Listener) validateWebSocket(lkey func(string) path) error {
	if !strings.HasPrefix(l.WSPath, "/") || strings.ContainsAny(l.WSPath, "?# \t") {
		return invalid(lkey("ws_path"), "listener %q: want a URL path starting with \"/\" (no query), e.g. %q, got %q", l.Name, DefaultWSPath, l.WSPath)
	}
	for _, o := range l.WSOrigins {
		if err := checkOriginPattern(o); err != nil {
			return invalid(lkey("ws_origins"), "listener %q: %v", l.Name, err)
		}
	}
	return nil
}

// checkOriginPattern accepts "*", a host name, or "*." and a host name: what
// an Origin's host is matched against (case-insensitively, without port).
func checkOriginPattern(p string) error {
	if p == "*" {
		return nil
	}
	const want = `want a host pattern such as "app.example.com", "*.example.com" or "*"`
	if strings.Contains(p, "://") {
		return fmt.Errorf("ws_origins entry %q: %s, without scheme", p, want)
	}
	host, wild := strings.CutPrefix(p, "*.")
	if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && !wild {
		return nil // an IP address, as in Origin: http://192.0.2.7
	}
	if len(host) == 0 || len(host) > 253 {
		return fmt.Errorf("ws_origins entry %q: %s", p, want)
	}
	labels := strings.Split(host, ".")
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("ws_origins entry %q: %s (an IP address takes no wildcard)", p, want)
	}
	for _, label := range labels {
		if !validLabel(label) {
			switch {
			case strings.ContainsAny(label, ":/"):
				return fmt.Errorf("ws_origins entry %q: %s, without port or path", p, want)
			case strings.Contains(label, "*"):
				return fmt.Errorf("ws_origins entry %q: %s (a wildcard only as the whole first label)", p, want)
			}
			return fmt.Errorf("ws_origins entry %q: %s", p, want)
		}
	}
	return nil
}

// validLabel reports whether s is a DNS label: 1 to 63 letters, digits and
// inner hyphens.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r == '-' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')) {
			return false
		}
	}
	return true
}

func (l *Log) validate() error {
	key := func(k string) path { return key("log", k) }
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return invalid(key("level"), "want debug, info, warn or error, got %q", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return invalid(key("format"), "want text or json, got %q", l.Format)
	}
	if l.MaxSizeMB <= 0 {
		return invalid(key("max_size_mb"), "must be positive, got %d", l.MaxSizeMB)
	}
	if l.MaxBackups < 0 {
		return invalid(key("max_backups"), "must not be negative, got %d", l.MaxBackups)
	}
	if l.MaxAgeDays < 0 {
		return invalid(key("max_age_days"), "must not be negative, got %d", l.MaxAgeDays)
	}
	return nil
}

func (l *Limits) validate(key func(string) path) error {
	if l.MaxPayload > 0xFFFFFFFF {
		return invalid(key("max_payload"), "at most 4294967295 (the wire limit), got %d", l.MaxPayload)
	}
	if min := l.MaxPayload + protocol.MaxTransferOverhead; l.SendQueue < min {
		return invalid(key("send_queue"), "must be at least max_payload + %d = %d, got %d",
			protocol.MaxTransferOverhead, min, l.SendQueue)
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"login_timeout", l.LoginTimeout}, {"idle_timeout", l.IdleTimeout},
		{"write_timeout", l.WriteTimeout}, {"stall_timeout", l.StallTimeout},
	} {
		if d.v <= 0 {
			return invalid(key(d.name), "must be positive, got %s", d.v)
		}
	}
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"max_connections", int64(l.MaxConnections)}, {"max_connections_per_ip", int64(l.MaxConnectionsPerIP)},
		{"rate_limit", int64(l.RateLimit)}, {"rate_burst", int64(l.RateBurst)}, {"logins_per_ip", int64(l.LoginsPerIP)},
	} {
		if n.v < 0 {
			return invalid(key(n.name), "must not be negative (0 = unlimited), got %d", n.v)
		}
	}
	switch l.SlowReceiver {
	case SlowReceiverDrop, SlowReceiverDisconnect:
	default:
		return invalid(key("slow_receiver"), "want %s or %s, got %q", SlowReceiverDrop, SlowReceiverDisconnect, l.SlowReceiver)
	}
	return nil
}

func (cl *Cluster) validate() error {
	key := func(k string) path { return key("cluster", k) }
	for _, t := range []struct{ name, v string }{{"name", cl.Name}, {"node_id", cl.NodeID}} {
		if t.v == "" || strings.IndexFunc(t.v, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			return invalid(key(t.name), "want letters, digits, \"-\" and \"_\" only (one NATS subject token), got %q", t.v)
		}
	}
	if len(cl.NATSURLs) == 0 {
		return invalid(key("nats_urls"), "needs at least one URL, e.g. %q", DefaultNATSURL)
	}
	for i, s := range cl.NATSURLs {
		if err := checkNATSURL(s); err != nil {
			return invalid(key("nats_urls"), "entry %d: %v", i+1, err)
		}
	}
	switch {
	case cl.NATSCredentials != "" && (cl.NATSUser != "" || cl.NATSPassword != ""):
		return invalid(key("nats_credentials"), "nats_credentials and nats_user/nats_password are exclusive: log in to NATS one way")
	case cl.NATSPassword != "" && cl.NATSUser == "":
		return invalid(key("nats_password"), "nats_password is set but nats_user is not")
	case cl.NATSTLSKey != "" && cl.NATSTLSCert == "":
		return invalid(key("nats_tls_cert"), "nats_tls_key is set but nats_tls_cert is not")
	case cl.NATSTLSCert != "" && cl.NATSTLSKey == "":
		return invalid(key("nats_tls_key"), "nats_tls_cert is set but nats_tls_key is not")
	}
	if cl.NodeTimeout <= 0 {
		return invalid(key("node_timeout"), "must be positive, got %s", cl.NodeTimeout)
	}
	return nil
}

// checkNATSURL accepts what nats.go connects to. Errors show the URL with
// any password in it replaced, since they end up in logs.
func checkNATSURL(s string) error {
	const want = `want a URL such as "nats://127.0.0.1:4222" (scheme nats, tls, ws or wss)`
	if strings.Contains(s, ",") {
		return fmt.Errorf("%q: one URL per entry: nats_urls = [\"nats://a:4222\", \"nats://b:4222\"]", redact(s))
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %s", redact(s), want)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Errorf("%q: %s", u.Redacted(), want)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q: no host: %s", u.Redacted(), want)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: bad port %q", u.Redacted(), p)
		}
	}
	return nil
}

// redact hides the user information of a URL that did not parse.
func redact(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		scheme, _, ok := strings.Cut(s[:i], "://")
		if ok {
			return scheme + "://xxxxx@" + s[i+1:]
		}
		return "xxxxx@" + s[i+1:]
	}
	return s
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port, e.g. \"0.0.0.0:33333\" or \"[::]:33443\"", addr)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("invalid address %q: host must be an IP address", addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("invalid address %q: bad port %q", addr, port)
	}
	return nil
}
