package server

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/relayd/relayd/internal/syncbuf"
)

// Client-supplied IDs are quoted in logs: an ID holding a newline cannot
// forge a log line, in either format.
func TestIDsCannotForgeLogLines(t *testing.T) {
	forged := "mallory\ntime=2026-01-01T00:00:00Z level=ERROR msg=forged\n{\"msg\":\"forged\"}"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var out syncbuf.Buffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			var h slog.Handler = slog.NewTextHandler(&out, opts)
			if format == "json" {
				h = slog.NewJSONHandler(&out, opts)
			}
			s := New(slog.New(h), nil)
			if err := s.Apply(testConfig(nil)); err != nil {
				t.Fatal(err)
			}
			addr := s.Addrs()["plain"].String()
			c := dialRaw(t, addr)
			mustWrite(t, c, loginFrame(forged))
			waitOnline(t, s, forged)
			c.Close()
			eventually(t, "the disconnect to be logged", func() bool { return strings.Contains(out.String(), "disconnect") })
			if err := s.Shutdown(t.Context()); err != nil {
				t.Fatal(err)
			}

			lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
			logins := 0
			for _, line := range lines {
				if strings.Contains(line, "forged") && !strings.Contains(line, "mallory") {
					t.Fatalf("forged line in the log: %q", line)
				}
				if format == "json" {
					var e map[string]any
					if err := json.Unmarshal([]byte(line), &e); err != nil {
						t.Fatalf("not one JSON object per line: %q", line)
					}
					if e["client_id"] == forged && e["msg"] == "login" {
						logins++
					}
				} else if strings.HasPrefix(line, "time=") && strings.Contains(line, "msg=login") {
					if !strings.Contains(line, `client_id="mallory\ntime=`) {
						t.Fatalf("ID not quoted: %q", line)
					}
					logins++
				} else if !strings.HasPrefix(line, "time=") {
					t.Fatalf("a line that slog did not start: %q", line)
				}
			}
			if logins != 1 {
				t.Fatalf("%d login lines with the whole ID, want 1:\n%s", logins, out.String())
			}
		})
	}
}
