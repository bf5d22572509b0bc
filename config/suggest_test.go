package config

import (
	"slices"
	"strings"
	"testing"
)

func TestUnknownKeySuggestions(t *testing.T) {
	const l = "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\n"
	tests := []struct {
		name string
		src  string
		line int
		key  string
		msg  string // the whole message
	}{
		{"typo", "[limits]\n\nidle_timout = \"1s\"\n", 3, "limits.idle_timout", "unknown key (did you mean idle_timeout?)"},
		{"transposition", "[limits]\nrate_brust = 1\n", 2, "limits.rate_brust", "unknown key (did you mean rate_burst?)"},
		{"two edits", "[limits]\nmax_conections_per_p = 1\n", 2, "limits.max_conections_per_p", "unknown key (did you mean max_connections_per_ip?)"},
		{"unique prefix", "[limits]\nstall = \"1s\"\n", 2, "limits.stall", "unknown key (did you mean stall_timeout?)"},
		{"ambiguous prefix", "[limits]\nmax_conn = 1\n", 2, "limits.max_conn", "unknown key"},
		{"nothing close", "[limits]\nbananas = 1\n", 2, "limits.bananas", "unknown key"},
		{"short key", "\nfoo = 1\n", 2, "foo", "unknown key"},
		{"table", "[limit]\nmax_payload = 1\n", 1, "limit", "unknown key (did you mean limits?)"},
		{"top-level typo", "[clustr]\n", 1, "clustr", "unknown key (did you mean cluster?)"},
		{"same table only", "[log]\nidle_timeout = \"1s\"\n", 2, "log.idle_timeout", "unknown key"},
		{"listener key", l + "tls_cret = \"c\"\n", 4, "listener[0].tls_cret", "unknown key (did you mean tls_cert?)"},
		{"limit key in listener", l + "idle_timout = \"1s\"\n", 4, "listener[0].idle_timout", "unknown key (did you mean idle_timeout?)"},
		{"which listener", l + "[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\nws_orgins = []\n", 7, "listener[1].ws_orgins", "unknown key (did you mean ws_origins?)"},
		{"cluster key", "[cluster]\nnats_url = []\n", 2, "cluster.nats_url", "unknown key (did you mean nats_urls?)"},
		{"auth key", "[auth]\njwt_keyfile = \"k\"\n", 2, "auth.jwt_keyfile", "unknown key (did you mean jwt_key_file?)"},
		{"admin key", "[admin]\nprof = true\n", 2, "admin.prof", "unknown key (did you mean pprof?)"},
		{"server key", "[server]\ndrain = \"1s\"\n", 2, "server.drain", "unknown key (did you mean drain_period?)"},
		{"nested unknown table", "[limits.extra]\nx = 1\n", 1, "limits.extra", "unknown key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ce := parseError(t, tc.src)
			if ce.Line != tc.line || ce.Key != tc.key || ce.Msg != tc.msg {
				t.Fatalf("got %d %q %q; want %d %q %q", ce.Line, ce.Key, ce.Msg, tc.line, tc.key, tc.msg)
			}
		})
	}
}

// The suggestions come from the schema itself, so every key a table
// accepts is offered and no key of another table is.
func TestKnownKeysFollowTheSchema(t *testing.T) {
	for _, tc := range []struct {
		table []string
		some  []string
		none  []string
	}{
		{nil, []string{"server", "log", "admin", "reload", "limits", "listener", "auth", "cluster"}, []string{"File", "Listeners", "src"}},
		{[]string{"limits"}, []string{"max_payload", "slow_receiver", "stall_timeout", "rate_limit", "rate_burst", "logins_per_ip"}, []string{"name"}},
		{[]string{"listener"}, []string{"name", "tls_min_version", "client_id_from_token", "proxy_protocol", "transport", "ws_path", "ws_origins", "ws_trusted_proxies", "idle_timeout", "logins_per_ip"}, []string{"level"}},
		{[]string{"cluster"}, []string{"name", "node_id", "nats_urls", "nats_credentials", "nats_user", "nats_password", "nats_tls_ca", "nats_tls_cert", "nats_tls_key", "node_timeout"}, nil},
		{[]string{"limits", "max_payload"}, nil, nil},
		{[]string{"nosuch"}, nil, nil},
	} {
		got := knownKeys(tc.table)
		for _, k := range tc.some {
			if !slices.Contains(got, k) {
				t.Errorf("%v: %q missing from %v", tc.table, k, got)
			}
		}
		for _, k := range tc.none {
			if slices.Contains(got, k) {
				t.Errorf("%v: %q should not be offered", tc.table, k)
			}
		}
		if tc.some == nil && len(got) != 0 {
			t.Errorf("%v: %v, want none", tc.table, got)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"a", "", 1}, {"", "abc", 3}, {"abc", "abc", 0},
		{"idle_timout", "idle_timeout", 1}, {"rate_brust", "rate_burst", 1},
		{"kitten", "sitting", 3}, {"ca", "abc", 3}, {"ab", "ba", 1},
	} {
		if d := editDistance(tc.a, tc.b); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, d, tc.d)
		}
		if d := editDistance(tc.b, tc.a); d != tc.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.b, tc.a, d, tc.d)
		}
	}
	if s := suggest("x", []string{"y"}); s != "" {
		t.Errorf("one-letter key: suggested %q", s)
	}
	if s := suggest("ab", strings.Fields("abc abd")); s != "" {
		t.Errorf("tie: suggested %q", s)
	}
}
