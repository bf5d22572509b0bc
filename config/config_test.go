package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want Size
		ok   bool
	}{
		{"0", 0, true},
		{"1024", 1024, true},
		{"64KiB", 64 << 10, true},
		{"8MiB", 8 << 20, true},
		{"8 MiB", 8 << 20, true},
		{"1GiB", 1 << 30, true},
		{"10MB", 10_000_000, true},
		{"5B", 5, true},
		{"-1", 0, false},
		{"1.5MiB", 0, false},
		{"8mib", 0, false},
		{"MiB", 0, false},
		{"", 0, false},
		{"99999999999TiB", 0, false},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	if s := Size(8 << 20).String(); s != "8MiB" {
		t.Errorf("String = %q", s)
	}
}

func TestDefaultsMatchTheSpec(t *testing.T) {
	c := Default()
	l := c.Listeners[0]
	if len(c.Listeners) != 1 || l.Address != "0.0.0.0:33333" || l.TLS() {
		t.Fatalf("default listeners = %+v", c.Listeners)
	}
	want := Limits{
		MaxPayload: 8 << 20, SendQueue: 16 << 20,
		LoginTimeout: Duration(10 * time.Second), IdleTimeout: Duration(2 * time.Minute),
		WriteTimeout: Duration(10 * time.Second),
		SlowReceiver: "drop", StallTimeout: Duration(250 * time.Millisecond),
	}
	if l.Limits != want {
		t.Fatalf("default limits = %+v, want %+v", l.Limits, want)
	}
	if b := l.Limits.Burst(); b != 8<<20+522 {
		t.Fatalf("default Burst = %d, want max_payload + 522", b)
	}
	if l.Transport != "tcp" || l.WebSocket() || l.TLSMinVersion != "" || l.ProxyProtocol || l.ClientIDFromToken {
		t.Fatalf("default listener = %+v", l)
	}
	if c.Admin != nil || c.Auth != nil || c.Cluster != nil || c.Log.Level != "info" || c.Log.File != "" || !c.Reload.Watch {
		t.Fatalf("defaults = %+v", c)
	}
	if c.Server.ShutdownTimeout.D() != 10*time.Second || c.Server.DrainPeriod.D() != 30*time.Second {
		t.Fatalf("server defaults = %+v", c.Server)
	}
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if a := DefaultWithPort(40000).Listeners[0].Address; a != "0.0.0.0:40000" {
		t.Fatalf("DefaultWithPort address = %s", a)
	}
}

