package metrics

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/server"
	"github.com/relayd/relayd/internal/wait"
)

// apiHarness is a real relay with the admin handler served over HTTP.
type apiHarness struct {
	t     *testing.T
	srv   *server.Server
	relay string // the relay listener "plain"
	base  string // http://admin-address
	pprof atomic.Bool
}

func startAPI(t *testing.T, mod func(*config.Listener)) *apiHarness {
	t.Helper()
	h := &apiHarness{t: t}
	h.srv, h.relay = relaytest.Start(t, mod)
	reg := NewRegistry(Sources{
		Server:  h.srv.Stats,
		Reloads: func() ReloadStats { return ReloadStats{} },
		Version: "test",
	})
	a := listenHandler(t, Handler(reg, Endpoints{
		Ready:   func() bool { return true },
		Clients: h.srv.Clients,
		Kick:    h.srv.Kick,
		Pprof:   h.pprof.Load,
	}))
	h.base = "http://" + a.Addr().String()
	return h
}

func listenHandler(t *testing.T, hd http.Handler) *Admin {
	t.Helper()
	a, err := Listen("127.0.0.1:0", "", hd, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = a.Close(ctx)
	})
	return a
}

// do sends a request to the admin listener and returns the status, the
// Content-Type and the body.
func (h *apiHarness) do(method, path string) (int, string, []byte) {
	h.t.Helper()
	req, err := http.NewRequest(method, h.base+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// client is GET /clients?id= decoded; the map keeps absent fields absent.
func (h *apiHarness) client(id string) map[string]any {
	h.t.Helper()
	code, ctype, body := h.do("GET", "/clients?id="+url.QueryEscape(id))
	if code != 200 || ctype != "application/json" {
		h.t.Fatalf("/clients?id=%s: %d %s %s", id, code, ctype, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		h.t.Fatalf("/clients?id=%s: %v in %s", id, err, body)
	}
	return m
}

func (h *apiHarness) list() []map[string]any {
	h.t.Helper()
	code, ctype, body := h.do("GET", "/clients")
	if code != 200 || ctype != "application/json" {
		h.t.Fatalf("/clients: %d %s %s", code, ctype, body)
	}
	var l []map[string]any
	if err := json.Unmarshal(body, &l); err != nil {
		h.t.Fatalf("/clients: %v in %s", err, body)
	}
	return l
}

// waitField waits until the client's field has the wanted value.
func (h *apiHarness) waitField(id, field string, want float64) {
	h.t.Helper()
	var got any
	wait.For(h.t, 10*time.Second, id+"'s "+field+" never became the expected value", func() bool {
		got = h.client(id)[field]
		return got == want
	})
}

// dial logs in as id over a connection whose local address the test knows.
func (h *apiHarness) dial(id string) (*client.Client, net.Conn) {
	h.t.Helper()
	nc, err := net.Dial("tcp", h.relay)
	if err != nil {
		h.t.Fatal(err)
	}
	c, err := client.New(nc, id, &client.Options{Heartbeat: -1})
	if err != nil {
		nc.Close()
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	h.waitOnline(id)
	return c, nc
}

func (h *apiHarness) waitOnline(id string) {
	h.t.Helper()
	wait.For(h.t, 10*time.Second, id+" never logged in", func() bool { return len(h.srv.Clients(id)) == 1 })
}

// The numbers of GET /clients are those of the traffic clients really sent.
func TestClientsReportRealTraffic(t *testing.T) {
	h := startAPI(t, nil)
	if l := h.list(); len(l) != 0 {
		t.Fatalf("nobody logged in: %v", l)
	}
	if _, _, body := h.do("GET", "/clients"); string(body) != "[]\n" {
		t.Fatalf("empty list is %q, want []", body)
	}

	before := time.Now().Truncate(time.Second)
	a, aConn := h.dial("alice")
	b, bConn := h.dial("bob")
	after := time.Now()
	for range 10 {
		if err := a.Send("bob", make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 { // transfers all the same: counted in, never out
		if err := a.Send("nobody", make([]byte, 7)); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // not transfers: not counted
		if err := a.Heartbeat(); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send("alice", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := b.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Recv(); err != nil {
		t.Fatal(err)
	}
	h.waitField("alice", "frames_in", 13)
	h.waitField("bob", "frames_out", 10)
	h.waitField("alice", "frames_out", 1)

	l := h.list()
	if len(l) != 2 || l[0]["id"] != "alice" || l[1]["id"] != "bob" {
		t.Fatalf("/clients: %v, want alice then bob", l)
	}
	for _, tc := range []struct {
		got  map[string]any
		nc   net.Conn
		want map[string]any
	}{
		{l[0], aConn, map[string]any{"frames_in": 13.0, "bytes_in": 1021.0, "frames_out": 1.0, "bytes_out": 5.0, "queued_bytes": 0.0}},
		{l[1], bConn, map[string]any{"frames_in": 1.0, "bytes_in": 5.0, "frames_out": 10.0, "bytes_out": 1000.0, "queued_bytes": 0.0}},
	} {
		for k, v := range tc.want {
			if tc.got[k] != v {
				t.Errorf("%s: %s = %v, want %v", tc.got["id"], k, tc.got[k], v)
			}
		}
		if tc.got["listener"] != "plain" || tc.got["remote"] != tc.nc.LocalAddr().String() {
			t.Errorf("%s: listener %v remote %v, want plain %v", tc.got["id"], tc.got["listener"], tc.got["remote"], tc.nc.LocalAddr())
		}
		since, err := time.Parse(time.RFC3339, tc.got["since"].(string))
		if err != nil || since.Before(before) || since.After(after) || !strings.HasSuffix(tc.got["since"].(string), "Z") {
			t.Errorf("%s: since %v (%v), want RFC 3339 UTC between %v and %v", tc.got["id"], tc.got["since"], err, before, after)
		}
		if _, ok := tc.got["id_base64"]; ok {
			t.Errorf("%s: id_base64 for a UTF-8 ID", tc.got["id"])
		}
		if len(tc.got) != 9 {
			t.Errorf("%s: %d fields, want 9: %v", tc.got["id"], len(tc.got), tc.got)
		}
	}
	// ?id= is the same object as the list's.
	if one := h.client("bob"); one["bytes_out"] != 1000.0 || one["id"] != "bob" {
		t.Fatalf("/clients?id=bob: %v", one)
	}
}

// queued_bytes shows what waits for a receiver that does not read, and
// falls back to 0 once it has read everything.
func TestClientsQueuedBytes(t *testing.T) {
	h := startAPI(t, func(l *config.Listener) {
		l.Limits.MaxPayload = 64 << 10
		l.Limits.SendQueue = 1 << 20
		l.Limits.StallTimeout = config.Duration(time.Minute) // pace the sender; never drop
	})
	rx, err := net.Dial("tcp", h.relay)
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.(*net.TCPConn).SetReadBuffer(16 << 10) // so the kernel holds little and the queue fills
	login, _ := protocol.AppendLogin(nil, "rx")
	if _, err := rx.Write(login); err != nil {
		t.Fatal(err)
	}
	h.waitOnline("rx")
	tx, _ := h.dial("tx")

	payload := bytes.Repeat([]byte{'x'}, 64<<10)
	sent := 0
	for h.client("rx")["queued_bytes"] == 0.0 {
		if sent == 200 {
			t.Fatal("200 frames of 64 KiB sent, and nothing queued")
		}
		if err := tx.Send("rx", payload); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if q := h.client("rx")["queued_bytes"].(float64); q > 1<<20 {
		t.Fatalf("queued_bytes %v beyond send_queue", q)
	}

	frameLen := protocol.TransferLen(len("tx"), len("rx"), len(payload))
	_ = rx.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.CopyN(io.Discard, rx, int64(sent*frameLen)); err != nil {
		t.Fatalf("reading the %d frames: %v", sent, err)
	}
	h.waitField("rx", "queued_bytes", 0)
	got := h.client("rx")
	if got["frames_out"] != float64(sent) || got["bytes_out"] != float64(sent*len(payload)) {
		t.Fatalf("after %d frames of %d bytes: %v", sent, len(payload), got)
	}
}

// A ClientID that is not UTF-8 is given as id_base64, and can be asked
// for and kicked by it or by its URL-encoded bytes.
func TestClientsBinaryID(t *testing.T) {
	h := startAPI(t, nil)
	id := "\xff\xfe bin\x00"
	c := dialRaw(t, h.relay)
	login, _ := protocol.AppendLogin(nil, id)
	if _, err := c.Write(login); err != nil {
		t.Fatal(err)
	}
	h.waitOnline(id)
	h.dial("text")

	_, _, body := h.do("GET", "/clients")
	if !json.Valid(body) || !utf8.Valid(body) {
		t.Fatalf("/clients is not valid JSON: %q", body)
	}
	l := h.list()
	b64 := base64.StdEncoding.EncodeToString([]byte(id))
	// Ordered by the ID's bytes: 0xff sorts last.
	if len(l) != 2 || l[1]["id_base64"] != b64 || l[1]["id"] != nil || l[0]["id"] != "text" || l[0]["id_base64"] != nil {
		t.Fatalf("/clients: %v, want text, then id_base64 %s", l, b64)
	}
	for _, q := range []string{
		"id=" + url.QueryEscape(id),
		"id_base64=" + url.QueryEscape(b64),
		"id_base64=" + strings.TrimRight(b64, "="), // unpadded, "+" unescaped
		"id_base64=" + base64.RawURLEncoding.EncodeToString([]byte(id)),
	} {
		code, _, body := h.do("GET", "/clients?"+q)
		var m map[string]any
		if code != 200 || json.Unmarshal(body, &m) != nil || m["id_base64"] != b64 {
			t.Errorf("/clients?%s: %d %s", q, code, body)
		}
	}
	code, _, body := h.do("POST", "/clients/kick?id_base64="+url.QueryEscape(b64))
	if code != 200 || string(body) != `{"id_base64":"`+b64+`","kicked":true}`+"\n" {
		t.Fatalf("kick by id_base64: %d %s", code, body)
	}
	waitClosed(t, c)
}

// Kicking through the API closes the client's connection as kicked, and
// the request errors say what to fix.
func TestKick(t *testing.T) {
	h := startAPI(t, nil)
	h.dial("alice")
	_, bobConn := h.dial("bob")

	code, ctype, body := h.do("POST", "/clients/kick?id=bob")
	if code != 200 || ctype != "application/json" || string(body) != `{"id":"bob","kicked":true}`+"\n" {
		t.Fatalf("kick bob: %d %s %s", code, ctype, body)
	}
	waitClosed(t, bobConn)
	wait.For(t, 10*time.Second, `relayd_disconnects_total{reason="kicked"} never became 1`, func() bool {
		_, _, m := h.do("GET", "/metrics")
		return bytes.Contains(m, []byte(`relayd_disconnects_total{reason="kicked"} 1`+"\n"))
	})
	if l := h.list(); len(l) != 1 || l[0]["id"] != "alice" {
		t.Fatalf("after the kick: %v", l)
	}

	for _, tc := range []struct {
		method, path string
		code         int
		want         string // in the body
	}{
		{"POST", "/clients/kick?id=bob", 404, `"error":"client \"bob\" is not logged in on this node"`},
		{"GET", "/clients?id=bob", 404, `is not logged in on this node`},
		{"GET", "/clients/kick?id=alice", 405, ""},
		{"POST", "/clients", 405, ""},
		{"POST", "/clients/kick", 400, `?id=ID`},
		{"POST", "/clients/kick?id=", 400, `1 to 255 bytes`},
		{"POST", "/clients/kick?id=" + strings.Repeat("x", 256), 400, `1 to 255 bytes`},
		{"POST", "/clients/kick?id=alice&id_base64=YWxpY2U=", 400, `either id or id_base64`},
		{"GET", "/clients?id_base64=***", 400, `id_base64 is not base64`},
		{"GET", "/clients?id=", 400, `1 to 255 bytes`},
	} {
		code, _, body := h.do(tc.method, tc.path)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: %d %s, want %d with %q", tc.method, tc.path, code, body, tc.code, tc.want)
		}
	}
	// Alice was never touched by the refused requests.
	if l := h.list(); len(l) != 1 || l[0]["id"] != "alice" {
		t.Fatalf("after the refused requests: %v", l)
	}
}

// /debug/pprof/ follows the switch from one request to the next.
func TestPprofSwitch(t *testing.T) {
	h := startAPI(t, nil)
	paths := []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline", "/debug/pprof/symbol"}
	check := func(want int) {
		t.Helper()
		for _, p := range paths {
			if code, _, body := h.do("GET", p); code != want {
				t.Errorf("pprof %v: GET %s: %d %.100s, want %d", h.pprof.Load(), p, code, body, want)
			}
		}
	}
	check(404)
	h.pprof.Store(true)
	check(200)
	if _, _, body := h.do("GET", "/debug/pprof/goroutine?debug=1"); !bytes.Contains(body, []byte("goroutine profile:")) {
		t.Errorf("goroutine profile: %.200s", body)
	}
	h.pprof.Store(false)
	check(404)
}

func TestRequestedID(t *testing.T) {
	for _, tc := range []struct {
		query   string
		id      string
		one     bool
		wantErr string
	}{
		{"", "", false, ""},
		{"other=1", "", false, ""},
		{"id=alice", "alice", true, ""},
		{"id=a%20b%2Bc", "a b+c", true, ""},
		{"id=%FF%00", "\xff\x00", true, ""},
		{"id_base64=%2F%2F8%3D", "\xff\xff", true, ""}, // "//8=" escaped
		{"id_base64=//8=", "\xff\xff", true, ""},
		{"id_base64=__8", "\xff\xff", true, ""},  // URL alphabet, unpadded
		{"id_base64=a+b=", "k\xe6", true, ""},    // "a+b=" with + unescaped: space
		{"id_base64=YW+x", "ao\xb1", true, ""},   // a real "+" inside
		{"id_base64=YWxpY2U", "alice", true, ""}, // unpadded
		{"id=", "", false, "1 to 255 bytes"},
		{"id_base64=", "", false, "1 to 255 bytes"},
		{"id_base64=!!", "", false, "not base64"},
		{"id_base64=YWxpY2U===", "alice", true, ""},
		{"id=" + strings.Repeat("a", 255), strings.Repeat("a", 255), true, ""},
		{"id=" + strings.Repeat("a", 256), "", false, "1 to 255 bytes"},
		{"id=a&id_base64=YQ", "", false, "not both"},
	} {
		r, err := http.NewRequest("GET", "http://x/clients?"+tc.query, nil)
		if err != nil {
			t.Fatal(err)
		}
		id, one, err := requestedID(r)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.query, err, tc.wantErr)
			}
		case err != nil || id != tc.id || one != tc.one:
			t.Errorf("%q: %q %v %v, want %q %v", tc.query, id, one, err, tc.id, tc.one)
		}
	}
}

// Whatever the bytes of a ClientID, its JSON is valid and gives the bytes
// back, from id or from id_base64.
func FuzzIDJSON(f *testing.F) {
	for _, s := range []string{"alice", "\xff", "a\"b\\c\n", "\u2028", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		b, err := json.Marshal(encodeID(id))
		if err != nil || !json.Valid(b) {
			t.Fatalf("%q: %s %v", id, b, err)
		}
		var back struct {
			ID       *string `json:"id"`
			IDBase64 *string `json:"id_base64"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		switch {
		case back.ID != nil && back.IDBase64 == nil:
			if *back.ID != id {
				t.Fatalf("%q came back as %q", id, *back.ID)
			}
		case back.ID == nil && back.IDBase64 != nil:
			got, err := decodeBase64ID(*back.IDBase64)
			if err != nil || got != id {
				t.Fatalf("%q came back as %q (%v)", id, got, err)
			}
		default:
			t.Fatalf("%q: %s has not exactly one of id and id_base64", id, b)
		}
	})
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitClosed waits until the relay closes c.
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("connection not closed by the relay: %v", err)
	}
}

// Behind web_config_file, the API needs the password like everything else:
// nobody lists or kicks clients without it.
func TestAPIBehindBasicAuth(t *testing.T) {
	srv, relay := relaytest.Start(t, nil)
	path, hc := webConfig(t, "ops", "s3cret")
	a, err := Listen("127.0.0.1:0", path, Handler(prometheus.NewRegistry(), Endpoints{
		Ready: func() bool { return true }, Clients: srv.Clients, Kick: srv.Kick, Pprof: func() bool { return true },
	}), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(context.Background()) })
	c := dialRaw(t, relay)
	login, _ := protocol.AppendLogin(nil, "alice")
	if _, err := c.Write(login); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 10*time.Second, "alice never logged in", func() bool { return len(srv.Clients("alice")) == 1 })

	base := "https://" + a.Addr().String()
	do := func(method, path, password string) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if password != "" {
			req.SetBasicAuth("ops", password)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, p := range []string{"/clients", "/clients?id=alice", "/debug/pprof/"} {
		if code := do("GET", p, ""); code != 401 {
			t.Errorf("GET %s without a password: %d", p, code)
		}
		if code := do("GET", p, "s3cret"); code != 200 {
			t.Errorf("GET %s with the password: %d", p, code)
		}
	}
	if code := do("POST", "/clients/kick?id=alice", "guess"); code != 401 {
		t.Fatalf("kick with a wrong password: %d", code)
	}
	if len(srv.Clients("alice")) != 1 {
		t.Fatal("kicked without the password")
	}
	if code := do("POST", "/clients/kick?id=alice", "s3cret"); code != 200 {
		t.Fatalf("kick with the password: %d", code)
	}
	waitClosed(t, c)
}
