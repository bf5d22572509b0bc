package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/syncbuf"
	"github.com/relayd/relayd/internal/testcert"
	"github.com/relayd/relayd/internal/wait"
)

var relaydBin string

func TestMain(m *testing.M) {
	var dir string
	relaydBin, dir = relaytest.BuildBinary("relayd")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// relayd is a running relayd process whose stderr carries JSON logs.
type relayd struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *logBuffer
	exited chan error
}

// start runs relayd with args and waits until it logs "relayd started".
func start(t *testing.T, args ...string) *relayd {
	t.Helper()
	r := &relayd{t: t, cmd: exec.Command(relaydBin, args...), logs: &logBuffer{}, exited: make(chan error, 1)}
	r.cmd.Stderr = r.logs
	r.cmd.Stdout = r.logs
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exited <- r.cmd.Wait() }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("relayd output:\n%s", r.logs.String())
		}
	})
	r.waitLog("relayd started", 0)
	return r
}

// waitLog waits for the n+1-th log entry whose msg is msg and returns it.
// (start's cleanup shows relayd's output when the test fails.)
func (r *relayd) waitLog(msg string, n int) map[string]any {
	r.t.Helper()
	var found []map[string]any
	wait.For(r.t, 15*time.Second, fmt.Sprintf("relayd never logged %q", msg), func() bool {
		if found = r.logs.find(msg); len(found) > n {
			return true
		}
		select {
		case err := <-r.exited:
			r.exited <- err
			if found = r.logs.find(msg); len(found) > n { // logged just before exiting
				return true
			}
			r.t.Fatalf("relayd exited (%v) before logging %q", err, msg)
		default:
		}
		return false
	})
	return found[n]
}

// addr returns the address listener name is bound to, from its log line.
func (r *relayd) addr(name string) string {
	r.t.Helper()
	for _, e := range r.logs.find("listener started") {
		if e["listener"] == name {
			return e["address"].(string)
		}
	}
	r.t.Fatalf("no listener %q started", name)
	return ""
}

// waitReload waits for a successful reload with trigger among those logged
// after the first `after` ones.
func (r *relayd) waitReload(after int, trigger string) {
	r.t.Helper()
	wait.For(r.t, 15*time.Second, "no reload by "+trigger, func() bool {
		for _, e := range r.logs.find("configuration reloaded")[after:] {
			if e["trigger"] == trigger {
				return true
			}
		}
		return false
	})
}

func (r *relayd) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

// wait waits for relayd to exit and returns its exit status.
func (r *relayd) wait(within time.Duration) int {
	r.t.Helper()
	select {
	case err := <-r.exited:
		r.exited <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			r.t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		r.t.Fatalf("relayd still running after %v", within)
		return -1
	}
}

// logBuffer collects relayd's output and parses its log lines.
type logBuffer struct{ syncbuf.Buffer }

