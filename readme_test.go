// The README test: every command README.md shows is run, so that the
// README cannot rot.
//
// Conventions for README.md's fenced blocks (README.md's "The README is
// tested" says the same for contributors):
//
//   - ```sh blocks are run, in the order they appear, each as one bash
//     script (set -euo pipefail) from the repository root, with GOBIN and
//     PATH pointing at a temporary directory that `go install ./cmd/...`
//     fills. A line ending in "&" starts a background command (a relayd):
//     the script goes on once that command has printed its first line, the
//     command must still be running when the block ends, and it is stopped
//     then. Each block runs in a network namespace of its own (unshare
//     --net --map-root-user, loopback only) where the system allows one:
//     the blocks bind the fixed ports the README shows (33333, 40000),
//     which lie in the kernel's ephemeral range, so on the shared network
//     a connection of a test running beside this one can hold them.
//   - ```sh norun blocks are shown, not run: commands that need root, a
//     package install, systemd, minutes of benchmarks, or that are the test
//     suite itself. Mark a new block norun only for such a reason.
//   - ```go blocks are complete programs. Each is compiled against this
//     module (so the client library's API in them is checked) and run
//     twice: against a relay, with its address in place of
//     "127.0.0.1:33333", where it must exit 0; and with nothing listening,
//     where it must fail cleanly (an error, not a panic). ```go norun
//     blocks are not compiled.
//   - Blocks of any other language (toml, plain) are not run.
package relayd_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/relaytest"
)

// block is one fenced block of README.md.
type block struct {
	line  int    // of the opening fence
	lang  string // first word of the info string
	norun bool
	body  string
}

func readmeBlocks(t *testing.T) []block {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		blocks []block
		cur    *block
		body   strings.Builder
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "```") {
			if cur != nil {
				body.WriteString(line + "\n")
			}
			continue
		}
		if cur != nil {
			cur.body = body.String()
			blocks = append(blocks, *cur)
			cur = nil
			continue
		}
		info := strings.Fields(strings.TrimPrefix(line, "```"))
		cur = &block{line: n}
		body.Reset()
		if len(info) == 0 {
			continue
		}
		cur.lang = info[0]
		for _, w := range info[1:] {
			if w == "norun" {
				cur.norun = true
			} else {
				t.Fatalf("README.md:%d: unknown fence marker %q (only norun)", n, w)
			}
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: fence never closed", cur.line)
	}
	return blocks
}

var background = regexp.MustCompile(`^(.*[^&\s])\s*&\s*(#.*)?$`)

// script turns a block into the bash script that runs it.
func script(body string) string {
	var b strings.Builder
	b.WriteString(`set -euo pipefail
set -m  # each background command in its own process group, to stop it whole
bg=()
out=$(mktemp -d)
trap 'for p in "${bg[@]}"; do kill -TERM -- -"$p" 2>/dev/null || true; done; wait; rm -rf "$out"' EXIT
started() { # started PID LOG: wait for the first line of a background command
    for _ in $(seq 600); do
        [ -s "$2" ] && return 0
        kill -0 "$1" 2>/dev/null || { echo "background command exited: $(cat "$2")" >&2; return 1; }
        sleep 0.1
    done
    echo "background command printed nothing in 60s" >&2
    return 1
}
`)
	n := 0
	for _, line := range strings.Split(strings.ReplaceAll(body, "\\\n", ""), "\n") {
		m := background.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			b.WriteString(line + "\n")
			continue
		}
		n++
		fmt.Fprintf(&b, "echo '+ %s &' >&2\n", strings.ReplaceAll(m[1], "'", `'\''`))
		fmt.Fprintf(&b, "%s >\"$out/%d\" 2>&1 &\nbg+=($!)\nstarted $! \"$out/%d\"\n", m[1], n, n)
	}
	b.WriteString(`for p in "${bg[@]}"; do
    kill -0 "$p" 2>/dev/null || { echo "a background command exited before the end of the block" >&2; cat "$out"/* >&2; exit 1; }
done
`)
	return b.String()
}

