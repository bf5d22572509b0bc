package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Check reads every file the configuration names, hands the JWT keys and
// the admin web config to their parsers when those are plugged in, and
// never contacts NATS.
func TestCheckReadsEveryFile(t *testing.T) {
	stubHostname(t, "node", nil)
	f := writeTLSFiles(t)
	for _, name := range []string{"web.yml", "jwt.pem", "nats.creds"} {
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := func(edit func(string) string) string {
		src := fmt.Sprintf(`[admin]
address = "127.0.0.1:0"
web_config_file = "web.yml"

[auth]
jwt_key_file = "jwt.pem"

[cluster]
nats_urls = ["nats://192.0.2.1:4222"]
nats_credentials = "nats.creds"
nats_tls_ca = %q
nats_tls_cert = %q
nats_tls_key = %q
`, f.ca, f.cert, f.key)
		if edit != nil {
			src = edit(src)
		}
		return src
	}
	replace := func(old, new string) func(string) string {
		return func(s string) string { return strings.Replace(s, old, new, 1) }
	}
	path := filepath.Join(f.dir, "relayd.toml")
	check := func(src string) error {
		c, err := Parse(path, []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return c.Check()
	}

	// All readable; 192.0.2.1 (TEST-NET-1) is never dialled.
	if err := check(cfg(nil)); err != nil {
		t.Fatalf("valid files: %v", err)
	}

	tests := []struct {
		name string
		edit func(string) string
		line int
		key  string
		msg  string
	}{
		{"web config missing", replace("web.yml", "nope.yml"), 3, "admin.web_config_file", "open " + filepath.Join(f.dir, "nope.yml")},
		{"web config is a directory", replace(`"web.yml"`, `"."`), 3, "admin.web_config_file", "is a directory"},
		{"jwt keys missing", replace("jwt.pem", "nope.pem"), 6, "auth.jwt_key_file", "no such file"},
		{"credentials missing", replace("nats.creds", "nope.creds"), 10, "cluster.nats_credentials", "no such file"},
		{"NATS CA missing", replace(f.ca, filepath.Join(f.dir, "nope-ca.pem")), 11, "cluster.nats_tls_ca", "read CA"},
		{"NATS CA garbage", replace(f.ca, f.garbage), 11, "cluster.nats_tls_ca", "holds no PEM certificate"},
		{"NATS key mismatch", replace(f.key, f.otherKey), 12, "cluster.nats_tls_cert", "load certificate " + f.cert + " and key " + f.otherKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ce *Error
			if err := check(cfg(tc.edit)); !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want *config.Error", err, err)
			}
			if ce.File != path || ce.Line != tc.line || ce.Key != tc.key || !strings.Contains(ce.Msg, tc.msg) {
				t.Fatalf("got %s:%d %q %q; want line %d key %q msg containing %q", ce.File, ce.Line, ce.Key, ce.Msg, tc.line, tc.key, tc.msg)
			}
		})
	}

	t.Run("parsers plugged in", func(t *testing.T) {
		var jwtPath, webPath string
		CheckJWTKeys = func(p string) error { jwtPath = p; return errors.New("line 1: not a PEM block") }
		CheckWebConfig = func(p string) error { webPath = p; return nil }
		t.Cleanup(func() { CheckJWTKeys, CheckWebConfig = nil, nil })
		err := check(cfg(nil))
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "auth.jwt_key_file" || ce.Line != 6 || ce.Msg != "line 1: not a PEM block" {
			t.Fatalf("err = %v", err)
		}
		if jwtPath != filepath.Join(f.dir, "jwt.pem") || webPath != filepath.Join(f.dir, "web.yml") {
			t.Fatalf("parsers got %q and %q, want the resolved paths", jwtPath, webPath)
		}
	})
}
