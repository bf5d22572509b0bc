// Package config defines relayd's configuration: the TOML schema, built-in
// defaults, and validation whose errors name the file, line and key to fix.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/relayd/relayd/internal/protocol"
)

// Built-in defaults (SPEC §4).
const (
	DefaultAddress = "0.0.0.0:33333"

	DefaultAdminAddress = "127.0.0.1:9333" // when [admin] is present without an address
)

// Config is a complete, validated relayd configuration.
type Config struct {
	Server    Server     `toml:"server"`
	Log       Log        `toml:"log"`
	Admin     *Admin     `toml:"admin"` // nil: no admin listener
	Reload    Reload     `toml:"reload"`
	Limits    Limits     `toml:"limits"`
	Listeners []Listener `toml:"-"`       // from [[listener]], with limits resolved
	Auth      *Auth      `toml:"auth"`    // nil: no [auth], so no listener takes tokens
	Cluster   *Cluster   `toml:"cluster"` // nil: a single node

	// File is the path the configuration was loaded from; empty for defaults.
	File string `toml:"-"`

	src *source // the text it was parsed from, for errors found after parsing
}

// Server holds process-wide settings.
type Server struct {
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	DrainPeriod     Duration `toml:"drain_period"` // SIGUSR2 closes connections spread over this; > 0
}

// Log selects where and how relayd logs.
type Log struct {
	Level      string `toml:"level"`  // debug | info | warn | error
	Format     string `toml:"format"` // text | json
	File       string `toml:"file"`   // empty: stderr
	MaxSizeMB  int    `toml:"max_size_mb"`
	MaxBackups int    `toml:"max_backups"`
	MaxAgeDays int    `toml:"max_age_days"`
	Compress   bool   `toml:"compress"`
}

// Admin is the HTTP listener for metrics, health checks and the admin API.
type Admin struct {
	Address       string `toml:"address"`
	Pprof         bool   `toml:"pprof"`           // serve /debug/pprof/
	WebConfigFile string `toml:"web_config_file"` // Prometheus exporter web config (TLS, basic auth); empty: plain HTTP
}

// Reload controls automatic reloading.
type Reload struct {
	Watch bool `toml:"watch"` // reload when the config file changes on disk
}

// Limits bound what one connection may cost. [limits] sets them for every
// listener; a listener may override any of them.
type Limits struct {
	MaxPayload          Size     `toml:"max_payload"`
	SendQueue           Size     `toml:"send_queue"`
	LoginTimeout        Duration `toml:"login_timeout"`
	IdleTimeout         Duration `toml:"idle_timeout"`
	WriteTimeout        Duration `toml:"write_timeout"`
	MaxConnections      int      `toml:"max_connections"`        // 0: unlimited
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // 0: unlimited
	SlowReceiver        string   `toml:"slow_receiver"`          // SlowReceiverDrop or SlowReceiverDisconnect
	StallTimeout        Duration `toml:"stall_timeout"`          // a receiver accepting nothing this long is stalled
	RateLimit           Size     `toml:"rate_limit"`             // bytes per second one connection may send; 0: unlimited
	RateBurst           Size     `toml:"rate_burst"`             // 0: one largest frame; see Burst
	LoginsPerIP         int      `toml:"logins_per_ip"`          // new connections per second per client IP; 0: unlimited
}

// The values of slow_receiver (docs/PROTOCOL.md rule 9).
const (
	SlowReceiverDrop       = "drop"       // the frame is dropped for a stalled receiver
	SlowReceiverDisconnect = "disconnect" // a stalled receiver is disconnected
)

// Burst is the effective rate_burst: the bytes a connection may send at
// once before rate_limit paces it. Unset, it is one frame of max_payload
// with the largest header, so that every legal frame passes in one go. Any
// positive value is valid, also one below a frame: the limiter then takes
// a large frame's tokens in pieces, so the frame is slowed, never refused.
func (l *Limits) Burst() int {
	if l.RateBurst > 0 {
		return int(min(l.RateBurst, Size(math.MaxInt)))
	}
	return int(min(l.MaxPayload+protocol.MaxTransferOverhead, Size(math.MaxInt)))
}

// Transports a listener can speak.
const (
	TransportTCP       = "tcp"
	TransportWebSocket = "websocket"
)

// DefaultWSPath is where a websocket listener accepts upgrades unless
// ws_path says otherwise.
const DefaultWSPath = "/relay"

