package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/server"
	"github.com/relayd/relayd/internal/wait"
)

// notifications listens on a NOTIFY_SOCKET for the test's duration and
// collects what the daemon sends.
type notifications struct {
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifications {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	n := &notifications{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return n
}

func (n *notifications) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}

func (n *notifications) waitFor(t *testing.T, want string) {
	t.Helper()
	wait.For(t, 10*time.Second, "no notification "+want, func() bool {
		return slices.ContainsFunc(n.all(), func(m string) bool { return strings.Contains(m, want) })
	})
}

// run runs the daemon's signal loop and returns the channel its result
// arrives on.
func (h *harness) run() <-chan error {
	done, ended := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ended)
		done <- h.d.Run(context.Background())
	}()
	h.t.Cleanup(func() {
		select {
		case <-ended:
		case <-time.After(15 * time.Second):
			h.t.Error("Run still running at the end of the test")
		}
	})
	return done
}

// kill sends sig to this process, as systemd or an operator would.
func kill(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), sig); err != nil {
		t.Fatal(err)
	}
}

// closeWatch logs n raw clients in on addr and records when the daemon
// closes each of them.
type closeWatch struct {
	closed chan time.Time
	conns  []net.Conn
}

func (h *harness) watchCloses(addr string, n int) *closeWatch {
	h.t.Helper()
	w := &closeWatch{closed: make(chan time.Time, n)}
	for i := range n {
		c := h.rawTo(addr)
		login, _ := protocol.AppendLogin(nil, "drain-"+strconv.Itoa(i))
		if _, err := c.Write(login); err != nil {
			h.t.Fatal(err)
		}
		w.conns = append(w.conns, c)
		go func() {
			_, _ = io.Copy(io.Discard, c) // returns when the daemon closes c (or the test does)
			w.closed <- time.Now()
		}()
	}
	h.waitMetric(`relayd_clients`, float64(n))
	return w
}

// next waits for the next close, failing after within.
func (w *closeWatch) next(t *testing.T, within time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-w.closed:
		return at
	case <-time.After(within):
		t.Fatalf("no connection closed within %v", within)
		return time.Time{}
	}
}

// drainConfig is testConfig with drain_period set.
func drainConfig(period string) string {
	return "[server]\ndrain_period = \"" + period + "\"\n" + fmt.Sprintf(testConfig, "127.0.0.1:0", "")
}

var drainStatus = regexp.MustCompile(`^STATUS=draining: (\d+) connections left$`)

