// Command bench-report turns the results of bench/compare.sh into a
// markdown table with the ratios relayd/nats and relayd/direct, and an SVG
// chart of each system's throughput as a fraction of the direct ceiling.
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
	Pairs        int     `json:"pairs"`
	Size         int     `json:"payload_bytes"`
	FramesPerSec float64 `json:"frames_per_sec"`
	MBPerSec     float64 `json:"mb_per_sec"`
	Drops        uint64  `json:"drops"`
	Reordered    uint64  `json:"reordered"`
	ServerCores  float64 `json:"server_cpu_cores"`
	BenchCores   float64 `json:"bench_cpu_cores"`
	P50          float64 `json:"p50_us"`
	P99          float64 `json:"p99_us"`
	P999         float64 `json:"p999_us"`
	BytesPerConn float64 `json:"server_rss_bytes_per_conn"`
	Conns        int     `json:"conns"`
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
	tp := map[cell]map[string]result{}
	var order []cell
	other := map[string]map[string]result{} // mode → system → result
	latency := map[string][]result{}        // system → every latency round
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			log.Fatalf("%s: %v", *in, err)
		}
		r := l.Result
		if r.Mode == "throughput" || r.Mode == "direct" {
			c := cell{r.Size, r.Pairs}
			if tp[c] == nil {
				tp[c] = map[string]result{}
				order = append(order, c)
			}
			tp[c][l.System] = r
			continue
		}
		if r.Mode == "latency" {
			latency[l.System] = append(latency[l.System], r)
			continue
		}
		if other[r.Mode] == nil {
			other[r.Mode] = map[string]result{}
		}
		other[r.Mode][l.System] = r
	}

	var b strings.Builder
	fmt.Fprintln(&b, "| payload × pairs | relayd frames/s | relayd MB/s | nats frames/s | direct frames/s | relayd/nats | relayd/direct | relayd drops/reordered | relayd server CPU | its load generator's CPU |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range order {
		r, n, d := tp[c]["relayd"], tp[c]["nats"], tp[c]["direct"]
		fmt.Fprintf(&b, "| %s × %d | %s | %.0f | %s | %s | %s | %s | %d / %d | %.2f cores | %.2f cores |\n",
			size(c.size), c.pairs, num(r.FramesPerSec), r.MBPerSec, num(n.FramesPerSec), num(d.FramesPerSec),
			ratio(r.FramesPerSec, n.FramesPerSec), ratio(r.FramesPerSec, d.FramesPerSec), r.Drops, r.Reordered, r.ServerCores, r.BenchCores)
	}
	if rs, ns := latency["relayd"], latency["nats"]; len(rs) > 0 && len(ns) > 0 {
		r, n := medians(rs), medians(ns)
		fmt.Fprintf(&b, "\n| 64 B round trip (median of %d rounds) | p50 | p99 | p999 | p50 of each round |\n|---|---:|---:|---:|---|\n", len(rs))
		fmt.Fprintf(&b, "| relayd | %.0f µs | %.0f µs | %.0f µs | %s |\n", r.P50, r.P99, r.P999, p50s(rs))
		fmt.Fprintf(&b, "| nats-server | %.0f µs | %.0f µs | %.0f µs | %s |\n", n.P50, n.P99, n.P999, p50s(ns))
		fmt.Fprintf(&b, "| relayd/nats | %s | %s | %s | |\n", ratio(r.P50, n.P50), ratio(r.P99, n.P99), ratio(r.P999, n.P999))
	}
	if l := other["idle"]; l != nil {
		r, n := l["relayd"], l["nats"]
		fmt.Fprintf(&b, "\n| idle connections | server RSS per connection |\n|---|---:|\n")
		fmt.Fprintf(&b, "| relayd, %d | %.1f KiB |\n| nats-server, %d | %.1f KiB |\n", r.Conns, r.BytesPerConn/1024, n.Conns, n.BytesPerConn/1024)
	}
	io.WriteString(os.Stdout, b.String())
	if *tablePath != "" {
		if err := os.WriteFile(*tablePath, []byte(b.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if *chartPath != "" {
		if err := chart(*chartPath, order, tp); err != nil {
			log.Fatal(err)
		}
	}
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
// direct ceiling, one group of bars per cell.
func chart(path string, order []cell, tp map[cell]map[string]result) error {
	p := plot.New()
	p.Title.Text = "Throughput as a fraction of direct loopback (higher is better)"
	p.Y.Label.Text = "frames/s ÷ direct"
	var relayd, nats plotter.Values
	var labels []string
	for _, c := range order {
		d := tp[c]["direct"].FramesPerSec
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
