// Package docs holds the operator documentation; its tests check that the
// man pages in man/ document what they must: every configuration key of
// SPEC §4 and §9-§12 and of relayd.toml.example, relayd's flags and
// signals, relayd-client's flags.
package docs

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func page(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("man/" + name + ".md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// documented reports whether the page has a definition entry (a bold term
// opening a line) for key.
func documented(doc, key string) bool {
	return regexp.MustCompile(`(?m)^\*\*`+regexp.QuoteMeta(key)+`\*\*`).MatchString(doc) ||
		regexp.MustCompile(`(?m)^\*\*[a-z_]+\*\* = .*, \*\*`+regexp.QuoteMeta(key)+`\*\*`).MatchString(doc)
}

// The keys SPEC.md defines, by table.
var specKeys = map[string][]string{
	"server":   {"shutdown_timeout", "drain_period"},
	"log":      {"level", "format", "file", "max_size_mb", "max_backups", "max_age_days", "compress"},
	"admin":    {"address", "pprof", "web_config_file"},
	"reload":   {"watch"},
	"limits":   {"max_payload", "send_queue", "login_timeout", "idle_timeout", "write_timeout", "max_connections", "max_connections_per_ip", "slow_receiver", "stall_timeout", "rate_limit", "rate_burst", "logins_per_ip"},
	"listener": {"name", "address", "tls_cert", "tls_key", "tls_client_ca", "client_id_from_cert", "tls_min_version", "client_id_from_token", "proxy_protocol", "transport", "ws_path", "ws_origins", "ws_trusted_proxies"},
	"auth":     {"jwt_key_file", "jwt_audience"},
	"cluster":  {"name", "node_id", "nats_urls", "nats_credentials", "nats_user", "nats_password", "nats_tls_ca", "nats_tls_cert", "nats_tls_key", "node_timeout"},
}

func TestConfigPageDocumentsEveryKey(t *testing.T) {
	doc := page(t, "relayd.toml.5")
	for table, keys := range specKeys {
		head := "# [" + table + "]"
		if table == "listener" {
			head = "# [[listener]]"
		}
		i := strings.Index(doc, "\n"+head+"\n")
		if i < 0 {
			t.Errorf("relayd.toml(5) has no section %q", head)
			continue
		}
		section := doc[i+1:]
		if j := strings.Index(section[len(head):], "\n# "); j >= 0 {
			section = section[:len(head)+j]
		}
		for _, k := range keys {
			if !documented(section, k) {
				t.Errorf("relayd.toml(5) %s does not document %s", head, k)
			}
		}
	}
}

// Keys the example config shows, set or commented out, are documented too,
// so that a key added there without a man page entry is caught.
func TestConfigPageDocumentsTheExampleKeys(t *testing.T) {
	doc := page(t, "relayd.toml.5")
	example, err := os.ReadFile("../relayd.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	keys := regexp.MustCompile(`(?m)^#?\s*([a-z][a-z0-9_]*)\s*=`).FindAllStringSubmatch(string(example), -1)
	if len(keys) < 20 {
		t.Fatalf("found only %d keys in relayd.toml.example", len(keys))
	}
	for _, m := range keys {
		if !documented(doc, m[1]) {
			t.Errorf("relayd.toml(5) does not document %s, which relayd.toml.example has", m[1])
		}
	}
}

func TestRelaydPage(t *testing.T) {
	doc := page(t, "relayd.8")
	for _, want := range []string{"**-c** *FILE*", "**-t**, **--check**", "**--version**", "*PORT*",
		"**SIGHUP**", "**SIGTERM**, **SIGINT**", "**SIGUSR1**", "**SIGUSR2**", "drain_period",
		"# EXIT STATUS", "# FILES", "/etc/relayd/relayd.toml", "/clients", "/clients/kick", "/debug/pprof/"} {
		if !strings.Contains(doc, want) {
			t.Errorf("relayd(8) lacks %q", want)
		}
	}
}

// Every flag relayd-client -h lists has an entry in relayd-client(1).
func TestClientPageDocumentsEveryFlag(t *testing.T) {
	doc := page(t, "relayd-client.1")
	out, _ := exec.Command("go", "run", "../cmd/relayd-client", "-h").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(string(out), -1)
	if len(flags) < 10 {
		t.Fatalf("relayd-client -h listed %d flags:\n%s", len(flags), out)
	}
	for _, f := range flags {
		if !regexp.MustCompile(`(?m)^\*\*--` + f[1] + `\*\*|, \*\*--` + f[1] + `\*\*`).MatchString(doc) {
			t.Errorf("relayd-client(1) does not document --%s", f[1])
		}
	}
}