func (l *logBuffer) find(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	for sc.Scan() {
		var e map[string]any
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			e = parseLogfmt(sc.Text())
		}
		if e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

const baseConfig = `
[log]
format = "json"
level = "%s"

[reload]
watch = %v

[limits]
idle_timeout = "%s"

[[listener]]
name = "plain"
address = "127.0.0.1:0"
`

func configText(level string, watch bool, idle string) string {
	return fmt.Sprintf(baseConfig, level, watch, idle)
}

func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(relaydBin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestVersion(t *testing.T) {
	out, _, code := runCLI(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "relayd ") || !strings.Contains(out, "commit") {
		t.Fatalf("--version: %q, exit %d", out, code)
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.toml")
	relaytest.WriteConfig(t, good, configText("info", true, "2m"))
	for _, flag := range []string{"-t", "--check"} {
		out, errOut, code := runCLI(t, "-c", good, flag)
		if code != 0 || out != "configuration OK\n" {
			t.Fatalf("%s on a good file: %q %q, exit %d", flag, out, errOut, code)
		}
	}

	bad := filepath.Join(dir, "bad.toml")
	relaytest.WriteConfig(t, bad, "[limits]\nmax_payload = \"8MiB\"\n\nidle_timout = \"5m\"\n")
	_, errOut, code := runCLI(t, "-c", bad, "-t")
	if code != 1 || !strings.Contains(errOut, bad+":4") || !strings.Contains(errOut, "limits.idle_timout") {
		t.Fatalf("bad file: %q, exit %d", errOut, code)
	}

	// -t also loads the TLS files.
	ca, _ := testcert.NewCA("ca")
	leaf, _ := ca.Server("relayd")
	cert, _, _ := leaf.Write(dir, "server")
	tlsConf := filepath.Join(dir, "tls.toml")
	relaytest.WriteConfig(t, tlsConf, fmt.Sprintf("[[listener]]\nname = \"tls\"\naddress = \"127.0.0.1:0\"\ntls_cert = %q\ntls_key = %q\n", cert, filepath.Join(dir, "nokey.pem")))
	_, errOut, code = runCLI(t, "-c", tlsConf, "-t")
	if want := tlsConf + `:5: listener[0].tls_key: listener "tls": read key: open ` + filepath.Join(dir, "nokey.pem"); code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("missing key: %q, exit %d; want %q", errOut, code, want)
	}

	// Messages that say what to fix (issue 15).
	for _, tc := range []struct{ body, want string }{
		{"[limits]\nidle_timout = \"5m\"\n", ":2: limits.idle_timout: unknown key (did you mean idle_timeout?)"},
		{"[admin]\naddress = \"127.0.0.1:9333\"\n[[listener]]\nname = \"any\"\naddress = \"0.0.0.0:9333\"\n",
			`:2: admin.address: "127.0.0.1:9333" collides with listener[0] ("any", "0.0.0.0:9333")`},
		{"[[listener]]\nname = \"a\"\naddress = \"[::]:5000\"\n[[listener]]\nname = \"b\"\naddress = \"127.0.0.1:5000\"\n",
			`:6: listener[1].address: listener "b": address "127.0.0.1:5000" collides with listener[0] ("a", "[::]:5000")`},
	} {
		p := writeTemp(t, dir, "msg.toml", tc.body)
		_, errOut, code := runCLI(t, "-c", p, "-t")
		if code != 1 || !strings.HasPrefix(errOut, "relayd: "+p+tc.want) || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%q: exit %d, %q; want a line starting %q", tc.body, code, errOut, "relayd: "+p+tc.want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "x.toml", "40000"}, // PORT with -c
		{"40000", "-c", "x.toml"}, // the same, flags after the PORT
		{"40000", "40001"},
		{"notaport"},
		{"70000"},
		{"--no-such-flag"},
	} {
		_, errOut, code := runCLI(t, args...)
		if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and one line", args, code, errOut)
		}
	}
}

// Flags may come before or after the PORT, as with most commands; the
// mistake is then reported as what it is. In-process: nothing starts.
func TestArgumentOrder(t *testing.T) {
	const withC = "relayd: PORT cannot be combined with -c: set the listener address in the config file (relayd -h for usage)\n"
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"-c", "x.toml", "40000"}, 2, "", withC},
		{[]string{"40000", "-c", "x.toml"}, 2, "", withC},
		{[]string{"40000", "-c=x.toml", "-t"}, 2, "", withC},
		{[]string{"-t", "40000", "-c", "x.toml"}, 2, "", withC},
		{[]string{"40000", "-c", "x.toml", "40001"}, 2, "", withC},
		{[]string{"40000", "40001"}, 2, "", "relayd: unexpected arguments [\"40001\"] (relayd -h for usage)\n"},
		{[]string{"40000", "--bogus"}, 2, "", "relayd: flag provided but not defined: -bogus (relayd -h for usage)\n"},
		{[]string{"--", "-c"}, 2, "", "relayd: invalid port \"-c\": want a number from 1 to 65535 (relayd -h for usage)\n"},
		{[]string{"40000", "-t"}, 0, "configuration OK\n", ""},
		{[]string{"40000", "--check"}, 0, "configuration OK\n", ""},
		{[]string{"-t"}, 0, "configuration OK\n", ""},
		{[]string{"40000", "-h"}, 0, usage, ""},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

// Start-up failures exit non-zero with a one-line reason.
func TestStartFailures(t *testing.T) {
	dir := t.TempDir()
	r := start(t, "-c", writeTemp(t, dir, "a.toml", configText("info", false, "2m")))
	busy := r.addr("plain")

	cases := map[string]string{
		"address in use": fmt.Sprintf("[[listener]]\nname = \"dup\"\naddress = %q\n", busy),
		"unreadable certificate": fmt.Sprintf("[[listener]]\nname = \"tls\"\naddress = \"127.0.0.1:0\"\ntls_cert = %q\ntls_key = %q\n",
			filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing-key.pem")),
		"broken config": "[limits]\nsend_queue = \"1KiB\"\n",
	}
	for name, body := range cases {
		_, errOut, code := runCLI(t, "-c", writeTemp(t, dir, "case.toml", body))
		if code != 1 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.HasPrefix(errOut, "relayd: ") {
			t.Errorf("%s: exit %d, stderr %q; want exit 1 and one line", name, code, errOut)
		}
	}
	_, errOut, _ := runCLI(t, "-c", writeTemp(t, dir, "case.toml", cases["address in use"]))
	if !strings.Contains(errOut, `listener "dup"`) || !strings.Contains(errOut, busy) {
		t.Errorf("address in use does not name the listener and address: %q", errOut)
	}
}

func writeTemp(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	relaytest.WriteConfig(t, p, body)
	return p
}

func TestGracefulShutdown(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			r := start(t, "-c", writeTemp(t, t.TempDir(), "r.toml", configText("info", false, "2m")))
			c, err := client.Dial(context.Background(), r.addr("plain"), "x", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r.signal(sig)
			if code := r.wait(10 * time.Second); code != 0 {
				t.Fatalf("exit status %d", code)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Recv(); err == nil {
				t.Fatal("connection still open after shutdown")
			}
			r.waitLog("relayd stopped", 0)
		})
	}
}

