// Package config defines relayd's configuration: the TOML schema, built-in
// defaults, and validation whose errors name the file, line and key to fix.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/relayd/relayd/internal/protocol"
)

// Built-in defaults (SPEC §4).
const (
	DefaultPort    = 33333
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
	Listeners []Listener `toml:"-"` // from [[listener]], with limits resolved

	// File is the path the configuration was loaded from; empty for defaults.
	File string `toml:"-"`
}

// Server holds process-wide settings.
type Server struct {
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
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

// Admin is the HTTP listener for metrics and health checks.
type Admin struct {
	Address string `toml:"address"`
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
	SlowReceiver        string   `toml:"slow_receiver"`          // drop | disconnect
	StallTimeout        Duration `toml:"stall_timeout"`
}

// Listener is one [[listener]] table with its limits resolved.
type Listener struct {
	Name             string
	Address          string
	TLSCert          string
	TLSKey           string
	TLSClientCA      string
	ClientIDFromCert bool
	Limits           Limits
}

// TLS reports whether the listener serves TLS.
func (l *Listener) TLS() bool { return l.TLSCert != "" }

// Default returns the built-in configuration: one plain listener on
// 0.0.0.0:33333, logs at info level to stderr, no admin listener.
func Default() *Config {
	c := defaults()
	c.Listeners = []Listener{{Name: "plain", Address: DefaultAddress, Limits: c.Limits}}
	return c
}

// DefaultWithPort is Default with the listener on another port.
func DefaultWithPort(port int) *Config {
	c := Default()
	c.Listeners[0].Address = net.JoinHostPort("0.0.0.0", strconv.Itoa(port))
	return c
}

func defaults() *Config {
	return &Config{
		Server: Server{ShutdownTimeout: Duration(10 * time.Second)},
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
			SlowReceiver: "drop",
			StallTimeout: Duration(250 * time.Millisecond),
		},
	}
}

// file is the shape of the TOML document.
type file struct {
	Config
	Listener []rawListener `toml:"listener"`
}

type rawListener struct {
	Name             string `toml:"name"`
	Address          string `toml:"address"`
	TLSCert          string `toml:"tls_cert"`
	TLSKey           string `toml:"tls_key"`
	TLSClientCA      string `toml:"tls_client_ca"`
	ClientIDFromCert bool   `toml:"client_id_from_cert"`
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
}

func (o *limitOverrides) apply(l Limits) Limits {
	set(&l.MaxPayload, o.MaxPayload)
	set(&l.SendQueue, o.SendQueue)
	set(&l.LoginTimeout, o.LoginTimeout)
	set(&l.IdleTimeout, o.IdleTimeout)
	set(&l.WriteTimeout, o.WriteTimeout)
	set(&l.MaxConnections, o.MaxConnections)
	set(&l.MaxConnectionsPerIP, o.MaxConnectionsPerIP)
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
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
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
	src := string(data)
	f := file{Config: *defaults()}
	md, err := toml.Decode(src, &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: name, Line: pe.Position.Line, Key: pe.LastKey, Msg: pe.Message}
		}
		return nil, &Error{File: name, Msg: err.Error()}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		return nil, &Error{File: name, Line: locate(src, path{keys: k, index: -1}), Key: k.String(), Msg: "unknown key"}
	}

	c := &f.Config
	c.File = name
	if c.Admin != nil && c.Admin.Address == "" {
		c.Admin.Address = DefaultAdminAddress
	}
	for _, rl := range f.Listener {
		c.Listeners = append(c.Listeners, Listener{
			Name:             rl.Name,
			Address:          rl.Address,
			TLSCert:          rl.TLSCert,
			TLSKey:           rl.TLSKey,
			TLSClientCA:      rl.TLSClientCA,
			ClientIDFromCert: rl.ClientIDFromCert,
			Limits:           rl.limitOverrides.apply(c.Limits),
		})
	}
	if len(f.Listener) == 0 {
		c.Listeners = []Listener{{Name: "plain", Address: DefaultAddress, Limits: c.Limits}}
	}
	c.resolvePaths(filepath.Dir(name))
	if err := c.validate(); err != nil {
		var ve *validationError
		if errors.As(err, &ve) {
			return nil, &Error{File: name, Line: locate(src, ve.key), Key: ve.key.display(), Msg: ve.msg}
		}
		return nil, err
	}
	return c, nil
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

func (p path) display() string {
	if p.index >= 0 && len(p.keys) > 0 {
		return fmt.Sprintf("%s[%d].%s", p.keys[0], p.index, strings.Join(p.keys[1:], "."))
	}
	return strings.Join(p.keys, ".")
}

func invalid(key path, format string, args ...any) error {
	return &validationError{key: key, msg: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	key := func(k ...string) path { return path{keys: k, index: -1} }
	if c.Server.ShutdownTimeout <= 0 {
		return invalid(key("server", "shutdown_timeout"), "must be positive, got %s", c.Server.ShutdownTimeout)
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
	names := map[string]int{}
	addrs := map[string]int{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		lkey := func(k string) path { return path{keys: []string{"listener", k}, index: i} }
		if l.Name == "" {
			return invalid(lkey("name"), "every listener needs a name")
		}
		if j, dup := names[l.Name]; dup {
			return invalid(lkey("name"), "duplicate listener name %q (also listener[%d])", l.Name, j)
		}
		names[l.Name] = i
		if err := checkAddress(l.Address); err != nil {
			return invalid(lkey("address"), "listener %q: %v", l.Name, err)
		}
		if j, dup := addrs[l.Address]; dup {
			return invalid(lkey("address"), "listener %q: address %q is also used by listener[%d]", l.Name, l.Address, j)
		}
		if _, port, _ := net.SplitHostPort(l.Address); port != "0" { // port 0: the kernel picks a free one
			addrs[l.Address] = i
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
		}
		if err := l.Limits.validate(lkey); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) validate() error {
	key := func(k string) path { return path{keys: []string{"log", k}, index: -1} }
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
	}{{"login_timeout", l.LoginTimeout}, {"idle_timeout", l.IdleTimeout}, {"write_timeout", l.WriteTimeout}} {
		if d.v <= 0 {
			return invalid(key(d.name), "must be positive, got %s", d.v)
		}
	}
	if l.MaxConnections < 0 {
		return invalid(key("max_connections"), "must not be negative (0 = unlimited), got %d", l.MaxConnections)
	}
	if l.MaxConnectionsPerIP < 0 {
		return invalid(key("max_connections_per_ip"), "must not be negative (0 = unlimited), got %d", l.MaxConnectionsPerIP)
	}
	return nil
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

// resolvePaths makes relative file paths relative to the config file's
// directory rather than to wherever relayd was started from.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Log.File)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		abs(&l.TLSCert)
		abs(&l.TLSKey)
		abs(&l.TLSClientCA)
	}
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
	return d
}
