package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/syncbuf"
	"github.com/relayd/relayd/internal/wait"
)

// startNATS runs an embedded nats-server on a kernel-chosen loopback port.
func startNATS(t *testing.T, maxPayload int32) string {
	t.Helper()
	o := relaytest.NATSOptions()
	o.MaxPayload = maxPayload
	return relaytest.NATSURL(relaytest.StartNATS(t, o))
}

// startNode starts a relayd daemon that joins the cluster at natsURL.
func startNode(t *testing.T, node, natsURL string) *harness {
	t.Helper()
	return startDaemon(t, fmt.Sprintf(`
[cluster]
name = "test"
node_id = %q
nats_urls = [%q]
node_timeout = "1s"
`, node, natsURL))
}

func dialTo(t *testing.T, addr, id string) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), addr, id, &client.Options{Heartbeat: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Two relayd nodes share one registry over NATS: clients on either reach
// each other byte for byte, a login on one node kicks the same ID on the
// other, an open-loop stream between nodes loses nothing, and the cluster
// metrics say so.
func TestClusterOfTwoNodes(t *testing.T) {
	url := startNATS(t, 1<<20)
	a := startNode(t, "a", url)
	b := startNode(t, "b", url)
	for _, h := range []*harness{a, b} {
		h.waitMetric("relayd_cluster_nodes", 2)
		h.waitMetric("relayd_cluster_connected", 1)
	}

	alice := dialTo(t, a.addr, "alice")
	bob := dialTo(t, b.addr, "bob")
	a.waitMetric("relayd_cluster_remote_clients", 1)
	b.waitMetric("relayd_cluster_remote_clients", 1)

	// Both ways, byte for byte.
	if err := alice.Send("bob", []byte("hello from a")); err != nil {
		t.Fatal(err)
	}
	_ = bob.SetReadDeadline(time.Now().Add(5 * time.Second))
	m, err := bob.Recv()
	if err != nil || string(m.From) != "alice" || string(m.Payload) != "hello from a" {
		t.Fatalf("bob got %+v, %v", m, err)
	}
	if err := bob.Send("alice", []byte("hello from b")); err != nil {
		t.Fatal(err)
	}
	_ = alice.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := alice.Recv(); err != nil || string(m.From) != "bob" || string(m.Payload) != "hello from b" {
		t.Fatalf("alice got %+v, %v", m, err)
	}

	// An open-loop stream of 1 KiB frames from one node to the other,
	// through a send_queue of 128 KiB: nothing lost, nothing reordered.
	const frames = 20000
	done := make(chan error, 1)
	go func() {
		_ = bob.SetReadDeadline(time.Now().Add(60 * time.Second))
		for i := uint64(0); i < frames; i++ {
			m, err := bob.Recv()
			if err != nil {
				done <- fmt.Errorf("after %d frames: %w", i, err)
				return
			}
			if got := binary.BigEndian.Uint64(m.Payload); got != i {
				done <- fmt.Errorf("frame %d arrived where %d was due", got, i)
				return
			}
		}
		done <- nil
	}()
	p := make([]byte, 1024)
	for i := uint64(0); i < frames; i++ {
		binary.BigEndian.PutUint64(p, i)
		if err := alice.Queue("bob", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	am, bm := a.metrics(), b.metrics()
	if am["relayd_cluster_frames_sent_total"] < frames || bm["relayd_cluster_frames_received_total"] < frames {
		t.Fatalf("sent %v, received %v", am["relayd_cluster_frames_sent_total"], bm["relayd_cluster_frames_received_total"])
	}
	for _, m := range []map[string]float64{am, bm} {
		for k, v := range m {
			if strings.HasPrefix(k, "relayd_frames_dropped_total") && v != 0 {
				t.Fatalf("%s = %v", k, v)
			}
		}
	}

	// A frame larger than NATS' max_payload (1 MiB here) crosses too.
	big := bytes.Repeat([]byte("x"), 60<<10) // max_payload of the listener is 64 KiB
	if err := alice.Send("bob", big); err != nil {
		t.Fatal(err)
	}
	_ = bob.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := bob.Recv(); err != nil || !bytes.Equal(m.Payload, big) {
		t.Fatalf("the large frame: %v", err)
	}

	// Last login wins across nodes: bob logs in on a; his connection on b
	// is kicked.
	bob2 := dialTo(t, a.addr, "bob")
	_ = bob.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := bob.Recv(); err == nil {
		t.Fatal("bob's connection on b got a frame instead of being kicked")
	}
	b.waitMetric("relayd_cluster_kicks_total", 1)
	wait.For(t, 10*time.Second, "frames to bob to reach his new login", func() bool {
		_ = alice.Send("bob", []byte("again"))
		_ = bob2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		m, err := bob2.Recv()
		return err == nil && string(m.Payload) == "again"
	})

	// A node that leaves takes its clients offline on the other.
	b.d.Shutdown("test")
	a.waitMetric("relayd_cluster_nodes", 1)
}

// relayd does not start when NATS cannot be reached; -t does not contact it.
func TestClusterUnreachableAtStart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	cfgText := fmt.Sprintf("[cluster]\nnats_urls = [%q]\nnode_id = \"x\"\n", url)
	h := tryStart(t, cfgText)
	if h == nil || !strings.Contains(h.Error(), "cannot reach NATS") {
		t.Fatalf("start error %v, want one that says NATS cannot be reached", h)
	}
}

// tryStart starts a daemon from cfgText (plus one loopback listener) and
// returns the error Start gave; a daemon that starts is shut down.
func tryStart(t *testing.T, cfgText string) error {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relayd.toml")
	relaytest.WriteConfig(t, path, cfgText+"\n[[listener]]\nname = \"plain\"\naddress = \"127.0.0.1:0\"\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCluster(cfg); err != nil {
		t.Fatalf("relayd -t's check of [cluster]: %v", err)
	}
	d, err := Start(cfg, io.Discard, "test")
	if err == nil {
		d.Shutdown("test over")
	}
	return err
}

// [cluster] reloads all-or-nothing: added, the node joins; pointed at a
// NATS that cannot be reached, the reload fails and the node stays in its
// cluster; removed, it leaves and runs alone.
func TestClusterReload(t *testing.T) {
	url := startNATS(t, 1<<20)
	h := startDaemon(t, "")
	other := startNode(t, "other", url)
	section := func(url string) string {
		return fmt.Sprintf("\n[cluster]\nname = \"test\"\nnode_id = \"h\"\nnats_urls = [%q]\nnode_timeout = \"1s\"\n", url)
	}
	early := h.dial("early") // logged in while the node runs alone
	base := fmt.Sprintf(testConfig, h.d.AdminAddr().String(), "")
	relaytest.WriteConfig(t, h.path, base+section(url))
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	h.waitMetric("relayd_cluster_nodes", 2)
	other.waitMetric("relayd_cluster_nodes", 2)
	// The node announced the login it had before it joined.
	other.waitMetric("relayd_cluster_remote_clients", 1)
	far := dialTo(t, other.addr, "far")
	if err := far.Send("early", []byte("across the reload")); err != nil {
		t.Fatal(err)
	}
	_ = early.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m, err := early.Recv(); err != nil || string(m.Payload) != "across the reload" {
		t.Fatalf("early got %v, %v", m, err)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "nats://" + l.Addr().String()
	l.Close()
	relaytest.WriteConfig(t, h.path, base+section(dead))
	if err := h.d.Reload("test"); err == nil || !strings.Contains(err.Error(), "cannot reach NATS") {
		t.Fatalf("reload to an unreachable NATS: %v", err)
	}
	h.waitMetric("relayd_config_last_reload_successful", 0)
	h.waitMetric("relayd_cluster_nodes", 2) // still in the cluster it had

	relaytest.WriteConfig(t, h.path, base)
	if err := h.d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	other.waitMetric("relayd_cluster_nodes", 1)
	if _, ok := h.metrics()["relayd_cluster_nodes"]; ok {
		t.Fatal("cluster metrics still exported after [cluster] was removed")
	}
}

// A start that fails logs no "started" line: the admin listener is
// announced only once every listener is bound too.
func TestFailedStartAnnouncesNothing(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "relayd.toml")
	relaytest.WriteConfig(t, path, fmt.Sprintf("[admin]\naddress = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"plain\"\naddress = %q\n", busy.Addr().String()))
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	if d, err := Start(cfg, &log, "test"); err == nil {
		d.Shutdown("test over")
		t.Fatal("started although the listener's address is in use")
	}
	if strings.Contains(log.String(), "started") {
		t.Fatalf("a failed start logged a \"started\" line:\n%s", log.String())
	}
}

// The reload summary names the listeners a reload added and removed.
func TestReloadSummaryNamesListeners(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relayd.toml")
	one := "[[listener]]\nname = \"one\"\naddress = \"127.0.0.1:0\"\n"
	two := "[[listener]]\nname = \"two\"\naddress = \"127.0.0.1:0\"\n"
	relaytest.WriteConfig(t, path, "[reload]\nwatch = false\n"+one)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var log syncbuf.Buffer
	d, err := Start(cfg, &log, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Shutdown("test over")
	relaytest.WriteConfig(t, path, "[reload]\nwatch = false\n"+two)
	if err := d.Reload("test"); err != nil {
		t.Fatal(err)
	}
	want := `changed="listener \"two\" added,listener \"one\" removed"`
	if !strings.Contains(log.String(), want) {
		t.Fatalf("the reload log does not say %s:\n%s", want, log.String())
	}
}