// A reload never loses a frame between two clients on an unchanged
// listener: stream sequence-numbered frames while reloading 20 times, by
// SIGHUP and by editing the file.
func TestReloadLosesNoFrame(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relayd.toml")
	relaytest.WriteConfig(t, path, configText("info", true, "2m"))
	r := start(t, "-c", path)
	addr := r.addr("plain")

	ctx := context.Background()
	a, err := client.Dial(ctx, addr, "a", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx, addr, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// No login ack: probe until b receives, then start counting.
	probe(t, a, b)

	var sent uint64
	stop := make(chan struct{})
	sendDone := make(chan error, 1)
	go func() {
		p := make([]byte, 64)
		for {
			select {
			case <-stop:
				sendDone <- a.Send("b", []byte("end"))
				return
			default:
			}
			binary.BigEndian.PutUint64(p, sent)
			if err := a.Send("b", p); err != nil {
				sendDone <- err
				return
			}
			sent++
			if sent%64 == 0 {
				time.Sleep(time.Millisecond) // stay well within the receiver's queue
			}
		}
	}()
	recvDone := make(chan error, 1)
	var got uint64
	go func() {
		_ = b.SetReadDeadline(time.Now().Add(2 * time.Minute))
		for {
			m, err := b.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			if string(m.Payload) == "end" {
				recvDone <- nil
				return
			}
			if seq := binary.BigEndian.Uint64(m.Payload); seq != got {
				recvDone <- fmt.Errorf("frame %d arrived as number %d", seq, got)
				return
			}
			got++
		}
	}()

	for i := 0; i < 20; i++ {
		idle := fmt.Sprintf("%ds", 100+i) // a real change every time
		before := len(r.logs.find("configuration reloaded"))
		trigger := "file change"
		if i%2 == 0 {
			relaytest.WriteConfig(t, path, configText("info", true, idle))
		} else {
			trigger = "SIGHUP"
			relaytest.WriteConfig(t, path, configText("info", true, idle))
			r.signal(syscall.SIGHUP) // the watcher may reload the same content too
		}
		r.waitReload(before, trigger)
	}
	close(stop)
	if err := <-sendDone; err != nil {
		t.Fatalf("sender: %v", err)
	}
	if err := <-recvDone; err != nil {
		t.Fatalf("receiver: %v", err)
	}
	if got != sent || sent == 0 {
		t.Fatalf("received %d of %d frames", got, sent)
	}
	reloads := r.logs.find("configuration reloaded")
	if len(reloads) < 20 { // a SIGHUP after an edit can be followed by a watcher reload
		t.Fatalf("%d reloads logged, want at least 20", len(reloads))
	}
	triggers := map[any]int{}
	for _, e := range reloads {
		triggers[e["trigger"]]++
	}
	if triggers["SIGHUP"] == 0 || triggers["file change"] == 0 {
		t.Fatalf("reload triggers: %v; want both SIGHUP and file change", triggers)
	}
	t.Logf("%d frames streamed across %d reloads (%v)", sent, len(reloads), triggers)
}

func probe(t *testing.T, a, b *client.Client) {
	t.Helper()
	got := make(chan error, 1)
	go func() {
		_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := b.Recv()
		got <- err
	}()
	for {
		if err := a.Send("b", []byte("probe")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			// Drain probes still in flight.
			for {
				_ = b.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				m, err := b.Recv()
				if err != nil {
					_ = b.SetReadDeadline(time.Time{})
					return
				}
				if string(m.Payload) != "probe" {
					t.Fatalf("unexpected %q while probing", m.Payload)
				}
			}
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// A broken config at reload is logged; the running configuration stays.
func TestBrokenReloadKeepsRunningConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relayd.toml")
	relaytest.WriteConfig(t, path, configText("info", false, "2m"))
	r := start(t, "-c", path)
	addr := r.addr("plain")

	relaytest.WriteConfig(t, path, "[limits]\nidle_timeout = \"soon\"\n")
	r.signal(syscall.SIGHUP)
	e := r.waitLog("reload failed; the running configuration is unchanged", 0)
	if msg, _ := e["error"].(string); !strings.Contains(msg, "relayd.toml:2") || !strings.Contains(msg, "limits.idle_timeout") {
		t.Fatalf("reload error does not name line and key: %v", e["error"])
	}
	c, err := client.Dial(context.Background(), addr, "still", nil)
	if err != nil {
		t.Fatalf("the old listener is gone: %v", err)
	}
	c.Close()
}

// Log settings reload, the log goes to a rotated file, and SIGUSR1 rotates it.
func TestLogFileAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relayd.toml")
	logFile := filepath.Join(dir, "logs", "relayd.log")
	relaytest.WriteConfig(t, path, configText("info", false, "2m"))
	r := start(t, "-c", path)

	withFile := strings.Replace(configText("debug", false, "2m"), "[log]", fmt.Sprintf("[log]\nfile = %q\ncompress = false", logFile), 1)
	relaytest.WriteConfig(t, path, withFile)
	r.signal(syscall.SIGHUP)
	waitFile(t, logFile, `"msg":"configuration reloaded"`) // logged after the switch

	// Debug events now reach the file.
	c, err := client.Dial(context.Background(), r.addr("plain"), "logged", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFile(t, logFile, `"msg":"login"`)

	r.signal(syscall.SIGUSR1)
	waitFile(t, logFile, `"msg":"log rotated"`)
	var backups []string
	wait.For(t, 10*time.Second, "no rotated file", func() bool {
		backups, _ = filepath.Glob(filepath.Join(dir, "logs", "relayd-*.log"))
		return len(backups) == 1
	})
	if b, _ := os.ReadFile(backups[0]); !strings.Contains(string(b), `"msg":"login"`) {
		t.Fatalf("the rotated file does not hold the earlier lines:\n%s", b)
	}
	r.signal(syscall.SIGTERM)
	if code := r.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	waitFile(t, logFile, `"msg":"relayd stopped"`) // flushed before exit
}

func waitFile(t *testing.T, path, substr string) {
	t.Helper()
	var b []byte
	defer func() { // runs as the failure ends the test, too
		if t.Failed() {
			t.Logf("%s holds:\n%s", path, b)
		}
	}()
	wait.For(t, 10*time.Second, fmt.Sprintf("%s never contained %s", path, substr), func() bool {
		b, _ = os.ReadFile(path)
		return bytes.Contains(b, []byte(substr))
	})
}

// Running with no config file: built-in defaults and a PORT argument.
func TestPortArgument(t *testing.T) {
	port := freePort(t)
	r := start(t, port)
	if got := r.logs.String(); !strings.Contains(got, "0.0.0.0:"+port) {
		t.Fatalf("not listening on 0.0.0.0:%s:\n%s", port, got)
	}
	c, err := client.Dial(context.Background(), "127.0.0.1:"+port, "p", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	r.signal(syscall.SIGTERM)
	if code := r.wait(10 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

// freePort asks the kernel for a port that is free now on every address:
// relayd PORT binds 0.0.0.0, and a port free on 127.0.0.1 alone can still
// be held by a client socket in TIME_WAIT on another loopback address (a
// fresh-clone CI run after a 10,000-connection benchmark hit exactly that).
// The socket is closed at once; nothing is served on it.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// parseLogfmt reads one line of slog's text format into a map.
func parseLogfmt(line string) map[string]any {
	e := map[string]any{}
	for line != "" {
		line = strings.TrimLeft(line, " ")
		key, rest, ok := strings.Cut(line, "=")
		if !ok {
			return nil
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		e[key] = val
		line = rest
	}
	return e
}

// Signals are handled from the first log line on: SIGTERM sent the moment
// a listener is announced still shuts down gracefully (exit 0), never by
// the signal's default action.
func TestSignalRightAfterStart(t *testing.T) {
	path := writeTemp(t, t.TempDir(), "r.toml", configText("info", false, "2m"))
	for i := 0; i < 10; i++ {
		// Read stderr as relayd writes it and signal on the very line,
		// rather than polling for it: as soon as possible, no sleeps.
		cmd := exec.Command(relaydBin, "-c", path)
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		hung := time.AfterFunc(10*time.Second, func() { cmd.Process.Kill() })
		var logs strings.Builder
		signalled := false
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "listener started") {
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				signalled = true
			}
		}
		err = cmd.Wait()
		hung.Stop()
		if !signalled {
			t.Fatalf("run %d: no listener started (%v):\n%s", i, err, logs.String())
		}
		if err != nil {
			t.Fatalf("run %d: %v (want a graceful exit 0)\n%s", i, err, logs.String())
		}
	}
}
