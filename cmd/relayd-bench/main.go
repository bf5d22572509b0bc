// Command relayd-bench generates load against a relay and measures it.
//
//	relayd-bench throughput --pairs 64 --size 1024 --duration 10s [--closed-loop] [--server-pid PID]
//	relayd-bench throughput --ws ws://127.0.0.1:8080/relay --pairs 64 --size 1024
//	relayd-bench throughput --addr NODE_A --recv-addr NODE_B --pairs 64 --size 1024
//	relayd-bench latency --pairs 1 --size 64 [--rate 10000] [--ws URL] [--recv-addr ADDR | --recv-ws URL]
//	relayd-bench idle --conns 10000 --server-pid PID [--ws URL]
//	relayd-bench soak [--duration 5m] [--pairs 12] [--size 1048576] [--seed N]
//
// Human-readable output, with a live progress line on a terminal; --json
// prints one JSON object instead.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/bench"
	"github.com/relayd/relayd/internal/soak"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: relayd-bench MODE [flags]

modes:
  throughput   sender → receiver pairs flat out (open loop by default); frames/s and MB/s
               at the receivers, frames dropped, reordered and in flight
  latency      ping-pong round trips, or one-way latency at a fixed --rate
  idle         many logged-in, heart-beating connections; server memory per connection
  soak         an in-process relayd under a random mix of open-loop pairs, stalls, takeover
               storms and reconnects, then SIGTERM; one summary line, exit 1 on any frame
               lost without a counted reason, corrupted or reordered

Clients connect over TCP to --addr, or over WebSocket to --ws. With --recv-addr or --recv-ws
the receivers (and the echoing end of a round trip) connect to another relay than the senders:
another node of a cluster, so that every frame crosses it.