// SIGUSR2: /readyz 503 at once, every connection closed as drain, the
// closes spread over drain_period, STATUS= counting down, then a clean exit.
func TestDrain(t *testing.T) {
	const n, period = 8, 2 * time.Second
	notes := listenNotify(t)
	h := startDaemonWith(t, drainConfig(period.String()))
	w := h.watchCloses(h.addr, n)
	done := h.run()
	notes.waitFor(t, "READY=1")

	start := time.Now()
	kill(t, syscall.SIGUSR2)
	wait.For(t, period/4, "/readyz still 200 after SIGUSR2", func() bool {
		code, _ := h.get("/readyz")
		return code == 503
	})
	var closes []time.Duration
	for i := range n {
		closes = append(closes, w.next(t, 2*period).Sub(start))
		if i == n/2 { // half way through: still not ready, still alive
			if code, _ := h.get("/readyz"); code != 503 {
				t.Errorf("/readyz during the drain: %d", code)
			}
			if code, _ := h.get("/healthz"); code != 200 {
				t.Errorf("/healthz during the drain: %d", code)
			}
			if _, err := net.DialTimeout("tcp", h.addr, time.Second); err == nil {
				t.Error("a new connection was accepted during the drain")
			}
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after the drain: %v (the process would exit 1)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the daemon did not exit after the drain")
	}
	t.Logf("closes after SIGUSR2: %v", closes)

	// Evenly spread: one every period/n, the first at once. The slack is
	// generous, for a loaded machine, but all at once or all at the end fails.
	step := period / n
	if closes[0] > period/4 {
		t.Errorf("first close %v after SIGUSR2, want near 0", closes[0])
	}
	if last := closes[n-1]; last < period-2*step || last > period+time.Second {
		t.Errorf("last close %v after SIGUSR2, want near %v", last, period-step)
	}
	if mid := closes[n/2]; mid < period/4 || mid > 3*period/4 {
		t.Errorf("close %d of %d at %v, want near %v", n/2+1, n, mid, time.Duration(n/2)*step)
	}
	if got := h.d.Server().Stats().Disconnects[server.ReasonDrain]; got != n {
		t.Errorf("%d disconnects counted as drain, want %d", got, n)
	}

	// STATUS= counts down from n to 0, a few times a second at most, then
	// systemd hears STOPPING=1.
	notes.waitFor(t, "STOPPING=1") // sent before Run returned, maybe not read yet
	var counts []int
	msgs := notes.all()
	for _, m := range msgs {
		if sub := drainStatus.FindStringSubmatch(m); sub != nil {
			k, _ := strconv.Atoi(sub[1])
			counts = append(counts, k)
		}
	}
	t.Logf("drain STATUS counts: %v", counts)
	switch {
	case len(counts) < 3 || counts[0] != n || counts[len(counts)-1] != 0:
		t.Errorf("drain STATUS counts %v, want from %d down to 0 with steps between", counts, n)
	case !slices.IsSortedFunc(counts, func(a, b int) int { return b - a }):
		t.Errorf("drain STATUS counts %v go up", counts)
	case len(counts) > int(period/drainStatusEvery)+3:
		t.Errorf("%d drain STATUS lines in %v: more than a few a second", len(counts), period)
	}
	if msgs[len(msgs)-1] != "STOPPING=1" {
		t.Errorf("last notification %q, want STOPPING=1", msgs[len(msgs)-1])
	}
}

// SIGTERM during a drain shuts down at once: the connections the drain had
// not reached yet are closed as at any shutdown. Reloads are refused.
func TestDrainInterruptedBySIGTERM(t *testing.T) {
	const n = 4
	h := startDaemonWith(t, drainConfig("1m"))
	w := h.watchCloses(h.addr, n)
	done := h.run()
	kill(t, syscall.SIGUSR2)
	w.next(t, 10*time.Second) // the first goes at once; the next in 15 s

	if err := h.d.Reload("test"); !errors.Is(err, ErrDraining) {
		t.Errorf("reload during a drain: %v, want ErrDraining", err)
	}
	// Logged and ignored; the process stays draining. Put in the daemon's
	// channel, not sent: signals of different kinds may be delivered out
	// of order, and a SIGHUP arriving after shutdown would kill the test.
	h.d.sigs <- syscall.SIGHUP

	start := time.Now()
	kill(t, syscall.SIGTERM)
	for range n - 1 {
		w.next(t, 5*time.Second)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM during a drain did not shut down")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("SIGTERM during a drain took %v", took)
	}
	st := h.d.Server().Stats()
	if st.Disconnects[server.ReasonDrain] != 1 || st.Disconnects[server.ReasonShutdown] != n-1 {
		t.Errorf("disconnects: drain %d, shutdown %d; want 1 and %d",
			st.Disconnects[server.ReasonDrain], st.Disconnects[server.ReasonShutdown], n-1)
	}
	if r := h.d.Reloads(); r.Succeeded != 0 || r.Failed != 0 {
		t.Errorf("a reload was tried during the drain: %+v", r)
	}
}

// With nobody connected, a drain ends at once, whatever drain_period says.
func TestDrainWithoutConnections(t *testing.T) {
	h := startDaemonWith(t, drainConfig("1h"))
	done := h.run()
	kill(t, syscall.SIGUSR2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an empty drain did not end")
	}
}
