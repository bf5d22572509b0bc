package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func convert(t *testing.T, md, version string) string {
	t.Helper()
	sections, err := parse(strings.NewReader(md))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := write(&b, sections, version, time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// The project's CHANGELOG.md converts into a changelog dpkg accepts, with
// this batch's features in the newest entry.
func TestProjectChangelog(t *testing.T) {
	md, err := os.ReadFile("../../CHANGELOG.md")
	if err != nil {
		t.Fatal(err)
	}
	out := convert(t, string(md), "9.9.9")
	if !strings.HasPrefix(out, "relayd (9.9.9-1) unstable; urgency=medium\n") {
		t.Fatalf("first entry:\n%s", out[:min(len(out), 300)])
	}
	newest, _, _ := strings.Cut(out, "\n -- ")
	for _, want := range []string{"Lossless flow control", "Cluster mode", "WebSocket", "Signed logins", "Rate limits",
		"PROXY protocol", "TLS policy", "Admin API", "Drain"} {
		if !strings.Contains(newest, want) {
			t.Errorf("the unreleased entry does not mention %q", want)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if len(line) > 80 {
			t.Errorf("line %d is %d characters long: %q", i+1, len(line), line)
		}
	}
	if strings.ContainsAny(out, "`") {
		t.Error("markdown backquotes left in the changelog")
	}
	// dpkg's own parser, where it is installed (dpkg-dev).
	if _, err := exec.LookPath("dpkg-parsechangelog"); err == nil {
		f := filepath.Join(t.TempDir(), "changelog")
		if err := os.WriteFile(f, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := exec.Command("dpkg-parsechangelog", "-l", f, "--all", "--format", "rfc822").CombinedOutput()
		if err != nil || bytes.Contains(got, []byte("warning")) {
			t.Fatalf("dpkg-parsechangelog: %v\n%s", err, got)
		}
		if n := bytes.Count(got, []byte("\nVersion: ")) + 1; n < 4 {
			t.Errorf("dpkg-parsechangelog saw %d entries:\n%s", n, got)
		}
	}
}

const sample = `# Changelog

## [Unreleased]

### Added

- A new ` + "`key`" + ` and a [link](https://example.com)
  spanning two lines.

## [1.2.0] - 2026-11-25

### Fixed

- A bug.

[1.2.0]: https://example.com
`

func TestEntries(t *testing.T) {
	got := convert(t, sample, "1.3.0")
	want := `relayd (1.3.0-1) unstable; urgency=medium

  * Added: A new key and a link spanning two lines.

 -- relayd maintainers <relayd@example.com>  Wed, 02 Dec 2026 10:00:00 +0000

relayd (1.2.0-1) unstable; urgency=medium

  * Fixed: A bug.

 -- relayd maintainers <relayd@example.com>  Wed, 25 Nov 2026 00:00:00 +0000
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	// A build of the newest release itself has no unreleased entry.
	if got := convert(t, sample, "1.2.0"); !strings.HasPrefix(got, "relayd (1.2.0-1)") || strings.Count(got, "relayd (") != 1 {
		t.Errorf("release build:\n%s", got)
	}
}

func TestBadHeadings(t *testing.T) {
	for _, md := range []string{
		"## 1.2.0\n",           // no brackets
		"## [1.2.0]\n",         // a release without a date
		"# Changelog\nnothing", // no sections
	} {
		if _, err := parse(strings.NewReader(md)); err == nil {
			t.Errorf("%q: no error", md)
		}
	}
}

func TestWrap(t *testing.T) {
	long := strings.Repeat("word ", 40)
	out := convert(t, "## [Unreleased]\n### Added\n- "+long+"\n", "1.0.0")
	for _, line := range strings.Split(out, "\n") {
		if len(line) > width {
			t.Errorf("%d > %d: %q", len(line), width, line)
		}
	}
}
