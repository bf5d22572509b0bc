package daemon

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/relaytest"
)

// The daemon serves the admin API of its own server, and [admin] pprof
// follows reloads on the running admin listener.
func TestAdminAPIWiring(t *testing.T) {
	withPprof := func(on bool) string {
		return strings.Replace(fmt.Sprintf(testConfig, "127.0.0.1:0", ""), "[admin]\n", fmt.Sprintf("[admin]\npprof = %v\n", on), 1)
	}
	h := startDaemonWith(t, withPprof(false))
	admin := h.d.AdminAddr().String()

	a, b := h.dial("alice"), h.dial("bob")
	h.waitMetric(`relayd_clients`, 2)
	if err := a.Send("bob", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := b.Recv(); err != nil {
		t.Fatal(err)
	}
	code, body := h.get("/clients")
	var l []struct {
		ID       string `json:"id"`
		Listener string `json:"listener"`
		BytesIn  int    `json:"bytes_in"`
	}
	if err := json.Unmarshal([]byte(body), &l); code != 200 || err != nil || len(l) != 2 ||
		l[0].ID != "alice" || l[0].Listener != "plain" || l[0].BytesIn != 5 {
		t.Fatalf("/clients: %d %s (%v)", code, body, err)
	}

	resp, err := http.Post("http://"+admin+"/clients/kick?id=bob", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("kick: %d", resp.StatusCode)
	}
	h.waitMetric(`relayd_disconnects_total{reason="kicked"}`, 1)
	if code, _ := h.get("/clients?id=bob"); code != 404 {
		t.Fatalf("/clients?id=bob after the kick: %d", code)
	}

	for i, on := range []bool{false, true, false} {
		if i > 0 {
			writeAndReload(t, h, withPprof(on))
		}
		want := 404
		if on {
			want = 200
		}
		if code, _ := h.get("/debug/pprof/goroutine?debug=1"); code != want {
			t.Errorf("pprof = %v: /debug/pprof/goroutine %d, want %d", on, code, want)
		}
		if h.d.AdminAddr().String() != admin {
			t.Fatal("toggling pprof moved the admin listener")
		}
	}
}

func writeAndReload(t *testing.T, h *harness, body string) {
	t.Helper()
	// The admin address reads as at start: the listener is kept.
	relaytest.WriteConfig(t, h.path, body)
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
}
