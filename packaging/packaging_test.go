// Package packaging holds the systemd unit, package configuration and
// maintainer scripts; this test builds the .deb and .rpm and proves them:
// contents, lintian, the unit's sandboxing score, install/upgrade/purge
// without systemd, and a full life cycle under a booted systemd in
// systemd-nspawn on an overlay of this machine's root.
//
// It needs root, dpkg, rpm, lintian and systemd-container. Without them it
// skips, unless RELAYD_REQUIRE_PACKAGE_TESTS is set (as .ci/run does), in
// which case it fails.
package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The two builds: an install and its upgrade. boot-test.sh knows them as
// /pkgs/v1 and /pkgs/v2.
var versions = map[string]string{"v1": "1.0.0", "v2": "1.0.1"}

var (
	buildOnce sync.Once
	pkgDir    string // holds v1/ and v2/, each with a .deb and an .rpm
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pkgDir != "" {
		os.RemoveAll(pkgDir)
	}
	os.Exit(code)
}

// needs skips (or, in CI, fails) when the machine cannot run these tests.
func needs(t *testing.T, tools ...string) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("packaging tests need %s (apt-get install rpm lintian systemd-container; run as root)", strings.Join(missing, ", "))
	if os.Getenv("RELAYD_REQUIRE_PACKAGE_TESTS") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// packages builds v1 and v2 of both packages once with `make package`.
func packages(t *testing.T) string {
	t.Helper()
	needs(t, "make", "dpkg-deb", "rpm")
	buildOnce.Do(func() {
		if pkgDir, buildErr = os.MkdirTemp("", "relayd-packages"); buildErr != nil {
			return
		}
		for dir, v := range versions {
			cmd := exec.Command("make", "-C", "..", "package", "VERSION="+v, "DIST="+filepath.Join(pkgDir, dir))
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("make package VERSION=%s: %v\n%s", v, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pkgDir
}

func pkg(t *testing.T, build, glob string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(packages(t), build, glob))
	if len(m) != 1 {
		t.Fatalf("want one %s in %s, found %v", glob, build, m)
	}
	return m[0]
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var packaged = []string{
	"/usr/bin/relayd",
	"/usr/bin/relayd-client",
	"/usr/lib/systemd/system/relayd.service",
	"/etc/relayd/relayd.toml",
	"/usr/lib/sysusers.d/relayd.conf",
	"/usr/lib/tmpfiles.d/relayd.conf",
	"/usr/share/doc/relayd/relayd.toml.example",
	"/usr/share/doc/relayd/README.md",
	"/usr/share/doc/relayd/copyright",
	"/usr/share/man/man8/relayd.8.gz",
	"/usr/share/man/man5/relayd.toml.5.gz",
	"/usr/share/man/man1/relayd-client.1.gz",
}

func TestDebContents(t *testing.T) {
	needs(t, "dpkg-parsechangelog", "man")
	deb := pkg(t, "v1", "*.deb")
	list := run(t, "dpkg-deb", "-c", deb)
	for _, f := range append(packaged, "/usr/share/doc/relayd/changelog.Debian.gz", "/usr/share/doc/relayd/changelog.gz") {
		if !strings.Contains(list, "."+f+"\n") {
			t.Errorf("%s missing from the .deb", f)
		}
	}
	if v := strings.TrimSpace(run(t, "dpkg-deb", "-f", deb, "Version")); v != versions["v1"]+"-1" {
		t.Errorf("Version = %q", v)
	}
	ctrl := t.TempDir()
	run(t, "dpkg-deb", "-e", deb, ctrl)
	conffiles, _ := os.ReadFile(filepath.Join(ctrl, "conffiles"))
	if strings.TrimSpace(string(conffiles)) != "/etc/relayd/relayd.toml" {
		t.Errorf("conffiles = %q", conffiles)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if fi, err := os.Stat(filepath.Join(ctrl, s)); err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("maintainer script %s missing or not executable", s)
		}
	}

	files := t.TempDir()
	run(t, "dpkg-deb", "-x", deb, files)
	if c := readFile(t, filepath.Join(files, "usr/share/doc/relayd/copyright")); !strings.Contains(c, "\nLicense: Apache-2.0\n") {
		t.Errorf("copyright does not give Apache-2.0:\n%s", c)
	}
	// The Debian changelog is generated from CHANGELOG.md: its newest
	// entry is this build, then the releases.
	log := run(t, "dpkg-parsechangelog", "-l", filepath.Join(files, "usr/share/doc/relayd/changelog.Debian.gz"), "--all", "--format", "rfc822")
	if !strings.HasPrefix(log, "Source: relayd\nVersion: "+versions["v1"]+"-1\n") || strings.Count(log, "\nVersion: ") < 3 {
		t.Errorf("changelog.Debian.gz:\n%s", log)
	}
	// The man pages are rendered, versioned and read without warnings.
	for _, m := range []string{"man8/relayd.8.gz", "man5/relayd.toml.5.gz", "man1/relayd-client.1.gz"} {
		out, err := exec.Command("man", "--warnings", "-l", filepath.Join(files, "usr/share/man", m)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "relayd "+versions["v1"]) {
			t.Errorf("man %s: %v\n%.300s", m, err, out)
		}
	}
}

func TestRpmContents(t *testing.T) {
	rpm := pkg(t, "v1", "*.rpm")
	files := run(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", rpm)
	for _, f := range packaged {
		if !strings.Contains(files, f+" ") {
			t.Errorf("%s missing from the .rpm", f)
		}
	}
	// %config(noreplace): an upgrade never overwrites the operator's edit.
	if !strings.Contains(files, "/etc/relayd/relayd.toml cn\n") {
		t.Errorf("relayd.toml is not config+noreplace:\n%s", files)
	}
	scripts := run(t, "rpm", "-qp", "--scripts", rpm)
	for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("no %s", s)
		}
	}
	if v := run(t, "rpm", "-qp", "--qf", "%{VERSION}", rpm); v != versions["v1"] {
		t.Errorf("version = %q", v)
	}
	if l := run(t, "rpm", "-qp", "--qf", "%{LICENSE}", rpm); l != "Apache-2.0" {
		t.Errorf("license = %q", l)
	}
	for _, f := range []string{"/usr/share/licenses/relayd/LICENSE l", "/usr/share/doc/relayd/CHANGELOG.md d", "/usr/share/doc/relayd/README.md d"} {
		if !strings.Contains(files, f+"\n") {
			t.Errorf("no %q in:\n%s", f, files)
		}
	}
}

func TestLintian(t *testing.T) {
	needs(t, "lintian")
	out, _ := exec.Command("lintian", pkg(t, "v1", "*.deb")).CombinedOutput()
	// Clean: no error and no warning (man pages included); info tags are
	// logged.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") || strings.HasPrefix(line, "W: ") {
			t.Errorf("lintian: %s", line)
		}
	}
	t.Logf("lintian:\n%s", out)
}

