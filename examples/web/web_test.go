package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/internal/syncbuf"
)

// relaydBin is the relayd binary these tests run, built once by TestMain.
var relaydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relayd-web-test")
	if err != nil {
		panic(err)
	}
	relaydBin = filepath.Join(dir, "relayd")
	if out, err := exec.Command("go", "build", "-o", relaydBin, "github.com/relayd/relayd/cmd/relayd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build relayd: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireOrSkip skips the test for why, unless RELAYD_REQUIRE_BROWSER_TESTS
// is 1 (as in CI): then the missing tool is a failure.
func requireOrSkip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("RELAYD_REQUIRE_BROWSER_TESTS") == "1" {
		t.Fatalf("%s, and RELAYD_REQUIRE_BROWSER_TESTS=1", why)
	}
	t.Skip(why + " (set RELAYD_REQUIRE_BROWSER_TESTS=1 to make this a failure)")
}

// relayd is a running relayd binary with a websocket and a TCP listener.
type relayd struct {
	ws  string // ws://127.0.0.1:PORT/relay
	tcp string // 127.0.0.1:PORT
	log *syncbuf.Buffer
}

// startRelayd runs relayd until the test ends, its websocket listener
// allowing the given origins, and reads the listeners' ports from its log.
func startRelayd(t *testing.T, origins []string) *relayd {
	t.Helper()
	if origins == nil {
		origins = []string{}
	}
	quoted, _ := json.Marshal(origins) // a JSON array of strings is a TOML array
	cfg := fmt.Sprintf(`[log]
level = "debug"
format = "json"

[[listener]]
name = "web"
address = "127.0.0.1:0"
transport = "websocket"
ws_origins = %s
idle_timeout = "10s"

[[listener]]
name = "plain"
address = "127.0.0.1:0"
`, quoted)
	path := filepath.Join(t.TempDir(), "relayd.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(relaydBin, "-c", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &relayd{log: &syncbuf.Buffer{}}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("relayd did not stop within 15s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("relayd log:\n%s", r.log.String())
		}
	})
	found, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		found := found // this goroutine's: it forgets it once closed
		sc := bufio.NewScanner(stderr)
		addrs := map[string]string{}
		for sc.Scan() {
			r.log.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Listener, Address string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listener started" {
				addrs[line.Listener] = line.Address
				if len(addrs) == 2 && found != nil {
					r.ws, r.tcp = "ws://"+addrs["web"]+"/relay", addrs["plain"]
					close(found)
					found = nil
				}
			}
		}
	}()
	select {
	case <-found:
	case <-exited:
		t.Fatalf("relayd exited at start:\n%s", r.log.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("relayd did not log its two listeners within 20s; log:\n%s", r.log.String())
	}
	return r
}

func TestExampleConfigIsValid(t *testing.T) {
	out, err := exec.Command(relaydBin, "-c", "relayd.toml", "-t").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration OK") {
		t.Fatalf("relayd -c examples/web/relayd.toml -t: %v\n%s", err, out)
	}
}

