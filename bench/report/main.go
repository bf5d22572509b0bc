// Command bench-report turns the results of bench/compare.sh into a
// markdown table with the ratios relayd/nats and relayd/direct (the direct
// ceiling on one core: what the pinned relay's load generator can do on its
// core), what each relay lost, reordered and held in flight, and an SVG
// chart of each system's throughput as a fraction of that ceiling.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

type result struct {
	Mode         string  `json:"mode"`
	Loop         string  `json:"loop"`
	Pairs        int     `json:"pairs"`
	Size         int     `json:"payload_bytes"`
	FramesPerSec float64 `json:"frames_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
	Sent         uint64  `json:"sent"`
	Drops        uint64  `json:"drops"`
	Gaps         uint64  `json:"gaps"`
	Reordered    uint64  `json:"reordered"`
	InFlight     uint64  `json:"in_flight"`
	LoadBefore   string  `json:"load_before"` // machine: /proc/loadavg's first three fields
	LoadAfter    string  `json:"load_after"`
	Commit       string  `json:"commit"`
	ServerCores  float64 `json:"server_cpu_cores"`
	BenchCores   float64 `json:"bench_cpu_cores"`
	// ProcessCores: the cluster cell's nodes and NATS server, by name.
	ProcessCores map[string]float64 `json:"process_cpu_cores"`
	P50          float64            `json:"p50_us"`
	P99          float64            `json:"p99_us"`
	P999         float64            `json:"p999_us"`
	BytesPerConn float64            `json:"server_rss_bytes_per_conn"`
	Conns        int                `json:"conns"`
}

type line struct {
	System string `json:"system"`
	Result result `json:"result"`
}

type cell struct{ size, pairs int }

func main() {
	in := flag.String("in", "docs/benchmarks/results.json", "results from bench/compare.sh")
	tablePath := flag.String("table", "", "also write the markdown table here")
	chartPath := flag.String("chart", "", "write the SVG chart here")
	flag.Parse()

	f, err := os.Open(*in)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	rs, err := parse(f)
	if err != nil {
		log.Fatalf("%s: %v", *in, err)
	}
	table := rs.table()
	io.WriteString(os.Stdout, table)
	if *tablePath != "" {
		if err := os.WriteFile(*tablePath, []byte(table), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *chartPath != "" {
		if err := chart(*chartPath, rs.order, rs.tp); err != nil {
			log.Fatal(err)
		}
	}
}

// results are the lines of a results.json, grouped.
type results struct {
	tp      map[cell]map[string]result // throughput cell → system → result
	order   []cell
	other   map[string]map[string]result // mode → system → result
	latency map[string][]result          // system → every latency round
	machine result
}

func parse(r io.Reader) (*results, error) {
	rs := &results{tp: map[cell]map[string]result{}, other: map[string]map[string]result{}, latency: map[string][]result{}}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, err
		}
		r := l.Result
		switch r.Mode {
		case "throughput", "direct":
			if l.System == "direct" { // before the one-core ceiling was measured
				l.System = "direct2"
			}
			c := cell{r.Size, r.Pairs}
			if rs.tp[c] == nil {
				rs.tp[c] = map[string]result{}
			}
			if _, seen := rs.tp[c]["relayd"]; !seen && l.System == "relayd" {
				// The main table's rows: the cells relayd ran on a
				// single node over TCP, in the order they ran.
				rs.order = append(rs.order, c)
			}
			rs.tp[c][l.System] = r
		case "latency":
			rs.latency[l.System] = append(rs.latency[l.System], r)
		case "machine":
			rs.machine = r
		default:
			if rs.other[r.Mode] == nil {
				rs.other[r.Mode] = map[string]result{}
			}
			rs.other[r.Mode][l.System] = r
		}
	}
	return rs, sc.Err()
}

func (rs *results) table() string {
	var b strings.Builder
	loop := "open"
	for _, c := range rs.order {
		if l := rs.tp[c]["relayd"].Loop; l != "" {
			loop = l
		}
	}
	fmt.Fprintf(&b, "Throughput, %s loop. Ratios are relayd's frames/s over nats-server's and over direct on one core.\n", loop)
	fmt.Fprintf(&b, "Lost = frames sent and never received (after the senders stopped and in-flight frames settled) / sequence gaps / reordered.\n\n")
	fmt.Fprintln(&b, "| payload × pairs | relayd frames/s | relayd MB/s | nats frames/s | direct, 1 core | direct, 2 cores | relayd/nats | relayd/direct (1 core) | relayd lost/gaps/reordered | relayd in flight | nats lost/gaps/reordered | nats in flight | relayd server CPU | its load generator's CPU |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range rs.order {
		r, n, d1, d2 := rs.tp[c]["relayd"], rs.tp[c]["nats"], rs.tp[c]["direct1"], rs.tp[c]["direct2"]
		fmt.Fprintf(&b, "| %s × %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f cores | %.2f cores |\n",
			size(c.size), c.pairs, num(r.FramesPerSec), r.MBPerSec, num(n.FramesPerSec), num(d1.FramesPerSec), num(d2.FramesPerSec),
			ratio(r.FramesPerSec, n.FramesPerSec), ratio(r.FramesPerSec, d1.FramesPerSec),
			lost(r), num(float64(r.InFlight)), lost(n), num(float64(n.InFlight)), r.ServerCores, r.BenchCores)
	}
	if rl, nl := rs.latency["relayd"], rs.latency["nats"]; len(rl) > 0 && len(nl) > 0 {
		r, n := medians(rl), medians(nl)
		fmt.Fprintf(&b, "\n| 64 B round trip (median of %d rounds) | p50 | p99 | p999 | p50 of each round |\n|---|---:|---:|---:|---|\n", len(rl))
		fmt.Fprintf(&b, "| relayd | %.0f µs | %.0f µs | %.0f µs | %s |\n", r.P50, r.P99, r.P999, p50s(rl))
		fmt.Fprintf(&b, "| nats-server | %.0f µs | %.0f µs | %.0f µs | %s |\n", n.P50, n.P99, n.P999, p50s(nl))
		fmt.Fprintf(&b, "| relayd/nats | %s | %s | %s | |\n", ratio(r.P50, n.P50), ratio(r.P99, n.P99), ratio(r.P999, n.P999))
	}
	if l := rs.other["idle"]; l != nil {
		r, n := l["relayd"], l["nats"]
		fmt.Fprintf(&b, "\n| idle connections | server RSS per connection |\n|---|---:|\n")
		fmt.Fprintf(&b, "| relayd, %d | %.1f KiB |\n| nats-server, %d | %.1f KiB |\n", r.Conns, r.BytesPerConn/1024, n.Conns, n.BytesPerConn/1024)
	}
	rs.wsTable(&b)
	rs.clusterTable(&b)
	if m := rs.machine; m.LoadBefore != "" {
		fmt.Fprintf(&b, "\nLoad average (1, 5, 15 min) before the run: %s; after: %s (commit %s).\n", m.LoadBefore, m.LoadAfter, m.Commit)
	}
	return b.String()
}

// The cells that compare relayd with itself: its websocket listener
// against its TCP one, and two clustered nodes against a single node.
var wideCell = cell{1024, 64}

// Targets of issues 12 and 13: ratios, and bytes for memory.
const (
	wsTputTarget, wsIdleTarget               = 0.5, 8 << 10
	crossTputTarget, crossRTTTarget          = 0.5, 3.0
	clusterLocalTarget, directoryBytesTarget = 0.95, 200
)

func (rs *results) wsTable(b *strings.Builder) {
	tcp, ws := rs.tp[wideCell]["relayd"], rs.tp[wideCell]["relayd-ws"]
	ti, wi := rs.other["idle"]["relayd"], rs.other["idle"]["relayd-ws"]
	if ws.FramesPerSec == 0 && wi.Conns == 0 {
		return
	}
	fmt.Fprintf(b, "\n| relayd's websocket listener against its TCP listener (same config) | websocket | TCP | websocket/TCP | target | met | websocket lost/gaps/reordered |\n|---|---:|---:|---:|---|---|---:|\n")
	if ws.FramesPerSec > 0 {
		tputRow(b, fmt.Sprintf("%s × %d, frames/s", size(wideCell.size), wideCell.pairs), ws, tcp, wsTputTarget)
	}
	if wi.Conns > 0 {
		fmt.Fprintf(b, "| idle logged-in connections (%d), server RSS per connection | %.1f KiB | %.1f KiB | %s | ≤ %d KiB | %s | |\n",
			wi.Conns, wi.BytesPerConn/1024, ti.BytesPerConn/1024, ratio(wi.BytesPerConn, ti.BytesPerConn),
			wsIdleTarget>>10, met(wi.BytesPerConn <= wsIdleTarget))
	}
}

// tputRow is a row setting got's frames/s against base's: met at target×
// base or more with no frame lost.
func tputRow(b *strings.Builder, what string, got, base result, target float64) {
	fmt.Fprintf(b, "| %s | %s | %s | %s | ≥ %.1f×, zero drops | %s | %s |\n",
		what, num(got.FramesPerSec), num(base.FramesPerSec), ratio(got.FramesPerSec, base.FramesPerSec),
		target, met(got.FramesPerSec >= target*base.FramesPerSec && got.Drops == 0 && got.Sent > 0), lost(got))
}

func (rs *results) clusterTable(b *strings.Builder) {
	single := rs.tp[wideCell]["relayd"]
	cross, local := rs.tp[wideCell]["cluster-cross"], rs.tp[wideCell]["cluster-local"]
	crl, dir := rs.latency["cluster-cross"], rs.other["idle"]["cluster-directory"]
	if cross.FramesPerSec == 0 && local.FramesPerSec == 0 && len(crl) == 0 && dir.Conns == 0 {
		return
	}
	fmt.Fprintf(b, "\n| two relayd nodes on one nats-server | clustered | single node | clustered/single | target | met | clustered lost/gaps/reordered |\n|---|---:|---:|---:|---|---|---:|\n")
	if cross.FramesPerSec > 0 {
		tputRow(b, fmt.Sprintf("cross-node %s × %d (senders on A, receivers on B), frames/s", size(wideCell.size), wideCell.pairs), cross, single, crossTputTarget)
	}
	if line := cpuPerFrame(cross, single); line != "" {
		fmt.Fprintln(b, line)
	}
	if hs, hc := rs.other["hops"]["hops-single"], rs.other["hops"]["hops-cross"]; hs.MBPerSec > 0 && hc.MBPerSec > 0 {
		// What the shape allows at all: with no protocol, three processes
		// that each copy every byte against one.
		fmt.Fprintf(b, "| the same shapes copy-only (bench/hops: forwarders that only read and write, pinned alike), MB/s | %.0f | %.0f | %s | the ceiling of the first row's ratio | | |\n",
			hc.MBPerSec, hs.MBPerSec, ratio(hc.MBPerSec, hs.MBPerSec))
	}
	if rl := rs.latency["relayd"]; len(crl) > 0 && len(rl) > 0 {
		c, r := medians(crl), medians(rl)
		fmt.Fprintf(b, "| cross-node 64 B round trip p50, median of %d rounds (%s) | %.0f µs | %.0f µs | %s | ≤ %.0f× | %s | |\n",
			len(crl), p50s(crl), c.P50, r.P50, ratio(c.P50, r.P50), crossRTTTarget, met(c.P50 <= crossRTTTarget*r.P50))
		fmt.Fprintf(b, "| cross-node 64 B round trip p99 | %.0f µs | %.0f µs | %s | | | |\n", c.P99, r.P99, ratio(c.P99, r.P99))
	}
	if local.FramesPerSec > 0 {
		fmt.Fprintf(b, "| local pairs on a clustered node, %s × %d, frames/s | %s | %s | %s | within 5 %% | %s | %s |\n",
			size(wideCell.size), wideCell.pairs, num(local.FramesPerSec), num(single.FramesPerSec), ratio(local.FramesPerSec, single.FramesPerSec),
			met(local.FramesPerSec >= clusterLocalTarget*single.FramesPerSec), lost(local))
	}
	if dir.Conns > 0 {
		fmt.Fprintf(b, "| node B's RSS per client logged in on node A (%d clients) | %.0f B | | | ≤ %d B at 100,000 | %s | |\n",
			dir.Conns, dir.BytesPerConn, directoryBytesTarget, met(dir.BytesPerConn <= directoryBytesTarget))
	}
}

// cpuPerFrame says what one cross-node frame cost each process of the
// cluster (the server core's time, in µs) against what a frame cost the
// single node: the nodes and the NATS server share that core, so the
// cross-node rate can be at most the single node's over their sum.
func cpuPerFrame(cross, single result) string {
	if cross.FramesPerSec == 0 || single.FramesPerSec == 0 || single.ServerCores <= 0 || len(cross.ProcessCores) == 0 {
		return ""
	}
	names := make([]string, 0, len(cross.ProcessCores))
	for name := range cross.ProcessCores {
		names = append(names, name)
	}
	sort.Strings(names)
	var parts []string
	var sum float64
	for _, name := range names {
		c := cross.ProcessCores[name]
		if c < 0 {
			parts = append(parts, name+" n/a")
			sum = -1
			continue
		}
		us := c * 1e6 / cross.FramesPerSec
		if sum >= 0 {
			sum += us
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", name, us))
	}
	one := single.ServerCores * 1e6 / single.FramesPerSec
	if sum < 0 {
		return fmt.Sprintf("| cross-node CPU per frame on the server core, µs (%s) | n/a | %.2f | | | | |", strings.Join(parts, ", "), one)
	}
	return fmt.Sprintf("| cross-node CPU per frame on the server core, µs (%s) | %.2f | %.2f | %s | | | |",
		strings.Join(parts, ", "), sum, one, ratio(sum, one))
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

// lost formats a relay's losses: sent and never received, sequence gaps, reordered.
func lost(r result) string {
	if r.Sent == 0 && r.Drops == 0 {
		return "n/a" // results from before frames were counted sent
	}
	return fmt.Sprintf("%d / %d / %d", r.Drops, r.Gaps, r.Reordered)
}

// medians returns the median of each latency percentile over rounds.
func medians(rounds []result) result {
	median := func(get func(result) float64) float64 {
		v := make([]float64, len(rounds))
		for i, r := range rounds {
			v[i] = get(r)
		}
		sort.Float64s(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return result{
		P50:  median(func(r result) float64 { return r.P50 }),
		P99:  median(func(r result) float64 { return r.P99 }),
		P999: median(func(r result) float64 { return r.P999 }),
	}
}

func p50s(rounds []result) string {
	s := make([]string, len(rounds))
	for i, r := range rounds {
		s[i] = fmt.Sprintf("%.0f", r.P50)
	}
	return strings.Join(s, ", ") + " µs"
}

// chart draws relayd's and nats-server's frames/s as a fraction of the
// one-core direct ceiling, one group of bars per cell.
func chart(path string, order []cell, tp map[cell]map[string]result) error {
	p := plot.New()
	p.Title.Text = "Throughput as a fraction of direct loopback on one core (higher is better)"
	p.Y.Label.Text = "frames/s ÷ direct (1 core)"
	var relayd, nats plotter.Values
	var labels []string
	for _, c := range order {
		d := tp[c]["direct1"].FramesPerSec
		if d == 0 {
			d = 1
		}
		relayd = append(relayd, tp[c]["relayd"].FramesPerSec/d)
		nats = append(nats, tp[c]["nats"].FramesPerSec/d)
		labels = append(labels, fmt.Sprintf("%s×%d", size(c.size), c.pairs))
	}
	w := vg.Points(14)
	br, err := plotter.NewBarChart(relayd, w)
	if err != nil {
		return err
	}
	br.Color = plotutil.Color(0)
	br.Offset = -w / 2
	bn, err := plotter.NewBarChart(nats, w)
	if err != nil {
		return err
	}
	bn.Color = plotutil.Color(1)
	bn.Offset = w / 2
	p.Add(br, bn)
	p.Legend.Add("relayd", br)
	p.Legend.Add("nats-server v2.15.2", bn)
	p.Legend.Top = true
	p.NominalX(labels...)
	return p.Save(9*vg.Inch, 4*vg.Inch, path)
}

func size(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

func num(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f k", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", a/b)
}
