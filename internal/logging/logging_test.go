package logging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/syncbuf"
)

// lumberjack's mill goroutine outlives Close (natefinch/lumberjack#56).
var ignoreMill = goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, ignoreMill) }

type buffer = syncbuf.Buffer

func logCfg(level, format, file string) config.Log {
	c := config.Default().Log
	c.Level, c.Format, c.File = level, format, file
	return c
}

func TestLevelAndFormatReload(t *testing.T) {
	var stderr buffer
	l, err := New(logCfg("info", "text", ""), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	derived := l.With("component", "test") // must follow reloads too
	l.Debug("hidden")
	derived.Info("text line")

	commit, err := l.Prepare(logCfg("debug", "json", ""))
	if err != nil {
		t.Fatal(err)
	}
	l.Debug("still hidden before commit")
	commit()
	l.Debug("shown")
	derived.Info("json line")

	out := stderr.String()
	if strings.Contains(out, "hidden") {
		t.Fatalf("debug logged at info level:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "time=") || !strings.Contains(lines[0], "component=test") {
		t.Fatalf("output:\n%s", out)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e["component"] != "test" || e["msg"] != "json line" {
		t.Fatalf("after the reload, %q is not the expected JSON (%v)", lines[2], err)
	}
}

func TestFileAndRotate(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "sub", "relayd.log")
	var stderr buffer
	cfg := logCfg("info", "text", file)
	cfg.Compress = false // compression runs in the background: keep the file count exact
	l, err := New(cfg, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("first")
	if err := l.Rotate(); err != nil {
		t.Fatal(err)
	}
	l.Info("second")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Info("after close goes to stderr")

	cur, _ := os.ReadFile(file)
	if !strings.Contains(string(cur), "second") || strings.Contains(string(cur), "first") {
		t.Fatalf("current file:\n%s", cur)
	}
	backups, _ := filepath.Glob(filepath.Join(dir, "sub", "relayd-*.log*"))
	if len(backups) != 1 {
		t.Fatalf("backups: %v", backups)
	}
	if !strings.Contains(stderr.String(), "after close") || strings.Contains(stderr.String(), "first") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

func TestPrepareFailureChangesNothing(t *testing.T) {
	var stderr buffer
	l, err := New(logCfg("info", "text", ""), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	os.WriteFile(blocker, nil, 0o600)
	if _, err := l.Prepare(logCfg("debug", "json", filepath.Join(blocker, "relayd.log"))); err == nil {
		t.Fatal("a log file under a regular file was accepted")
	}
	l.Debug("hidden")
	l.Info("still text on stderr")
	if out := stderr.String(); strings.Contains(out, "hidden") || !strings.HasPrefix(out, "time=") {
		t.Fatalf("a failed Prepare changed the logger:\n%s", out)
	}
}
