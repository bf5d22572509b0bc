package config

import (
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// stubHostname makes the host name what cluster.node_id defaults to.
func stubHostname(t *testing.T, name string, err error) {
	t.Helper()
	old := hostname
	hostname = func() (string, error) { return name, err }
	t.Cleanup(func() { hostname = old })
}

func TestParseNewKeys(t *testing.T) {
	stubHostname(t, "unused", nil)
	src := `
[server]
drain_period = "1m"

[admin]
pprof = true
web_config_file = "web.yml"

[limits]
slow_receiver = "disconnect"
stall_timeout = "1s"
rate_limit = "1MiB"
rate_burst = "64KiB"
logins_per_ip = 5

[auth]
jwt_key_file = "jwt.pem"
jwt_audience = "relayd.example.com"

[cluster]
name = "prod_eu-1"
node_id = "node-7"
nats_urls = ["nats://10.0.0.1:4222", "tls://nats.example.com", "wss://nats.example.com:443/ws"]
nats_user = "relayd"
nats_password = "s3cret"
nats_tls_ca = "nats/ca.pem"
nats_tls_cert = "/abs/cert.pem"
nats_tls_key = "nats/key.pem"
node_timeout = "9s"

[[listener]]
name = "plain"
address = "0.0.0.0:33333"
proxy_protocol = true
client_id_from_token = true

[[listener]]
name = "tls13"
address = "[::]:33443"
tls_cert = "cert.pem"
tls_key = "key.pem"
tls_min_version = "1.3"
slow_receiver = "drop"
stall_timeout = "2s"
rate_limit = 0
rate_burst = 100
logins_per_ip = 0

[[listener]]
name = "web"
address = "0.0.0.0:8080"
transport = "websocket"
ws_origins = ["app.example.com", "*.example.com"]
ws_trusted_proxies = ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "2001:db8::1", "172.16.1.1/12"]

[[listener]]
name = "wss"
address = "0.0.0.0:8443"
transport = "websocket"
ws_path = "/ws/v1"
tls_cert = "cert.pem"
tls_key = "key.pem"
`
	c, err := Parse("/etc/relayd/relayd.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.DrainPeriod.D() != time.Minute {
		t.Errorf("drain_period = %s", c.Server.DrainPeriod)
	}
	if a := c.Admin; a == nil || !a.Pprof || a.WebConfigFile != "/etc/relayd/web.yml" || a.Address != DefaultAdminAddress {
		t.Errorf("admin = %+v", a)
	}
	if a := c.Auth; a == nil || a.JWTKeyFile != "/etc/relayd/jwt.pem" || a.JWTAudience != "relayd.example.com" {
		t.Errorf("auth = %+v", a)
	}
	want := Cluster{
		Name: "prod_eu-1", NodeID: "node-7",
		NATSURLs: []string{"nats://10.0.0.1:4222", "tls://nats.example.com", "wss://nats.example.com:443/ws"},
		NATSUser: "relayd", NATSPassword: "s3cret",
		NATSTLSCA: "/etc/relayd/nats/ca.pem", NATSTLSCert: "/abs/cert.pem", NATSTLSKey: "/etc/relayd/nats/key.pem",
		NodeTimeout: Duration(9 * time.Second),
	}
	if cl := c.Cluster; cl == nil || !equalCluster(*cl, want) {
		t.Errorf("cluster = %+v\nwant      %+v", cl, want)
	}

	global := Limits{
		MaxPayload: 8 << 20, SendQueue: 16 << 20,
		LoginTimeout: Duration(10 * time.Second), IdleTimeout: Duration(2 * time.Minute), WriteTimeout: Duration(10 * time.Second),
		SlowReceiver: "disconnect", StallTimeout: Duration(time.Second), RateLimit: 1 << 20, RateBurst: 64 << 10, LoginsPerIP: 5,
	}
	plain, tls13, web, wss := c.Listeners[0], c.Listeners[1], c.Listeners[2], c.Listeners[3]
	if plain.Limits != global || !plain.ProxyProtocol || !plain.ClientIDFromToken || plain.Transport != "tcp" ||
		plain.TLSMinVersion != "" || plain.WSPath != "" || plain.WSOrigins != nil || plain.WSTrustedProxies != nil {
		t.Errorf("plain = %+v", plain)
	}
	// Every new limit key is overridable per listener.
	overridden := global
	overridden.SlowReceiver, overridden.StallTimeout = "drop", Duration(2*time.Second)
	overridden.RateLimit, overridden.RateBurst, overridden.LoginsPerIP = 0, 100, 0
	if tls13.Limits != overridden || tls13.TLSMinVersion != "1.3" || tls13.ProxyProtocol {
		t.Errorf("tls13 = %+v", tls13)
	}
	if web.Transport != "websocket" || !web.WebSocket() || web.WSPath != "/relay" ||
		!slices.Equal(web.WSOrigins, []string{"app.example.com", "*.example.com"}) {
		t.Errorf("web = %+v", web)
	}
	wantProxies := []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32"),
		netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2001:db8::1/128"),
		netip.MustParsePrefix("172.16.0.0/12"), // masked
	}
	if !slices.Equal(web.WSTrustedProxies, wantProxies) {
		t.Errorf("ws_trusted_proxies = %v, want %v", web.WSTrustedProxies, wantProxies)
	}
	if wss.WSPath != "/ws/v1" || !wss.TLS() || wss.TLSMinVersion != "1.2" || wss.WSOrigins != nil {
		t.Errorf("wss = %+v", wss)
	}
}

