// Package prometheus holds the Prometheus scrape config and alerting rules
// for relayd; this test checks the rules with promtool and runs their unit
// tests (alerts_test.yml).
//
// promtool comes with Debian's prometheus package. Without it the test
// skips, unless RELAYD_REQUIRE_PROMTOOL or RELAYD_REQUIRE_PACKAGE_TESTS is
// set (as .ci/run does), in which case it fails.
package prometheus

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err == nil {
		return path
	}
	msg := "promtool not found (apt-get install prometheus)"
	if os.Getenv("RELAYD_REQUIRE_PROMTOOL") != "" || os.Getenv("RELAYD_REQUIRE_PACKAGE_TESTS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func TestAlertRules(t *testing.T) {
	bin := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}

// The rules use only metrics relayd exports (SPEC §7, §9) and the process
// collector's, so that a renamed metric cannot leave an alert silent.
var metricName = regexp.MustCompile(`\b(up|process_[a-z_]+|relayd_[a-z_]+)\b`)

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	exported := map[string]bool{
		"up": true, "process_open_fds": true, "process_max_fds": true,
		"relayd_connections": true, "relayd_frames_forwarded_total": true, "relayd_frames_dropped_total": true,
		"relayd_disconnects_total": true, "relayd_config_last_reload_successful": true, "relayd_cluster_connected": true,
	}
	rules, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	inExpr := false
	for _, line := range strings.Split(string(rules), "\n") {
		field := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(field, "expr:"):
			inExpr = true
		case strings.HasPrefix(field, "for:"), strings.HasPrefix(field, "labels:"), strings.HasPrefix(field, "#"):
			inExpr = false
		}
		if !inExpr {
			continue
		}
		for _, name := range metricName.FindAllString(strings.TrimPrefix(field, "expr:"), -1) {
			seen[name] = true
			if !exported[name] {
				t.Errorf("alerts.yml uses %s, which relayd does not export", name)
			}
		}
	}
	for name := range exported {
		if !seen[name] {
			t.Errorf("no rule uses %s (the brief's alerts need it)", name)
		}
	}
}