func TestParseFullConfig(t *testing.T) {
	src := `
[server]
shutdown_timeout = "3s"

[log]
level = "debug"
format = "json"
file = "/var/log/relayd/relayd.log"
max_size_mb = 5
max_backups = 2
max_age_days = 0
compress = false

[admin]
address = "127.0.0.1:9333"

[reload]
watch = false

[limits]
max_payload = "1MiB"
send_queue = 4194304
idle_timeout = "90s"
max_connections_per_ip = 10

[[listener]]
name = "plain"
address = "0.0.0.0:33333"

[[listener]]
name = "tls"
address = "[::]:33443"
tls_cert = "cert.pem"
tls_key = "key.pem"
tls_client_ca = "ca.pem"
client_id_from_cert = true
idle_timeout = "5m"
max_payload = "64KiB"
max_connections = 100
`
	c, err := Parse("/etc/relayd/relayd.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.ShutdownTimeout.D() != 3*time.Second || c.Log.Level != "debug" || c.Log.Format != "json" ||
		c.Log.MaxSizeMB != 5 || c.Log.Compress || c.Reload.Watch || c.Admin == nil || c.Admin.Address != "127.0.0.1:9333" {
		t.Fatalf("globals = %+v", c)
	}
	if len(c.Listeners) != 2 {
		t.Fatalf("%d listeners", len(c.Listeners))
	}
	plain, tls := c.Listeners[0].Limits, c.Listeners[1].Limits
	// plain inherits [limits]; [limits] inherits the defaults it does not set.
	if plain.MaxPayload != 1<<20 || plain.SendQueue != 4<<20 || plain.IdleTimeout.D() != 90*time.Second ||
		plain.LoginTimeout.D() != 10*time.Second || plain.MaxConnectionsPerIP != 10 || plain.MaxConnections != 0 {
		t.Fatalf("plain limits = %+v", plain)
	}
	// tls overrides some and inherits the rest.
	if tls.MaxPayload != 64<<10 || tls.IdleTimeout.D() != 5*time.Minute || tls.MaxConnections != 100 ||
		tls.SendQueue != 4<<20 || tls.MaxConnectionsPerIP != 10 {
		t.Fatalf("tls limits = %+v", tls)
	}
	l := c.Listeners[1]
	// Relative paths are relative to the config file; absolute ones stay.
	if !l.TLS() || l.TLSCert != "/etc/relayd/cert.pem" || l.TLSClientCA != "/etc/relayd/ca.pem" ||
		!l.ClientIDFromCert || l.Address != "[::]:33443" || c.Log.File != "/var/log/relayd/relayd.log" {
		t.Fatalf("tls listener = %+v", l)
	}
}

func TestNoListenersMeansTheDefaultOne(t *testing.T) {
	c, err := Parse("x.toml", []byte("[log]\nlevel = \"warn\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Listeners) != 1 || c.Listeners[0].Address != DefaultAddress {
		t.Fatalf("listeners = %+v", c.Listeners)
	}
	if c, _ := Parse("x.toml", []byte("[admin]\n")); c.Admin == nil || c.Admin.Address != DefaultAdminAddress {
		t.Fatalf("[admin] without address = %+v", c.Admin)
	}
}

// Every mistake names the file, the line and the key.
func TestErrorsNameFileLineAndKey(t *testing.T) {
	tests := []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		{"syntax", "[limits]\nmax_payload = \n", 2, "limits.max_payload", "expected value"},
		{"unknown top-level key", "\nfoo = 1\n", 2, "foo", "unknown key"},
		{"unknown table", "[limit]\nmax_payload = 1\n", 1, "limit", "unknown key"},
		{"unknown key in table", "[limits]\n\nidle_timout = \"1s\"\n", 3, "limits.idle_timout", "unknown key"},
		{"unknown key in listener", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ntls = true\n", 4, "listener[0].tls", "unknown key"},
		{"bad duration", "[limits]\nidle_timeout = \"5 minutes\"\n", 2, "limits.idle_timeout", "invalid duration"},
		{"duration not a string", "[limits]\nidle_timeout = 5\n", 2, "limits.idle_timeout", "invalid duration"},
		{"negative size", "[limits]\nmax_payload = -1\n", 2, "limits.max_payload", "invalid size"},
		{"bad size unit", "[limits]\nsend_queue = \"16 megs\"\n", 2, "limits.send_queue", "invalid size"},
		{"send_queue too small", "[limits]\nmax_payload = \"1MiB\"\nsend_queue = \"1MiB\"\n", 3, "limits.send_queue", "at least max_payload + 522"},
		{"max_payload over wire limit", "[limits]\nmax_payload = \"4GiB\"\nsend_queue = \"8GiB\"\n", 2, "limits.max_payload", "at most 4294967295"},
		{"zero timeout", "[limits]\nwrite_timeout = \"0s\"\n", 2, "limits.write_timeout", "must be positive"},
		{"negative max_connections", "[limits]\nmax_connections = -1\n", 2, "limits.max_connections", "must not be negative"},
		{"bad log level", "[log]\nlevel = \"verbose\"\n", 2, "log.level", "want debug, info, warn or error"},
		{"bad log format", "[log]\nformat = \"xml\"\n", 2, "log.format", "want text or json"},
		{"bad admin address", "[admin]\naddress = \"9333\"\n", 2, "admin.address", "want host:port"},
		{"bad shutdown timeout", "[server]\nshutdown_timeout = \"-1s\"\n", 2, "server.shutdown_timeout", "must be positive"},
		{"listener without name", "[[listener]]\naddress = \"127.0.0.1:1\"\n", 1, "listener[0].name", "needs a name"},
		{"duplicate name", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:2\"\n", 5, "listener[1].name", "duplicate listener name"},
		{"duplicate address", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:1\"\n", 6, "listener[1].address", "also used by listener[0]"},
		{"bad listener address", "[[listener]]\nname = \"a\"\naddress = \"example.com:1\"\n", 3, "listener[0].address", "host must be an IP address"},
		{"bad port", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:99999\"\n", 3, "listener[0].address", "bad port"},
		{"tls key without cert", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ntls_key = \"k.pem\"\n", 1, "listener[0].tls_cert", "tls_key is set but tls_cert is not"},
		{"tls cert without key", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ntls_cert = \"c.pem\"\n", 1, "listener[0].tls_key", "tls_cert is set but tls_key is not"},
		{"client CA without cert", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ntls_client_ca = \"ca.pem\"\n", 4, "listener[0].tls_client_ca", "needs tls_cert"},
		{"id from cert without CA", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_id_from_cert = true\n", 6, "listener[0].client_id_from_cert", "needs tls_client_ca"},
		{"listener override invalid", "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\nsend_queue = 10\n", 7, "listener[1].send_queue", "at least max_payload"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("relayd.toml", []byte(tc.src))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *config.Error", err, err)
			}
			if ce.File != "relayd.toml" || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %s:%d key %q msg %q; want line %d key %q msg containing %q",
					ce.File, ce.Line, ce.Key, ce.Msg, tc.line, tc.key, tc.msg)
			}
			if !strings.HasPrefix(err.Error(), "relayd.toml:") {
				t.Fatalf("message does not start with the file: %s", err)
			}
		})
	}
}

func TestPortZeroIsNeverADuplicate(t *testing.T) {
	src := "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:0\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:0\"\n"
	if _, err := Parse("x.toml", []byte(src)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

func TestLimitsDiff(t *testing.T) {
	a := Default().Limits
	b := a
	b.IdleTimeout = Duration(time.Second)
	b.MaxConnections = 3
	if d := strings.Join(a.Diff(b), ","); d != "idle_timeout,max_connections" {
		t.Fatalf("Diff = %q", d)
	}
	if len(a.Diff(a)) != 0 {
		t.Fatal("Diff of equal limits is not empty")
	}
	b = a
	b.SlowReceiver, b.StallTimeout, b.RateLimit, b.RateBurst, b.LoginsPerIP = "disconnect", 1, 2, 3, 4
	if d := strings.Join(a.Diff(b), ","); d != "slow_receiver,stall_timeout,rate_limit,rate_burst,logins_per_ip" {
		t.Fatalf("Diff of the new limits = %q", d)
	}
}

func TestListenerDiff(t *testing.T) {
	src := "[[listener]]\nname = \"web\"\naddress = \"127.0.0.1:0\"\ntransport = \"websocket\"\n"
	c1, err := Parse("x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse("x.toml", []byte(src+"ws_origins = [\"*\"]\nws_trusted_proxies = [\"10.0.0.1\"]\nproxy_protocol = true\nrate_limit = 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := &c1.Listeners[0], &c2.Listeners[0]
	if d := strings.Join(a.Diff(b), ","); d != "proxy_protocol,ws_origins,ws_trusted_proxies,rate_limit" {
		t.Fatalf("Diff = %q", d)
	}
	if d := a.Diff(a); len(d) != 0 {
		t.Fatalf("Diff of a listener with itself = %v", d)
	}
}