func equalCluster(a, b Cluster) bool { return reflect.DeepEqual(a, b) }

func TestOptionalSectionsDefaults(t *testing.T) {
	stubHostname(t, "relay-3.eu.example.com", nil)
	c, err := Parse("x.toml", []byte("[cluster]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{Name: "relayd", NodeID: "relay-3-eu-example-com", NATSURLs: []string{"nats://127.0.0.1:4222"}, NodeTimeout: Duration(5 * time.Second)}
	if c.Cluster == nil || !equalCluster(*c.Cluster, want) {
		t.Fatalf("[cluster] defaults = %+v, want %+v", c.Cluster, want)
	}
	if c.Auth != nil || c.Admin != nil {
		t.Fatalf("absent sections are not nil: auth %+v admin %+v", c.Auth, c.Admin)
	}
	c, err = Parse("x.toml", []byte("[admin]\npprof = true\n"))
	if err != nil || c.Cluster != nil || c.Admin.Address != DefaultAdminAddress || !c.Admin.Pprof {
		t.Fatalf("admin = %+v, cluster = %+v, %v", c.Admin, c.Cluster, err)
	}
	// node_id = "" also means the host name (SPEC §9).
	if c, err = Parse("x.toml", []byte("[cluster]\nnode_id = \"\"\n")); err != nil || c.Cluster.NodeID != "relay-3-eu-example-com" {
		t.Fatalf("node_id = \"\": %+v, %v", c.Cluster, err)
	}
}

func TestNodeIDWithoutHostname(t *testing.T) {
	stubHostname(t, "", errors.New("uname failed"))
	err := parseError(t, "[cluster]\nname = \"x\"\n")
	if err.Key != "cluster.node_id" || err.Line != 1 || !strings.Contains(err.Msg, "uname failed") || !strings.Contains(err.Msg, "set node_id") {
		t.Fatalf("err = %v", err)
	}
	stubHostname(t, "unused", nil)
	if _, err := Parse("x.toml", []byte("[cluster]\nnode_id = \"n1\"\n")); err != nil {
		t.Fatalf("an explicit node_id needs no host name: %v", err)
	}
}

func parseError(t *testing.T, src string) *Error {
	t.Helper()
	_, err := Parse("relayd.toml", []byte(src))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v (%T), want *config.Error", err, err)
	}
	return ce
}

// Each new rule fails with the file, line and key to fix.
func TestNewKeyErrors(t *testing.T) {
	stubHostname(t, "node", nil)
	const l = "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n" // lines 1-3
	const tlsl = l + "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\n"      // lines 4-5
	const ws = l + "transport = \"websocket\"\n"                        // line 4
	const auth = "[auth]\njwt_key_file = \"k.pem\"\n"
	tests := []struct {
		name string
		src  string
		line int
		key  string
		msg  string
	}{
		{"drain_period zero", "[server]\ndrain_period = \"0s\"\n", 2, "server.drain_period", "must be positive"},
		{"unknown slow_receiver", "[limits]\nslow_receiver = \"block\"\n", 2, "limits.slow_receiver", `want drop or disconnect, got "block"`},
		{"listener slow_receiver", l + "slow_receiver = \"\"\n", 4, "listener[0].slow_receiver", "want drop or disconnect"},
		{"stall_timeout zero", "[limits]\nstall_timeout = \"0s\"\n", 2, "limits.stall_timeout", "must be positive"},
		{"listener stall_timeout negative", l + "stall_timeout = \"-1ms\"\n", 4, "listener[0].stall_timeout", "must be positive"},
		{"rate_limit negative", "[limits]\nrate_limit = -1\n", 2, "limits.rate_limit", "invalid size"},
		{"rate_burst not a size", l + "rate_burst = \"lots\"\n", 4, "listener[0].rate_burst", "invalid size"},
		{"logins_per_ip negative", "[limits]\nlogins_per_ip = -2\n", 2, "limits.logins_per_ip", "must not be negative"},
		{"listener logins_per_ip negative", l + "logins_per_ip = -1\n", 4, "listener[0].logins_per_ip", "must not be negative"},

		{"unknown transport", l + "transport = \"udp\"\n", 4, "listener[0].transport", `want tcp or websocket, got "udp"`},
		{"empty transport", l + "transport = \"\"\n", 4, "listener[0].transport", `want tcp or websocket, got ""`},
		{"ws_path on tcp", l + "ws_path = \"/x\"\n", 4, "listener[0].ws_path", `applies only to transport = "websocket"`},
		{"ws_path on explicit tcp", l + "transport = \"tcp\"\nws_path = \"\"\n", 5, "listener[0].ws_path", `applies only to transport = "websocket"`},
		{"ws_origins on tcp", l + "ws_origins = []\n", 4, "listener[0].ws_origins", "applies only to transport"},
		{"ws_trusted_proxies on tcp", l + "ws_trusted_proxies = [\"10.0.0.0/8\"]\n", 4, "listener[0].ws_trusted_proxies", "applies only to transport"},
		{"transport error first", l + "transport = \"ws\"\nws_path = \"/x\"\n", 4, "listener[0].transport", "want tcp or websocket"},
		{"ws_path without slash", ws + "ws_path = \"relay\"\n", 5, "listener[0].ws_path", `want a URL path starting with "/"`},
		{"ws_path empty", ws + "ws_path = \"\"\n", 5, "listener[0].ws_path", "starting with"},
		{"ws_path with query", ws + "ws_path = \"/r?x=1\"\n", 5, "listener[0].ws_path", "no query"},
		{"origin is a URL", ws + "ws_origins = [\"https://app.example.com\"]\n", 5, "listener[0].ws_origins", `"https://app.example.com": want a host pattern`},
		{"origin with port", ws + "ws_origins = [\"app.example.com:8443\"]\n", 5, "listener[0].ws_origins", "without port"},
		{"origin inner wildcard", ws + "ws_origins = [\"app.*.com\"]\n", 5, "listener[0].ws_origins", "wildcard only as the whole first label"},
		{"origin bare suffix wildcard", ws + "ws_origins = [\"*example.com\"]\n", 5, "listener[0].ws_origins", "wildcard only"},
		{"origin empty", ws + "ws_origins = [\"ok.example\", \"\"]\n", 5, "listener[0].ws_origins", `entry "": want a host pattern`},
		{"origin wildcard IP", ws + "ws_origins = [\"*.10.0.0.1\"]\n", 5, "listener[0].ws_origins", ""},
		{"bad trusted proxy", ws + "ws_trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", 5, "listener[0].ws_trusted_proxies", `"10.0.0.0/33" is neither a CIDR`},
		{"hostname trusted proxy", ws + "ws_trusted_proxies = [\"proxy.local\"]\n", 5, "listener[0].ws_trusted_proxies", `"proxy.local"`},

		{"tls_min_version without TLS", l + "tls_min_version = \"1.2\"\n", 4, "listener[0].tls_min_version", "applies only to TLS listeners"},
		{"tls_min_version 1.1", tlsl + "tls_min_version = \"1.1\"\n", 6, "listener[0].tls_min_version", `want "1.2" or "1.3", got "1.1"`},
		{"tls_min_version number", tlsl + "tls_min_version = 1.3\n", 6, "listener[0].tls_min_version", "incompatible types"},
		{"tls_min_version empty", tlsl + "tls_min_version = \"\"\n", 6, "listener[0].tls_min_version", `got ""`},
		{"token without auth", l + "client_id_from_token = true\n", 4, "listener[0].client_id_from_token", "needs an [auth] section with jwt_key_file"},
		{"token and cert", auth + tlsl + "tls_client_ca = \"ca.pem\"\nclient_id_from_cert = true\nclient_id_from_token = true\n", 10, "listener[0].client_id_from_token", "exclusive"},
		{"auth without key file", "[auth]\njwt_audience = \"x\"\n", 1, "auth.jwt_key_file", "required in [auth]"},
		{"unknown auth key", "[auth]\njwt_key = \"x\"\n", 2, "auth.jwt_key", "unknown key"},

		{"cluster name with dot", "[cluster]\nname = \"a.b\"\n", 2, "cluster.name", `one NATS subject token), got "a.b"`},
		{"cluster name empty", "[cluster]\nname = \"\"\n", 2, "cluster.name", "subject token"},
		{"cluster name wildcard", "[cluster]\nname = \"*\"\n", 2, "cluster.name", "subject token"},
		{"node_id with space", "[cluster]\nnode_id = \"node 1\"\n", 2, "cluster.node_id", `got "node 1"`},
		{"no NATS URL", "[cluster]\nnats_urls = []\n", 2, "cluster.nats_urls", "at least one URL"},
		{"NATS URL without scheme", "[cluster]\nnats_urls = [\"nats://a:4222\", \"127.0.0.1:4222\"]\n", 2, "cluster.nats_urls", `entry 2: "127.0.0.1:4222": want a URL such as "nats://127.0.0.1:4222"`},
		{"NATS URL bad scheme", "[cluster]\nnats_urls = [\"http://a:4222\"]\n", 2, "cluster.nats_urls", "scheme nats, tls, ws or wss"},
		{"NATS URL without host", "[cluster]\nnats_urls = [\"nats://:4222\"]\n", 2, "cluster.nats_urls", "no host"},
		{"NATS URL bad port", "[cluster]\nnats_urls = [\"nats://a:99999\"]\n", 2, "cluster.nats_urls", "bad port"},
		{"NATS URLs in one string", "[cluster]\nnats_urls = [\"nats://a:4222,nats://b:4222\"]\n", 2, "cluster.nats_urls", "one URL per entry"},
		{"NATS URL password hidden", "[cluster]\nnats_urls = [\"http://u:hunter2@a:4222\"]\n", 2, "cluster.nats_urls", "http://u:xxxxx@a:4222"},
		{"credentials and user", "[cluster]\nnats_credentials = \"n.creds\"\nnats_user = \"u\"\n", 2, "cluster.nats_credentials", "exclusive"},
		{"credentials and password", "[cluster]\nnats_password = \"p\"\nnats_credentials = \"n.creds\"\n", 3, "cluster.nats_credentials", "exclusive"},
		{"password without user", "[cluster]\n\nnats_password = \"p\"\n", 3, "cluster.nats_password", "nats_user is not"},
		{"NATS cert without key", "[cluster]\nnats_tls_cert = \"c.pem\"\n", 1, "cluster.nats_tls_key", "nats_tls_cert is set but nats_tls_key is not"},
		{"NATS key without cert", "[cluster]\nnats_tls_key = \"k.pem\"\n", 1, "cluster.nats_tls_cert", "nats_tls_key is set but nats_tls_cert is not"},
		{"node_timeout zero", "[cluster]\nnode_timeout = \"0s\"\n", 2, "cluster.node_timeout", "must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseError(t, tc.src)
			if ce.File != "relayd.toml" || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %s:%d key %q msg %q; want line %d key %q msg containing %q",
					ce.File, ce.Line, ce.Key, ce.Msg, tc.line, tc.key, tc.msg)
			}
			if strings.Contains(ce.Error(), "hunter2") || strings.Contains(ce.Error(), "s3cret") {
				t.Fatalf("a password is in the message: %s", ce)
			}
		})
	}
}

func TestValidOriginPatterns(t *testing.T) {
	for _, p := range []string{"*", "app.example.com", "*.example.com", "localhost", "APP.Example.COM", "192.0.2.7", "[2001:db8::1]", "xn--bcher-kva.example"} {
		if err := checkOriginPattern(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
}

func TestBurst(t *testing.T) {
	l := Limits{MaxPayload: 1000}
	if l.Burst() != 1522 {
		t.Fatalf("unset rate_burst: Burst = %d, want max_payload + 522", l.Burst())
	}
	// Below one frame is allowed: the limiter takes a frame's tokens in pieces.
	l.RateBurst = 10
	if l.Burst() != 10 {
		t.Fatalf("Burst = %d", l.Burst())
	}
	c, err := Parse("x.toml", []byte("[limits]\nrate_limit = 100\nrate_burst = 1\n"))
	if err != nil || c.Listeners[0].Limits.Burst() != 1 {
		t.Fatalf("a one-byte burst: %v", err)
	}
}
