package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/wait"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testConfig = `
[log]
level = "error"

[admin]
address = "%s"

[limits]
max_payload = "64KiB"
send_queue = "128KiB"
login_timeout = "30s"
idle_timeout = "30s"
write_timeout = "500ms"
stall_timeout = "100ms"   # a receiver that never reads is stalled well before write_timeout

[[listener]]
name = "plain"
address = "127.0.0.1:0"
%s

# Short timeouts for the timeout tests; "plain" inherits long ones.
[[listener]]
name = "short"
address = "127.0.0.1:0"
login_timeout = "300ms"
idle_timeout = "400ms"
`

type harness struct {
	t     *testing.T
	d     *Daemon
	path  string
	addr  string // the plain listener: long timeouts
	short string // the short listener: login_timeout 300ms, idle_timeout 400ms
}

func startDaemon(t *testing.T, extra string) *harness {
	t.Helper()
	return startDaemonWith(t, fmt.Sprintf(testConfig, "127.0.0.1:0", extra))
}

// startDaemonWith starts a daemon from the config text body, which must
// have the listeners "plain" and "short" and an [admin] section.
func startDaemonWith(t *testing.T, body string) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relayd.toml")
	relaytest.WriteConfig(t, path, body)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Start(cfg, io.Discard, "test-version")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !d.shuttingDown.Load() {
			d.Shutdown("test over")
		}
	})
	addrs := d.Server().Addrs()
	return &harness{t: t, d: d, path: path, addr: addrs["plain"].String(), short: addrs["short"].String()}
}

func (h *harness) get(path string) (int, string) {
	h.t.Helper()
	resp, err := http.Get("http://" + h.d.AdminAddr().String() + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metrics scrapes /metrics and returns each sample by name and labels,
// e.g. `relayd_disconnects_total{reason="eof"}`.
func (h *harness) metrics() map[string]float64 {
	h.t.Helper()
	code, body := h.get("/metrics")
	if code != 200 {
		h.t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		h.t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.Metric {
			key := name
			if len(m.Label) > 0 {
				var ls []string
				for _, l := range m.Label {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				key += "{" + strings.Join(ls, ",") + "}"
			}
			out[key] = value(f.GetType(), m)
		}
	}
	return out
}

func value(t dto.MetricType, m *dto.Metric) float64 {
	switch t {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return -1
}

// waitMetric waits until the sample has the wanted value.
func (h *harness) waitMetric(key string, want float64) {
	h.t.Helper()
	var got float64
	defer func() { // runs as the failure ends the test, too
		if h.t.Failed() {
			h.t.Logf("%s was last %v", key, got)
		}
	}()
	wait.For(h.t, 10*time.Second, fmt.Sprintf("%s never became %v", key, want), func() bool {
		var ok bool
		got, ok = h.metrics()[key]
		return ok && got == want
	})
}

func (h *harness) dial(id string) *client.Client {
	h.t.Helper()
	c, err := client.Dial(context.Background(), h.addr, id, &client.Options{Heartbeat: -1})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) raw() net.Conn { return h.rawTo(h.addr) }

func (h *harness) rawTo(addr string) net.Conn {
	h.t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	return c
}

func TestMetricsCountRealTraffic(t *testing.T) {
	h := startDaemon(t, "")
	m := h.metrics()
	for _, key := range []string{
		`relayd_connections{listener="plain"}`, `relayd_clients`, `relayd_frames_forwarded_total`,
		`relayd_bytes_forwarded_total`, `relayd_frames_dropped_total{reason="offline"}`,
		`relayd_frames_dropped_total{reason="queue_full"}`, `relayd_heartbeats_total`,
		`relayd_logins_total{listener="plain"}`, `relayd_kicks_total`,
		`relayd_disconnects_total{reason="eof"}`, `relayd_disconnects_total{reason="shutdown"}`,
		`relayd_disconnects_total{reason="limit"}`, `relayd_disconnects_total{reason="listener_removed"}`,
		`relayd_config_reloads_total{result="success"}`, `relayd_config_reloads_total{result="failure"}`,
		`relayd_config_last_reload_successful`, `relayd_config_last_reload_success_timestamp_seconds`,
		`relayd_build_info{goversion="` + runtime.Version() + `",version="test-version"}`,
		`go_goroutines`, `process_resident_memory_bytes`,
	} {
		if _, ok := m[key]; !ok {
			t.Errorf("missing %s", key)
		}
	}
	if m[`relayd_config_last_reload_successful`] != 1 {
		t.Error("last reload not successful at start")
	}

	// Forwarded frames and payload bytes, and heartbeats.
	a, b := h.dial("a"), h.dial("b")
	h.waitMetric(`relayd_clients`, 2)
	for i := 0; i < 10; i++ {
		if err := a.Send("b", make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 10; i++ {
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := b.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.Heartbeat()
	_ = a.Heartbeat()
	h.waitMetric(`relayd_heartbeats_total`, 2)
	m = h.metrics()
	if m[`relayd_frames_forwarded_total`] != 10 || m[`relayd_bytes_forwarded_total`] != 1000 ||
		m[`relayd_logins_total{listener="plain"}`] != 2 || m[`relayd_connections{listener="plain"}`] != 2 {
		t.Fatalf("after 10 frames of 100 bytes: %v", pick(m, "relayd_frames_forwarded_total", "relayd_bytes_forwarded_total", "relayd_logins_total", "relayd_connections"))
	}

	// Offline drops.
	for i := 0; i < 3; i++ {
		_ = a.Send("nobody", []byte("x"))
	}
	h.waitMetric(`relayd_frames_dropped_total{reason="offline"}`, 3)

	// queue_full: a receiver that never reads, 128 KiB queue, 64 KiB frames.
	slow := h.raw()
	login, _ := protocol.AppendLogin(nil, "slow")
	slow.Write(login)
	h.waitMetric(`relayd_clients`, 3)
	// Keep offering frames until the kernel's socket buffers are full and a
	// write blocks for write_timeout (500ms): the receiver is disconnected.
	wait.For(t, 20*time.Second, "the slow receiver was never disconnected", func() bool {
		if h.metrics()[`relayd_disconnects_total{reason="write_timeout"}`] != 0 {
			return true
		}
		for i := 0; i < 32; i++ {
			if err := a.Queue("slow", make([]byte, 64<<10)); err != nil {
				t.Fatal(err)
			}
		}
		_ = a.Flush()
		return false
	})
	if h.metrics()[`relayd_frames_dropped_total{reason="queue_full"}`] == 0 {
		t.Fatal("no queue_full drop counted")
	}

	// Kicks and the kicked reason.
	h.dial("b")
	h.waitMetric(`relayd_kicks_total`, 1)
	h.waitMetric(`relayd_disconnects_total{reason="kicked"}`, 1)

	// protocol_error, login_timeout (300ms), idle_timeout (400ms), eof.
	bad := h.raw()
	bad.Write([]byte("GARBAGE!"))
	h.waitMetric(`relayd_disconnects_total{reason="protocol_error"}`, 1)
	h.rawTo(h.short) // says nothing
	h.waitMetric(`relayd_disconnects_total{reason="login_timeout"}`, 1)
	idle := h.rawTo(h.short)
	login, _ = protocol.AppendLogin(nil, "idle")
	idle.Write(login)
	h.waitMetric(`relayd_disconnects_total{reason="idle_timeout"}`, 1)
	eofBefore := h.metrics()[`relayd_disconnects_total{reason="eof"}`]
	c := h.raw()
	c.Close()
	h.waitMetric(`relayd_disconnects_total{reason="eof"}`, eofBefore+1)
}

// Counters stay right across reloads: success and failure, limit refusals,
// and listener removal.
func TestMetricsAcrossReloads(t *testing.T) {
	h := startDaemon(t, "max_connections = 1")
	keep := h.raw()
	login, _ := protocol.AppendLogin(nil, "k")
	keep.Write(login)
	h.waitMetric(`relayd_clients`, 1)
	h.raw() // over max_connections
	h.waitMetric(`relayd_disconnects_total{reason="limit"}`, 1)

	before := h.metrics()[`relayd_config_last_reload_success_timestamp_seconds`]
	relaytest.WriteConfig(t, h.path, "[limits]\nidle_timeout = \"never\"\n")
	if err := h.d.Reload("test"); err == nil {
		t.Fatal("a broken config reloaded")
	}
	m := h.metrics()
	if m[`relayd_config_reloads_total{result="failure"}`] != 1 || m[`relayd_config_last_reload_successful`] != 0 {
		t.Fatalf("after a failed reload: %v", pick(m, "relayd_config"))
	}

	// A good config that moves the listener: its connections are closed as listener_removed.
	admin := h.d.AdminAddr().String()
	relaytest.WriteConfig(t, h.path, strings.Replace(fmt.Sprintf(testConfig, admin, ""),
		`name = "plain"`, `name = "renamed"`, 1))
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	m = h.metrics()
	if m[`relayd_config_reloads_total{result="success"}`] != 1 || m[`relayd_config_last_reload_successful`] != 1 ||
		m[`relayd_config_last_reload_success_timestamp_seconds`] <= before {
		t.Fatalf("after a good reload: %v", pick(m, "relayd_config"))
	}
	h.waitMetric(`relayd_disconnects_total{reason="listener_removed"}`, 1)
	if _, ok := h.metrics()[`relayd_connections{listener="renamed"}`]; !ok {
		t.Fatal("no gauge for the new listener")
	}
	if _, ok := h.metrics()[`relayd_connections{listener="plain"}`]; ok {
		t.Fatal("the removed listener still has a gauge")
	}
}

func TestHealthEndpoints(t *testing.T) {
	h := startDaemon(t, "")
	if code, _ := h.get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, _ := h.get("/readyz"); code != 200 {
		t.Fatalf("/readyz after start = %d", code)
	}
	// Ask while a real shutdown is under way, as the relay starts to stop.
	var ready, healthy int
	h.d.stopping = func() {
		ready, _ = h.get("/readyz")
		healthy, _ = h.get("/healthz")
	}
	addr := h.d.AdminAddr().String()
	if err := h.d.Shutdown("test"); err != nil {
		t.Fatal(err)
	}
	if ready != 503 || healthy != 200 {
		t.Fatalf("during shutdown: /readyz %d, /healthz %d; want 503 and 200", ready, healthy)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("admin listener still up after shutdown")
	}
}

// The admin address reloads like everything else: all-or-nothing.
func TestAdminAddressReload(t *testing.T) {
	h := startDaemon(t, "")
	old := h.d.AdminAddr().String()
	relaytest.WriteConfig(t, h.path, fmt.Sprintf(testConfig, "127.0.0.1:0", ""))
	// Same text as at start ("127.0.0.1:0"): unchanged, stays where it is.
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if h.d.AdminAddr().String() != old {
		t.Fatal("an unchanged admin address moved")
	}
	busy, _ := net.Listen("tcp", "127.0.0.1:0")
	defer busy.Close()
	relaytest.WriteConfig(t, h.path, fmt.Sprintf(testConfig, busy.Addr().String(), ""))
	if err := h.d.Reload("test"); err == nil || !strings.Contains(err.Error(), "admin") {
		t.Fatalf("reload onto a busy admin address: %v", err)
	}
	if code, _ := h.get("/healthz"); code != 200 || h.d.AdminAddr().String() != old {
		t.Fatal("a failed reload moved the admin listener")
	}
	relaytest.WriteConfig(t, h.path, strings.Replace(fmt.Sprintf(testConfig, "x", ""), "[admin]\naddress = \"x\"\n", "", 1))
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	if h.d.AdminAddr() != nil {
		t.Fatal("admin still enabled")
	}
	if _, err := http.Get("http://" + old + "/healthz"); err == nil {
		t.Fatal("the old admin listener still answers")
	}
}

func pick(m map[string]float64, prefixes ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out[k] = v
			}
		}
	}
	return out
}