func TestUnitSandboxing(t *testing.T) {
	needs(t, "systemd-analyze")
	out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "relayd.service").CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for relayd.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	if score > 1.5 {
		t.Fatalf("exposure %.1f, want 1.5 or lower:\n%s", score, out)
	}
	t.Logf("systemd-analyze security: exposure %.1f", score)
}

// rootfs is an overlay of this machine's root with a throwaway upper layer,
// for dpkg and systemd-nspawn to work on without touching the host.
type rootfs struct {
	t      *testing.T
	merged string
}

func newRootfs(t *testing.T) *rootfs {
	t.Helper()
	needs(t, "systemd-nspawn", "dpkg")
	dir := t.TempDir()
	layers := filepath.Join(dir, "layers")
	merged := filepath.Join(dir, "merged")
	for _, d := range []string{layers, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The upper layer lives on its own tmpfs: overlayfs refuses an upper
	// directory inside the lower one's file system tree.
	run(t, "mount", "-t", "tmpfs", "tmpfs", layers)
	t.Cleanup(func() { exec.Command("umount", "-l", layers).Run() })
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(layers, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "mount", "-t", "overlay", "overlay", "-o",
		fmt.Sprintf("lowerdir=/,upperdir=%s/upper,workdir=%s/work", layers, layers), merged)
	t.Cleanup(func() { exec.Command("umount", "-l", merged).Run() })
	// Start from a machine without relayd, whatever the host has.
	for _, p := range []string{"/etc/relayd", "/var/log/relayd", "/usr/bin/relayd"} {
		os.RemoveAll(filepath.Join(merged, p))
	}
	return &rootfs{t: t, merged: merged}
}

func (r *rootfs) path(p string) string { return filepath.Join(r.merged, p) }

func uuid(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/uuid")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// nspawn runs systemd-nspawn on the overlay with the packages at /pkgs.
func (r *rootfs) nspawn(ctx context.Context, extra ...string) *exec.Cmd {
	args := []string{"-q", "-D", r.merged, "--register=no", "--keep-unit", "--link-journal=no", "--uuid=" + uuid(r.t),
		"--private-network", "--bind-ro=" + packages(r.t) + ":/pkgs"}
	return exec.CommandContext(ctx, "systemd-nspawn", append(args, extra...)...)
}

// sh runs a shell command inside the overlay, where no systemd runs, and
// returns its standard output.
func (r *rootfs) sh(script string) string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := r.nspawn(ctx, "--console=pipe", "/bin/sh", "-c", script)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("%s: %v\n%s%s", script, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func (r *rootfs) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

// Install, upgrade with an edited config and purge, with no systemd
// running (a container image or chroot): the scripts must cope.
func TestDebLifecycleWithoutSystemd(t *testing.T) {
	r := newRootfs(t)
	r.sh("dpkg -i /pkgs/v1/*.deb")
	if !strings.Contains(r.sh("getent passwd relayd"), "relayd:") {
		t.Fatal("no relayd user")
	}
	if owner := strings.TrimSpace(r.sh("stat -c '%U %a' /var/log/relayd")); owner != "relayd 750" {
		t.Fatalf("/var/log/relayd: %s", owner)
	}
	if !r.exists("/etc/systemd/system/multi-user.target.wants/relayd.service") {
		t.Fatal("not enabled for the next boot")
	}
	if out := r.sh("relayd -c /etc/relayd/relayd.toml -t"); out != "configuration OK\n" {
		t.Fatalf("packaged config: %q", out)
	}
	if out := r.sh("systemd-analyze verify relayd.service 2>&1"); out != "" {
		t.Fatalf("systemd-analyze verify: %s", out)
	}

	// The operator edits the config and disables the service; an upgrade
	// keeps both.
	conf := r.path("/etc/relayd/relayd.toml")
	edited := strings.Replace(readFile(t, conf), "127.0.0.1:9333", "127.0.0.1:9444", 1)
	if err := os.WriteFile(conf, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	r.sh("systemctl disable relayd.service")
	r.sh("dpkg -i /pkgs/v2/*.deb")
	if v := strings.TrimSpace(r.sh("dpkg-query -W -f '${Version}' relayd")); v != versions["v2"]+"-1" {
		t.Fatalf("version after upgrade: %s", v)
	}
	if got := readFile(t, conf); got != edited {
		t.Fatalf("the upgrade replaced the edited config:\n%s", got)
	}
	if r.exists("/etc/systemd/system/multi-user.target.wants/relayd.service") {
		t.Fatal("the upgrade re-enabled a disabled service")
	}

	r.sh("dpkg --purge relayd")
	for _, p := range []string{"/usr/bin/relayd", "/etc/relayd/relayd.toml", "/var/log/relayd", "/usr/lib/systemd/system/relayd.service"} {
		if r.exists(p) {
			t.Errorf("%s left after purge", p)
		}
	}
}

// The whole life cycle under a booted systemd: packaging/boot-test.sh runs
// inside the container and reports PASS or FAIL.
func TestBootUnderSystemd(t *testing.T) {
	r := newRootfs(t)
	script, err := os.ReadFile("boot-test.sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.path("/usr/local/sbin/relayd-boot-test"), script, 0o755); err != nil {
		t.Fatal(err)
	}
	unit := `[Unit]
Description=relayd package test
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/relayd-boot-test
TimeoutStartSec=150

[Install]
WantedBy=multi-user.target
`
	if err := os.WriteFile(r.path("/etc/systemd/system/relayd-boot-test.service"), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/relayd-boot-test.service",
		r.path("/etc/systemd/system/multi-user.target.wants/relayd-boot-test.service")); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var console bytes.Buffer
	cmd := r.nspawn(ctx, "--boot")
	cmd.Stdout, cmd.Stderr = &console, &console
	start := time.Now()
	err = cmd.Run()
	log := readFile(t, r.path("/relayd-test.log"))
	result := strings.TrimSpace(readFile(t, r.path("/relayd-test.result")))
	if err != nil || result != "PASS" {
		t.Fatalf("boot test: %v, result %q\n--- test log:\n%s\n--- console (tail):\n%s", err, result, log, tail(console.String(), 40))
	}
	t.Logf("boot, install, reload, relay, upgrade, stop, purge, poweroff in %v:\n%s", time.Since(start).Round(time.Second), log)
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