relayd-bench MODE -h lists the flags (one set for every mode; each says which modes use it).
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	mode := args[0]
	fs := flag.NewFlagSet("relayd-bench "+mode, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c bench.Common
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:33333", "relay `address`")
	fs.StringVar(&c.WS, "ws", "", "connect over WebSocket to this `URL` (ws://host:port/path) instead of --addr (throughput, latency, idle)")
	fs.StringVar(&c.RecvAddr, "recv-addr", "", "receivers connect to this relay `address` instead: another cluster node (throughput, latency)")
	fs.StringVar(&c.RecvWS, "recv-ws", "", "receivers connect over WebSocket to this `URL` instead: another cluster node (throughput, latency)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the relay's `PID`, to measure its CPU and memory")
	fs.Var(cpuPIDs{&c.CPUPIDs}, "cpu-pid", "`NAME=PID` of another process whose CPU to report, such as a cluster node or its NATS server; repeatable (throughput)")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "traffic before the measured window")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "the measured window; soak: the traffic before the SIGTERM, default 5m")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	pairs := fs.Int("pairs", 1, "sender/receiver pairs (throughput, latency; soak: default 12)")
	size := fs.Int("size", 64, "payload `bytes` (throughput, latency); soak: the largest, default 1 MiB")
	openLoop := fs.Bool("open-loop", true, "senders write as fast as TCP allows, through a buffer written when full, no window (throughput)")
	closedLoop := fs.Bool("closed-loop", false, "senders keep at most --window bytes ahead of their receivers; the same as --open-loop=false (throughput)")
	window := fs.Int("window", 4<<20, "`bytes` a sender may have in flight to its receiver, closed loop (throughput)")
	settle := fs.Duration("settle", 2*time.Second, "after the window, frames still in flight count as dropped once none has arrived for this long (throughput)")
	direct := fs.Bool("direct", false, "no relay: send the same frames straight between two sockets, the ceiling (throughput)")
	rate := fs.Float64("rate", 0, "open-loop frames/s in all; 0 = closed-loop ping-pong (latency)")
	conns := fs.Int("conns", 10000, "connections to hold (idle)")
	heartbeat := fs.Duration("heartbeat", 30*time.Second, "heartbeat interval of idle connections (idle)")
	parallel := fs.Int("parallel", 64, "concurrent dials (idle)")
	seed := fs.Uint64("seed", 0, "random seed, to repeat a run; 0 = from the clock (soak)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if isTerminal(stderr) && !*asJSON {
		c.Progress = func(line string) { fmt.Fprintf(stderr, "\r\033[K%s", line) }
	}

	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["cpu-pid"] && mode != "throughput" {
		fmt.Fprintf(stderr, "relayd-bench: %s reports no CPU of other processes: drop --cpu-pid\n", mode)
		return 2
	}
	stopOn := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if mode == "soak" {
		stopOn = stopOn[:1] // the soak sends itself SIGTERM: its relay's shutdown signal
	}
	ctx, stop := signal.NotifyContext(context.Background(), stopOn...)
	defer stop()
	var (
		res    any
		err    error
		human  func() string
		failed bool // the run worked and found something wrong
	)
	switch mode {
	case "throughput":
		run := bench.Throughput
		if *direct {
			if c.WS != "" || c.RecvAddr != "" || c.RecvWS != "" {
				fmt.Fprintln(stderr, "relayd-bench: --direct measures no relay: drop --ws, --recv-addr and --recv-ws")
				return 2
			}
			run = bench.Direct
		}
		var r *bench.ThroughputResult
		r, err = run(ctx, bench.ThroughputConfig{Common: c, Pairs: *pairs, Size: *size,
			OpenLoop: *openLoop && !*closedLoop, Window: *window, Settle: *settle})
		res, human = r, func() string {
			return fmt.Sprintf("%s (%s loop, %s%s)  pairs=%d size=%dB  %.0f frames/s  %.1f MB/s  in flight=%d  sent=%d drops=%d gaps=%d reordered=%d  server=%s bench=%.2f cores",
				r.Mode, r.Loop, r.Transport, crossNode(r.CrossNode), r.Pairs, r.Size, r.FramesPerSec, r.MBPerSec, r.InFlight, r.Sent, r.Drops, r.Gaps, r.Reordered, cores(r.ServerCores), r.BenchCores) +
				processCores(r.ProcessCores)
		}
	case "latency":
		var r *bench.LatencyResult
		r, err = bench.Latency(ctx, bench.LatencyConfig{Common: c, Pairs: *pairs, Size: *size, Rate: *rate})
		res, human = r, func() string {
			what := "round trip"
			if r.Loop == "open" {
				what = fmt.Sprintf("one way at %.0f/s", r.Rate)
			}
			return fmt.Sprintf("latency (%s, %s%s)  pairs=%d size=%dB  p50=%.0fµs p99=%.0fµs p999=%.0fµs max=%.0fµs  (%d samples)",
				what, r.Transport, crossNode(r.CrossNode), r.Pairs, r.Size, r.P50, r.P99, r.P999, r.Max, r.Samples)
		}
	case "idle":
		if c.RecvAddr != "" || c.RecvWS != "" {
			fmt.Fprintln(stderr, "relayd-bench: idle connections have no receivers: drop --recv-addr and --recv-ws (to measure another node's memory for them, give its --server-pid)")
			return 2
		}
		var r *bench.IdleResult
		r, err = bench.Idle(ctx, bench.IdleConfig{Common: c, Conns: *conns, Heartbeat: *heartbeat, Parallel: *parallel})
		res, human = r, func() string {
			return fmt.Sprintf("idle (%s)  conns=%d  server RSS %.1f MiB → %.1f MiB  %.0f bytes per connection  (logged in in %.1fs)",
				r.Transport, r.Conns, float64(r.ServerRSSStart)/(1<<20), float64(r.ServerRSSEnd)/(1<<20), r.BytesPerConn, r.DialSeconds)
		}
	case "soak":
		cfg := soak.Config{Seed: *seed, Log: stderr, Progress: c.Progress}
		if set["duration"] {
			cfg.Duration = c.Duration
		}
		if set["pairs"] {
			cfg.Pairs = *pairs
		}
		if set["size"] {
			cfg.MaxSize = *size
		}
		var r *soak.Result
		r, err = soak.Run(ctx, cfg)
		res, human = r, func() string { return r.String() }
		failed = err == nil && !r.OK()
	default:
		fmt.Fprintf(stderr, "relayd-bench: unknown mode %q\n\n%s", mode, usage)
		return 2
	}
	if c.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(stderr, "relayd-bench: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil || failed {
			return 1
		}
		return 0
	}
	fmt.Fprintln(stdout, human())
	if failed {
		return 1
	}
	return 0
}

func crossNode(b bool) string {
	if b {
		return ", cross-node"
	}
	return ""
}

func cores(v float64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f cores", v)
}

// isTerminal reports whether w is a character device: a terminal (or
// /dev/null, where a progress line does no harm). Portable, unlike TCGETS.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// processCores is " NAME=C cores" for each --cpu-pid process, by name.
func processCores(m map[string]float64) string {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, " %s=%s", name, cores(m[name]))
	}
	return b.String()
}

// cpuPIDs is the repeatable --cpu-pid NAME=PID.
type cpuPIDs struct{ m *map[string]int }

func (f cpuPIDs) String() string {
	if f.m == nil {
		return ""
	}
	var parts []string
	for name, pid := range *f.m {
		parts = append(parts, fmt.Sprintf("%s=%d", name, pid))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (f cpuPIDs) Set(v string) error {
	name, p, ok := strings.Cut(v, "=")
	pid, err := strconv.Atoi(p)
	if !ok || name == "" || err != nil || pid <= 0 {
		return fmt.Errorf("want NAME=PID, such as nats=1234, not %q", v)
	}
	if *f.m == nil {
		*f.m = make(map[string]int)
	}
	if _, dup := (*f.m)[name]; dup {
		return fmt.Errorf("%s given twice", name)
	}
	(*f.m)[name] = pid
	return nil
}