// TestNodeClient runs client/js's tests under node --test, its end-to-end
// tests against a real relayd.
func TestNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		requireOrSkip(t, "node not found")
	}
	args := []string{"--test", filepath.Join("..", "..", "client", "js")}
	// Node 20 has WebSocket only behind a flag; 22 and later always.
	if exec.Command(node, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)").Run() != nil {
		args = append([]string{"--experimental-websocket"}, args...)
	}
	r := startRelayd(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), "RELAYD_WS_URL="+r.ws, "RELAYD_TCP_ADDR="+r.tcp)
	cmd.WaitDelay = 5 * time.Second // node's test-file children may hold the output open
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	// The end-to-end tests skip without a relayd: they must have run.
	if m := regexp.MustCompile(`(?m)^# skipped (\d+)$`).FindSubmatch(out); m == nil || string(m[1]) != "0" {
		t.Fatalf("node tests skipped some (or printed no summary):\n%s", out)
	}
	if !bytes.Contains(out, []byte("# fail 0")) {
		t.Fatalf("node tests failed:\n%s", out)
	}
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowser runs the demo page in headless Chromium: two tabs log in and
// chat both ways and with a TCP client, and a kick shows in the page.
func TestBrowser(t *testing.T) {
	chrome := findChromium()
	if chrome == "" {
		requireOrSkip(t, "chromium not found (apt-get install chromium)")
	}
	page := httptest.NewServer(handler())
	defer page.Close()
	pageURL, _ := url.Parse(page.URL)
	r := startRelayd(t, []string{pageURL.Hostname()})

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	alice, cancelAlice := chromedp.NewContext(allocCtx)
	defer cancelAlice()
	// The first action on a context starts the browser, or opens the tab:
	// without a timeout, which would end the browser or the tab.
	if err := chromedp.Do(alice); err != nil {
		t.Fatalf("start %s: %v", chrome, err)
	}
	bob, cancelBob := chromedp.NewContext(alice) // a second tab
	defer cancelBob()
	if err := chromedp.Do(bob); err != nil {
		t.Fatalf("open a second tab: %v", err)
	}

	open := func(tab context.Context, id, peer string) {
		t.Helper()
		u := fmt.Sprintf("%s/?server=%s&id=%s&peer=%s", page.URL, url.QueryEscape(r.ws), id, peer)
		run(t, tab, chromedp.Navigate(u), chromedp.Click(chromedp.ID("connect")))
		waitText(t, tab, "#status", "connected as "+id)
	}
	open(bob, "bob", "alice")
	open(alice, "alice", "bob")

	carol := dialTCP(t, r.tcp, "carol")
	// RELY has no login answer: a frame that arrives proves the login.
	for _, id := range []string{"alice", "bob"} {
		tab := map[string]context.Context{"alice": alice, "bob": bob}[id]
		deadline := time.Now().Add(10 * time.Second)
		for !logHas(t, tab, "carol: ping") {
			if time.Now().After(deadline) {
				t.Fatalf("%s's page never received a frame from the TCP client", id)
			}
			if err := carol.Send(id, []byte("ping")); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	say := func(tab context.Context, text string) {
		t.Helper()
		run(t, tab, chromedp.SetValue(chromedp.ID("message"), text), chromedp.Click(chromedp.ID("send")))
	}
	say(alice, "hello bob, from alice's tab")
	waitLog(t, bob, "alice: hello bob, from alice's tab")
	say(bob, "hi alice ✓")
	waitLog(t, alice, "bob: hi alice ✓")

	// The page and the TCP client, both ways.
	run(t, alice, chromedp.SetValue(chromedp.ID("peer"), "carol"))
	say(alice, "hello carol")
	_ = carol.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		m, err := carol.Recv()
		if err != nil {
			t.Fatalf("carol: %v", err)
		}
		if string(m.From) == "alice" && string(m.Payload) == "hello carol" {
			break
		}
	}
	if err := carol.Send("bob", []byte("hello bob, from TCP")); err != nil {
		t.Fatal(err)
	}
	waitLog(t, bob, "carol: hello bob, from TCP")

	// A third login as bob kicks bob's tab, which says so.
	dialTCP(t, r.tcp, "bob")
	waitText(t, bob, "#status", "kicked by a newer login")
	waitLog(t, bob, "connection closed: closed by server (kicked by a newer login")
}

func dialTCP(t *testing.T, addr, id string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, tab context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, tab context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`document.querySelector(%q).textContent.includes(%q)`, sel, want)
	ctx, cancel := context.WithTimeout(tab, 15*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(20*time.Millisecond))); err != nil {
		tctx, cancel := context.WithTimeout(tab, 5*time.Second)
		defer cancel()
		text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("waiting for %q in %s: %v; the page says:\n%s", want, sel, err, text)
	}
}

func waitLog(t *testing.T, tab context.Context, want string) {
	t.Helper()
	waitText(t, tab, "#log", want)
}

func logHas(t *testing.T, tab context.Context, want string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, 10*time.Second)
	defer cancel()
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.getElementById('log').textContent.includes(%q)`, want)))
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return ok
}