// Listener is one [[listener]] table with its limits resolved.
type Listener struct {
	Name              string
	Address           string
	TLSCert           string
	TLSKey            string
	TLSClientCA       string
	ClientIDFromCert  bool
	TLSMinVersion     string // "1.2" or "1.3"; set (default "1.2") only on TLS listeners; "" means 1.2
	ClientIDFromToken bool   // the login ClientID is a token checked against [auth]
	ProxyProtocol     bool   // every connection starts with a PROXY v1/v2 header
	Transport         string // TransportTCP or TransportWebSocket; "" means tcp

	// Set only when Transport is websocket.
	WSPath           string         // the upgrade path; starts with "/"
	WSOrigins        []string       // Origin host patterns ("app.example.com", "*.example.com", "*"); empty: Origin must match Host
	WSTrustedProxies []netip.Prefix // peers whose X-Forwarded-For is believed

	Limits Limits

	src   *source // where it was configured, for LoadTLS errors; nil when built in code
	index int     // its position among the [[listener]] tables
}

// TLS reports whether the listener serves TLS.
func (l *Listener) TLS() bool { return l.TLSCert != "" }

// WebSocket reports whether the listener speaks WebSocket.
func (l *Listener) WebSocket() bool { return l.Transport == TransportWebSocket }

// Auth configures signed logins (SPEC §11).
type Auth struct {
	JWTKeyFile  string `toml:"jwt_key_file"` // PEM public keys and hs256: secrets; required
	JWTAudience string `toml:"jwt_audience"` // set: a token's aud must contain it
}

// Cluster configures cluster mode over NATS (SPEC §9).
type Cluster struct {
	Name            string   `toml:"name"`      // one NATS subject token; subjects start with relayd.<name>.
	NodeID          string   `toml:"node_id"`   // one subject token, unique per node; default: the host name
	NATSURLs        []string `toml:"nats_urls"` // at least one; schemes nats, tls, ws, wss
	NATSCredentials string   `toml:"nats_credentials"`
	NATSUser        string   `toml:"nats_user"`
	NATSPassword    string   `toml:"nats_password"`
	NATSTLSCA       string   `toml:"nats_tls_ca"`
	NATSTLSCert     string   `toml:"nats_tls_cert"`
	NATSTLSKey      string   `toml:"nats_tls_key"`
	NodeTimeout     Duration `toml:"node_timeout"` // a node silent this long is gone
}

// Cluster defaults.
const (
	DefaultClusterName = "relayd"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
)

// Default returns the built-in configuration: one plain listener on
// 0.0.0.0:33333, logs at info level to stderr, no admin listener.
func Default() *Config {
	c := defaults()
	c.Listeners = []Listener{defaultListener(c.Limits)}
	return c
}

// DefaultWithPort is Default with the listener on another port.
func DefaultWithPort(port int) *Config {
	c := Default()
	c.Listeners[0].Address = net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	return c
}

func defaultListener(l Limits) Listener {
	return Listener{Name: "plain", Address: DefaultAddress, Transport: TransportTCP, Limits: l}
}

func defaults() *Config {
	return &Config{
		Server: Server{ShutdownTimeout: Duration(10 * time.Second), DrainPeriod: Duration(30 * time.Second)},
		Log: Log{
			Level: "info", Format: "text",
			MaxSizeMB: 100, MaxBackups: 10, MaxAgeDays: 30, Compress: true,
		},
		Reload: Reload{Watch: true},
		Limits: Limits{
			MaxPayload:   8 << 20,
			SendQueue:    16 << 20,
			LoginTimeout: Duration(10 * time.Second),
			IdleTimeout:  Duration(2 * time.Minute),
			WriteTimeout: Duration(10 * time.Second),
			SlowReceiver: SlowReceiverDrop,
			StallTimeout: Duration(250 * time.Millisecond),
		},
	}
}

func defaultCluster() *Cluster {
	return &Cluster{Name: DefaultClusterName, NodeTimeout: Duration(5 * time.Second)}
}

// file is the shape of the TOML document.
type file struct {
	Config
	Listener []rawListener `toml:"listener"`
}

// rawListener is a [[listener]] table as written. Pointers tell a key that
// is absent from one set to its zero value, where that matters.
type rawListener struct {
	Name              string    `toml:"name"`
	Address           string    `toml:"address"`
	TLSCert           string    `toml:"tls_cert"`
	TLSKey            string    `toml:"tls_key"`
	TLSClientCA       string    `toml:"tls_client_ca"`
	ClientIDFromCert  bool      `toml:"client_id_from_cert"`
	TLSMinVersion     *string   `toml:"tls_min_version"`
	ClientIDFromToken bool      `toml:"client_id_from_token"`
	ProxyProtocol     bool      `toml:"proxy_protocol"`
	Transport         *string   `toml:"transport"`
	WSPath            *string   `toml:"ws_path"`
	WSOrigins         *[]string `toml:"ws_origins"`
	WSTrustedProxies  *[]string `toml:"ws_trusted_proxies"`
	limitOverrides
}

