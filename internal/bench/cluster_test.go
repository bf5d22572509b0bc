package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/relaytest"
)

// startCluster runs an embedded nats-server and two relayd nodes of one
// cluster on it; it returns each node's TCP address and ws:// URL.
func startCluster(t *testing.T) (addrA, addrB, urlB string) {
	t.Helper()
	nats := relaytest.NATSURL(relaytest.StartNATS(t, relaytest.NATSOptions()))
	var addrs [2]string
	for i, node := range []string{"a", "b"} {
		cfg, err := config.Parse("bench.toml", fmt.Appendf(nil, `
[log]
level = "error"
[reload]
watch = false
[cluster]
name = "bench"
node_id = %q
nats_urls = [%q]
node_timeout = "2s"
[[listener]]
name = "plain"
address = "127.0.0.1:0"
[[listener]]
name = "web"
address = "127.0.0.1:0"
transport = "websocket"
ws_path = "/relay"
`, node, nats))
		if err != nil {
			t.Fatal(err)
		}
		d := startDaemon(t, cfg)
		addrs[i] = d.Server().Addrs()["plain"].String()
		if i == 1 {
			urlB = "ws://" + d.Server().Addrs()["web"].String() + "/relay"
		}
	}
	return addrs[0], addrs[1], urlB
}

// Senders on node A, receivers on node B: every frame crosses NATS, and
// none is lost or reordered; the ponger of a round trip sits on node B.
func TestCrossNode(t *testing.T) {
	a, b, urlB := startCluster(t)
	for _, recv := range []Common{{RecvAddr: b}, {RecvWS: urlB}} {
		c := Common{Addr: a, RecvAddr: recv.RecvAddr, RecvWS: recv.RecvWS, ServerPID: os.Getpid(),
			CPUPIDs: map[string]int{"nodes": os.Getpid()},
			Warmup:  100 * time.Millisecond, Duration: 400 * time.Millisecond}
		r, err := Throughput(context.Background(), ThroughputConfig{Common: c, Pairs: 3, Size: 1024, OpenLoop: true})
		if err != nil {
			t.Fatal(err)
		}
		if !r.CrossNode || r.Frames == 0 || r.Drops != 0 || r.Gaps != 0 || r.Reordered != 0 || r.Sent != r.Received {
			t.Fatalf("cross-node throughput to %s: %+v", c.recvEnd(), r)
		}
		if r.ProcessCores["nodes"] <= 0 {
			t.Fatalf("CPU of the nodes' process not measured: %v", r.ProcessCores)
		}
		l, err := Latency(context.Background(), LatencyConfig{Common: c, Pairs: 1, Size: 64})
		if err != nil {
			t.Fatal(err)
		}
		if !l.CrossNode || l.Samples == 0 || l.P50 <= 0 {
			t.Fatalf("cross-node latency to %s: %+v", c.recvEnd(), l)
		}
	}
}