func TestReadmeShellBlocks(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bin")
	env := append(os.Environ(), "GOBIN="+bin, "PATH="+strings.Join(append([]string{bin}, pathWithoutRelayd()...), string(os.PathListSeparator)))
	isolate := isolatedNetwork()
	if isolate == nil {
		t.Log("no network namespace here (unshare --net --map-root-user failed): the blocks bind ports 33333 and 40000 of this machine")
	} else if out, err := exec.Command("go", "list", "-deps", "./cmd/...").CombinedOutput(); err != nil {
		// The namespace has no route to the module proxy: fill the
		// module cache first, as a user's first go install would.
		t.Fatalf("go list -deps ./cmd/...: %v\n%s", err, out)
	}
	ran := 0
	for _, b := range readmeBlocks(t) {
		if (b.lang != "sh" && b.lang != "bash") || b.norun {
			continue
		}
		ran++
		t.Run(fmt.Sprintf("README.md:%d", b.line), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
			defer cancel()
			argv := append(isolate, "bash", "-x", "-c", script(b.body))
			cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
			cmd.Env = env
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("the block at README.md:%d failed: %v\n%s", b.line, err, out)
			}
		})
	}
	if ran == 0 {
		t.Fatal("no runnable sh block in README.md")
	}
}

func TestReadmeGoBlocks(t *testing.T) {
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	_, addr := relaytest.Start(t, nil)
	ran := 0
	for _, b := range readmeBlocks(t) {
		if b.lang != "go" || b.norun {
			continue
		}
		ran++
		t.Run(fmt.Sprintf("README.md:%d", b.line), func(t *testing.T) {
			if !strings.Contains(b.body, `"127.0.0.1:33333"`) {
				t.Fatalf("README.md:%d: the program does not dial \"127.0.0.1:33333\", so the test cannot point it at a relay", b.line)
			}
			dir := t.TempDir()
			write := func(name, content string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			prog := func(addr string) string {
				src := strings.ReplaceAll(b.body, `"127.0.0.1:33333"`, fmt.Sprintf("%q", addr))
				sub := filepath.Join(dir, strings.NewReplacer(":", "_", ".", "_").Replace(addr))
				if err := os.MkdirAll(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(sub, "main.go"), []byte(src), 0o644); err != nil {
					t.Fatal(err)
				}
				exe := filepath.Join(sub, "prog")
				build := exec.Command("go", "build", "-o", exe, ".")
				build.Dir = sub
				if out, err := build.CombinedOutput(); err != nil {
					t.Fatalf("the program at README.md:%d does not compile: %v\n%s", b.line, err, out)
				}
				return exe
			}
			// A module of its own in a workspace with this one: it imports
			// the client package as a user's program would.
			write("go.mod", "module readme\n\ngo 1.26.0\n")
			write("go.work", fmt.Sprintf("go 1.26.0\n\nuse (\n\t.\n\t%s\n)\n", root))

			out, err := exec.Command(prog(addr)).CombinedOutput()
			if err != nil {
				t.Fatalf("against a relay: %v\n%s", err, out)
			}
			t.Logf("against a relay: %s", out)

			out, err = exec.Command(prog(deadAddr(t))).CombinedOutput()
			if err == nil {
				t.Fatalf("with nothing listening it exited 0:\n%s", out)
			}
			if strings.Contains(string(out), "panic:") || strings.Contains(string(out), "goroutine ") {
				t.Fatalf("with nothing listening it panicked (check Dial's error before using the client):\n%s", out)
			}
		})
	}
	if ran == 0 {
		t.Fatal("no go block in README.md")
	}
}

// isolatedNetwork returns the command prefix that runs a shell block in a
// network namespace of its own with only loopback up, or nil where the
// system does not allow an unprivileged one.
func isolatedNetwork() []string {
	prefix := []string{"unshare", "--net", "--map-root-user", "--", "sh", "-c", `ip link set lo up && exec "$@"`, "sh"}
	if err := exec.Command(prefix[0], append(prefix[1:], "true")...).Run(); err != nil {
		return nil
	}
	return prefix
}

// pathWithoutRelayd is $PATH less the directories that hold a relayd
// binary already, so that only the README's own commands can provide one.
func pathWithoutRelayd() []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		found := false
		for _, b := range []string{"relayd", "relayd-client", "relayd-bench"} {
			if _, err := os.Stat(filepath.Join(d, b)); err == nil {
				found = true
			}
		}
		if !found {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