// limitOverrides are the [limits] keys a listener may set; nil: inherited.
type limitOverrides struct {
	MaxPayload          *Size     `toml:"max_payload"`
	SendQueue           *Size     `toml:"send_queue"`
	LoginTimeout        *Duration `toml:"login_timeout"`
	IdleTimeout         *Duration `toml:"idle_timeout"`
	WriteTimeout        *Duration `toml:"write_timeout"`
	MaxConnections      *int      `toml:"max_connections"`
	MaxConnectionsPerIP *int      `toml:"max_connections_per_ip"`
	SlowReceiver        *string   `toml:"slow_receiver"`
	StallTimeout        *Duration `toml:"stall_timeout"`
	RateLimit           *Size     `toml:"rate_limit"`
	RateBurst           *Size     `toml:"rate_burst"`
	LoginsPerIP         *int      `toml:"logins_per_ip"`
}

func (o *limitOverrides) apply(l Limits) Limits {
	set(&l.MaxPayload, o.MaxPayload)
	set(&l.SendQueue, o.SendQueue)
	set(&l.LoginTimeout, o.LoginTimeout)
	set(&l.IdleTimeout, o.IdleTimeout)
	set(&l.WriteTimeout, o.WriteTimeout)
	set(&l.MaxConnections, o.MaxConnections)
	set(&l.MaxConnectionsPerIP, o.MaxConnectionsPerIP)
	set(&l.SlowReceiver, o.SlowReceiver)
	set(&l.StallTimeout, o.StallTimeout)
	set(&l.RateLimit, o.RateLimit)
	set(&l.RateBurst, o.RateBurst)
	set(&l.LoginsPerIP, o.LoginsPerIP)
	return l
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// Error is a configuration mistake: where it is and what is wrong.
type Error struct {
	File string // path of the config file
	Line int    // 1-based; 0 when unknown
	Key  string // dotted key, e.g. "listener[1].idle_timeout"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" { // empty for a configuration built in code
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads, decodes and validates the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a configuration; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	src := &source{file: name, text: string(data)}
	f := file{Config: *defaults()}
	// The decoder fills tables into these rather than fresh zero values, so
	// a table that is present starts from its defaults; absent ones are
	// reset to nil below.
	f.Admin, f.Auth, f.Cluster = &Admin{}, &Auth{}, defaultCluster()
	md, err := toml.Decode(src.text, &f)
	if err != nil {
		return nil, src.decodeError(err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		return nil, src.unknownKey(und[0])
	}

	c := &f.Config
	c.File, c.src = name, src
	switch {
	case !md.IsDefined("admin"):
		c.Admin = nil
	case c.Admin.Address == "":
		c.Admin.Address = DefaultAdminAddress
	}
	if !md.IsDefined("auth") {
		c.Auth = nil
	}
	if !md.IsDefined("cluster") {
		c.Cluster = nil
	} else if !md.IsDefined("cluster", "nats_urls") {
		c.Cluster.NATSURLs = []string{DefaultNATSURL}
	}
	for i, rl := range f.Listener {
		l, err := rl.listener(i, c.Limits, src)
		if err != nil {
			return nil, src.wrap(err)
		}
		c.Listeners = append(c.Listeners, l)
	}
	if len(f.Listener) == 0 {
		c.Listeners = []Listener{defaultListener(c.Limits)}
	}
	c.resolvePaths(filepath.Dir(name))
	if err := c.fill(); err != nil {
		return nil, src.wrap(err)
	}
	if err := c.validate(); err != nil {
		return nil, src.wrap(err)
	}
	for i := range f.Listener {
		if err := f.Listener[i].checkGiven(&c.Listeners[i]); err != nil {
			return nil, src.wrap(err)
		}
	}
	return c, nil
}

// listener resolves one [[listener]] table against the global limits.
func (rl *rawListener) listener(i int, limits Limits, src *source) (Listener, error) {
	l := Listener{
		Name:              rl.Name,
		Address:           rl.Address,
		TLSCert:           rl.TLSCert,
		TLSKey:            rl.TLSKey,
		TLSClientCA:       rl.TLSClientCA,
		ClientIDFromCert:  rl.ClientIDFromCert,
		ClientIDFromToken: rl.ClientIDFromToken,
		ProxyProtocol:     rl.ProxyProtocol,
		Transport:         TransportTCP,
		Limits:            rl.limitOverrides.apply(limits),
		src:               src,
		index:             i,
	}
	set(&l.Transport, rl.Transport)
	set(&l.TLSMinVersion, rl.TLSMinVersion)
	if rl.TLSMinVersion == nil && l.TLS() {
		l.TLSMinVersion = "1.2"
	}
	if l.WebSocket() {
		l.WSPath = DefaultWSPath
		set(&l.WSPath, rl.WSPath)
		if rl.WSOrigins != nil {
			l.WSOrigins = *rl.WSOrigins
		}
		if rl.WSTrustedProxies != nil {
			l.WSTrustedProxies = make([]netip.Prefix, 0, len(*rl.WSTrustedProxies))
			for _, s := range *rl.WSTrustedProxies {
				p, err := parsePrefix(s)
				if err != nil {
					return l, invalid(listenerKey(i, "ws_trusted_proxies"), "listener %q: %v", l.Name, err)
				}
				l.WSTrustedProxies = append(l.WSTrustedProxies, p)
			}
		}
	}
	return l, nil
}

// checkGiven refuses keys that mean nothing on this listener, after the
// rest is valid, so that a wrong transport is reported as such first.
func (rl *rawListener) checkGiven(l *Listener) error {
	key := func(k string) path { return listenerKey(l.index, k) }
	if !l.WebSocket() {
		for _, k := range []struct {
			name  string
			given bool
		}{{"ws_path", rl.WSPath != nil}, {"ws_origins", rl.WSOrigins != nil}, {"ws_trusted_proxies", rl.WSTrustedProxies != nil}} {
			if k.given {
				return invalid(key(k.name), "listener %q: %s applies only to transport = %q", l.Name, k.name, TransportWebSocket)
			}
		}
	}
	if rl.TLSMinVersion != nil && !l.TLS() {
		return invalid(key("tls_min_version"), "listener %q: tls_min_version applies only to TLS listeners (set tls_cert and tls_key)", l.Name)
	}
	return nil
}

// fill sets defaults that depend on the machine.
func (c *Config) fill() error {
	if c.Cluster != nil && c.Cluster.NodeID == "" {
		h, err := hostname()
		if err != nil {
			return invalid(key("cluster", "node_id"), "cannot default to the host name (%v): set node_id", err)
		}
		if c.Cluster.NodeID = subjectToken(h); c.Cluster.NodeID == "" {
			return invalid(key("cluster", "node_id"), "the host name %q makes no node ID: set node_id", h)
		}
	}
	return nil
}

// hostname is os.Hostname, replaceable in tests.
var hostname = os.Hostname

// subjectToken maps s to one NATS subject token: characters other than
// letters, digits, "-" and "_" (the dots of a domain name) become "-".
func subjectToken(s string) string {
	return strings.Map(func(r rune) rune {
		if isTokenChar(r) {
			return r
		}
		return '-'
	}, s)
}

func isTokenChar(r rune) bool {
	return r == '-' || r == '_' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')
}

// parsePrefix reads a CIDR, or a bare IP address as the prefix holding
// only that address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is neither a CIDR (\"10.0.0.0/8\") nor an IP address", s)
}

// decodeError turns the TOML decoder's error into an Error. Syntax errors
// and values a TextUnmarshaler refused come as a ParseError; type
// mismatches only as text, "toml: line N (last key "K"): message".
func (s *source) decodeError(err error) *Error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return s.keyError(pe.Position.Line, pe.LastKey, pe.Message)
	}
	if m := typeError.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return s.keyError(line, m[2], m[3])
	}
	return &Error{File: s.file, Msg: err.Error()}
}

