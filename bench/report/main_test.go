package main

import (
	"reflect"
	"strings"
	"testing"
)

// The latency table reports, per percentile, the median of the rounds.
func TestMedians(t *testing.T) {
	r := func(p50, p99, p999 float64) result { return result{P50: p50, P99: p99, P999: p999} }
	for _, tc := range []struct {
		rounds []result
		want   result
	}{
		{[]result{r(170, 300, 900)}, r(170, 300, 900)},
		{[]result{r(300, 10, 5), r(100, 30, 7), r(200, 20, 6)}, r(200, 20, 6)},               // each percentile on its own
		{[]result{r(100, 1, 1), r(400, 4, 4), r(200, 2, 2), r(300, 3, 3)}, r(250, 2.5, 2.5)}, // even: the mean of the middle two
	} {
		if got := medians(tc.rounds); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("medians(%v) = %v, want %v", tc.rounds, got, tc.want)
		}
	}
	if got := p50s([]result{r(129, 0, 0), r(140.4, 0, 0)}); got != "129, 140 µs" {
		t.Errorf("p50s = %q", got)
	}
}

func TestRatioAndUnits(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{ratio(3, 2), "1.50×"},
		{ratio(1, 0), "n/a"},
		{num(4_760_000), "4.76 M"},
		{num(653_400), "653.4 k"},
		{num(829), "829"},
		{size(64), "64 B"},
		{size(1 << 10), "1 KiB"},
		{size(1 << 20), "1 MiB"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// The table puts relayd against nats-server and against direct on one
// core, and shows each relay's losses and frames in flight per cell.
func TestTable(t *testing.T) {
	in := `{"system":"relayd","result":{"mode":"throughput","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":1500000,"mb_per_sec":1536,"sent":9000000,"drops":3,"gaps":2,"reordered":1,"in_flight":4200,"server_cpu_cores":0.97,"bench_cpu_cores":0.91}}
{"system":"nats","result":{"mode":"throughput","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":750000,"sent":4000000,"in_flight":90000}}
{"system":"direct1","result":{"mode":"direct","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":2000000,"sent":1}}
{"system":"direct2","result":{"mode":"direct","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":3000000,"sent":1}}
{"system":"machine","result":{"mode":"machine","loop":"open","load_before":"0.10 0.20 0.30","load_after":"1.50 1.00 0.50","commit":"abc1234"}}
`
	rs, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	got := rs.table()
	for _, want := range []string{
		"open loop",
		"| 1 KiB × 64 | 1.50 M | 1536 | 750.0 k | 2.00 M | 3.00 M | 2.00× | 0.75× | 3 / 2 / 1 | 4.2 k | 0 / 0 / 0 | 90.0 k | 0.97 cores | 0.91 cores |",
		"before the run: 0.10 0.20 0.30; after: 1.50 1.00 0.50 (commit abc1234)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

// The websocket and cluster cells are set against the single-node TCP
// cells of the same run, with their targets.
func TestWSAndClusterTables(t *testing.T) {
	in := `{"system":"relayd","result":{"mode":"throughput","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":1000000,"sent":9000000,"server_cpu_cores":1}}
{"system":"relayd-ws","result":{"mode":"throughput","loop":"open","transport":"websocket","pairs":64,"payload_bytes":1024,"frames_per_sec":600000,"sent":5000000}}
{"system":"cluster-cross","result":{"mode":"throughput","loop":"open","cross_node":true,"pairs":64,"payload_bytes":1024,"frames_per_sec":400000,"sent":3000000,"drops":7,"gaps":7,"process_cpu_cores":{"node-a":0.3,"nats":0.3,"node-b":0.4}}}
{"system":"cluster-local","result":{"mode":"throughput","loop":"open","pairs":64,"payload_bytes":1024,"frames_per_sec":970000,"sent":8000000}}
{"system":"relayd","result":{"mode":"latency","loop":"closed","pairs":1,"payload_bytes":64,"p50_us":100,"p99_us":300}}
{"system":"cluster-cross","result":{"mode":"latency","loop":"closed","pairs":1,"payload_bytes":64,"p50_us":350,"p99_us":900}}
{"system":"relayd","result":{"mode":"idle","conns":10000,"server_rss_bytes_per_conn":3072}}
{"system":"relayd-ws","result":{"mode":"idle","conns":10000,"server_rss_bytes_per_conn":4096}}
{"system":"cluster-directory","result":{"mode":"idle","conns":10000,"server_rss_bytes_per_conn":150}}
{"system":"hops-single","result":{"mode":"hops","topology":"single","pairs":64,"mb_per_sec":2000}}
{"system":"hops-cross","result":{"mode":"hops","topology":"cross","pairs":64,"mb_per_sec":500}}
`
	rs, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs.order) != 1 {
		t.Fatalf("main table rows %v: only relayd's single-node cells belong there", rs.order)
	}
	got := rs.table()
	for _, want := range []string{
		"| 1 KiB × 64, frames/s | 600.0 k | 1.00 M | 0.60× | ≥ 0.5×, zero drops | met | 0 / 0 / 0 |",
		"| idle logged-in connections (10000), server RSS per connection | 4.0 KiB | 3.0 KiB | 1.33× | ≤ 8 KiB | met | |",
		"| cross-node 1 KiB × 64 (senders on A, receivers on B), frames/s | 400.0 k | 1.00 M | 0.40× | ≥ 0.5×, zero drops | **missed** | 7 / 7 / 0 |",
		"| cross-node CPU per frame on the server core, µs (nats 0.75, node-a 0.75, node-b 1.00) | 2.50 | 1.00 | 2.50× | | | |",
		"| the same shapes copy-only (bench/hops: forwarders that only read and write, pinned alike), MB/s | 500 | 2000 | 0.25× | the ceiling of the first row's ratio | | |",
		"| cross-node 64 B round trip p50, median of 1 rounds (350 µs) | 350 µs | 100 µs | 3.50× | ≤ 3× | **missed** | |",
		"| local pairs on a clustered node, 1 KiB × 64, frames/s | 970.0 k | 1.00 M | 0.97× | within 5 % | met | 0 / 0 / 0 |",
		"| node B's RSS per client logged in on node A (10000 clients) | 150 B | | | ≤ 200 B at 100,000 | met | |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}