var typeError = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key "([^"]*)"\): (.*)$`)

// keyError is an Error at a dotted key the decoder reported, with the
// index added when the key is in an array of tables.
func (s *source) keyError(line int, dotted, msg string) *Error {
	e := &Error{File: s.file, Line: line, Key: dotted, Msg: msg}
	keys := strings.Split(dotted, ".")
	if _, many := arrayTables[keys[0]]; many && len(keys) >= 2 {
		if i := instance(s.text, keys); i >= 0 {
			e.Key = path{keys: keys, index: i}.display()
		}
	}
	if e.Line == 0 {
		e.Line = locate(s.text, key(keys...))
	}
	return e
}

// source is the text a configuration was parsed from, kept so that errors
// found later (LoadTLS, Check) still name the file, line and key.
type source struct {
	file, text string
}

// errorf builds an Error at key p. A nil source (a configuration built in
// code) gives an Error without file and line.
func (s *source) errorf(p path, format string, args ...any) *Error {
	e := &Error{Key: p.display(), Msg: fmt.Sprintf(format, args...)}
	if s != nil {
		e.File, e.Line = s.file, locate(s.text, p)
	}
	return e
}

// wrap turns a validationError into an Error naming file and line.
func (s *source) wrap(err error) error {
	var ve *validationError
	if errors.As(err, &ve) {
		return s.errorf(ve.key, "%s", ve.msg)
	}
	return err
}

// validationError carries the key a validation rule failed on.
type validationError struct {
	key path
	msg string
}

func (e *validationError) Error() string { return e.key.display() + ": " + e.msg }

// path addresses a key: table names, then the key; index selects one table
// of an array of tables ([[listener]]), -1 for plain tables.
type path struct {
	keys  []string
	index int
}

func key(k ...string) path { return path{keys: k, index: -1} }

func listenerKey(i int, k string) path { return path{keys: []string{"listener", k}, index: i} }

func (p path) display() string {
	if p.index >= 0 && len(p.keys) > 0 {
		return fmt.Sprintf("%s[%d].%s", p.keys[0], p.index, strings.Join(p.keys[1:], "."))
	}
	return strings.Join(p.keys, ".")
}

func invalid(key path, format string, args ...any) error {
	return &validationError{key: key, msg: fmt.Sprintf(format, args...)}
}

// resolvePaths makes relative file paths relative to the config file's
// directory rather than to wherever relayd was started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Log.File)
	if c.Admin != nil {
		abs(&c.Admin.WebConfigFile)
	}
	if c.Auth != nil {
		abs(&c.Auth.JWTKeyFile)
	}
	if cl := c.Cluster; cl != nil {
		for _, p := range []*string{&cl.NATSCredentials, &cl.NATSTLSCA, &cl.NATSTLSCert, &cl.NATSTLSKey} {
			abs(p)
		}
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		abs(&l.TLSCert)
		abs(&l.TLSKey)
		abs(&l.TLSClientCA)
	}
}

// Diff names the keys of a [[listener]] table whose values differ between
// l and o, limits included, in the order of the table; for the reload log.
func (l *Listener) Diff(o *Listener) []string {
	var d []string
	add := func(name string, differ bool) {
		if differ {
			d = append(d, name)
		}
	}
	add("name", l.Name != o.Name)
	add("address", l.Address != o.Address)
	add("tls_cert", l.TLSCert != o.TLSCert)
	add("tls_key", l.TLSKey != o.TLSKey)
	add("tls_client_ca", l.TLSClientCA != o.TLSClientCA)
	add("client_id_from_cert", l.ClientIDFromCert != o.ClientIDFromCert)
	add("tls_min_version", l.TLSMinVersion != o.TLSMinVersion)
	add("client_id_from_token", l.ClientIDFromToken != o.ClientIDFromToken)
	add("proxy_protocol", l.ProxyProtocol != o.ProxyProtocol)
	add("transport", l.Transport != o.Transport)
	add("ws_path", l.WSPath != o.WSPath)
	add("ws_origins", !slices.Equal(l.WSOrigins, o.WSOrigins))
	add("ws_trusted_proxies", !slices.Equal(l.WSTrustedProxies, o.WSTrustedProxies))
	return append(d, l.Limits.Diff(o.Limits)...)
}

// Diff names the keys whose values differ between l and o.
func (l Limits) Diff(o Limits) []string {
	var d []string
	add := func(name string, differ bool) {
		if differ {
			d = append(d, name)
		}
	}
	add("max_payload", l.MaxPayload != o.MaxPayload)
	add("send_queue", l.SendQueue != o.SendQueue)
	add("login_timeout", l.LoginTimeout != o.LoginTimeout)
	add("idle_timeout", l.IdleTimeout != o.IdleTimeout)
	add("write_timeout", l.WriteTimeout != o.WriteTimeout)
	add("max_connections", l.MaxConnections != o.MaxConnections)
	add("max_connections_per_ip", l.MaxConnectionsPerIP != o.MaxConnectionsPerIP)
	add("slow_receiver", l.SlowReceiver != o.SlowReceiver)
	add("stall_timeout", l.StallTimeout != o.StallTimeout)
	add("rate_limit", l.RateLimit != o.RateLimit)
	add("rate_burst", l.RateBurst != o.RateBurst)
	add("logins_per_ip", l.LoginsPerIP != o.LoginsPerIP)
	return d
}
