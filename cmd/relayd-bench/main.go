// Command relayd-bench generates load against a relay and measures it.
//
//	relayd-bench throughput --pairs 64 --size 1024 --duration 10s [--server-pid PID]
//	relayd-bench latency --pairs 1 --size 64 [--rate 10000]
//	relayd-bench idle --conns 10000 --server-pid PID
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
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relayd/relayd/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage: relayd-bench MODE [flags]

modes:
  throughput   sender → receiver pairs flat out; frames/s and MB/s at the receivers
  latency      ping-pong round trips, or one-way latency at a fixed --rate
  idle         many logged-in, heart-beating connections; server memory per connection

relayd-bench MODE -h lists a mode's flags.
`

// settings are what the flags of every mode fill in; each mode's flag set
// registers only the flags that mode reads, so its -h lists exactly those
// and a flag meant for another mode is an error rather than ignored.
type settings struct {
	common    bench.Common
	asJSON    bool
	pairs     int
	size      int
	window    int
	direct    bool
	rate      float64
	conns     int
	heartbeat time.Duration
	parallel  int
}

var modes = []string{"throughput", "latency", "idle"}

// flags returns the flag set of mode, or nil for an unknown mode.
func flags(mode string, s *settings) *flag.FlagSet {
	fs := flag.NewFlagSet("relayd-bench "+mode, flag.ContinueOnError)
	c := &s.common
	fs.StringVar(&c.Addr, "addr", "127.0.0.1:33333", "relay `address`")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "the relay's `PID`, to measure its CPU and memory")
	fs.DurationVar(&c.Duration, "duration", 5*time.Second, "the measured window")
	fs.BoolVar(&s.asJSON, "json", false, "print the result as JSON")
	switch mode {
	case "throughput":
		fs.DurationVar(&c.Warmup, "warmup", time.Second, "traffic before the measured window")
		fs.IntVar(&s.pairs, "pairs", 1, "sender/receiver pairs")
		fs.IntVar(&s.size, "size", 64, "payload `bytes`")
		fs.IntVar(&s.window, "window", 4<<20, "`bytes` a sender may have in flight to its receiver")
		fs.BoolVar(&s.direct, "direct", false, "no relay: send the same frames straight between two sockets, the ceiling")
	case "latency":
		fs.DurationVar(&c.Warmup, "warmup", time.Second, "traffic before the measured window")
		fs.IntVar(&s.pairs, "pairs", 1, "ping-pong pairs")
		fs.IntVar(&s.size, "size", 64, "payload `bytes`")
		fs.Float64Var(&s.rate, "rate", 0, "open-loop frames/s in all; 0 = closed-loop ping-pong")
	case "idle":
		fs.IntVar(&s.conns, "conns", 10000, "connections to hold")
		fs.DurationVar(&s.heartbeat, "heartbeat", 30*time.Second, "heartbeat interval of each connection")
		fs.IntVar(&s.parallel, "parallel", 64, "concurrent dials")
	default:
		return nil
	}
	return fs
}

// printUsage writes the modes and the flags of each.
func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	for _, m := range modes {
		fs := flags(m, new(settings))
		fs.SetOutput(w)
		fmt.Fprintf(w, "\n%s flags:\n", m)
		fs.PrintDefaults()
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		printUsage(stderr)
		return 2
	}
	mode := args[0]
	var s settings
	fs := flags(mode, &s)
	if fs == nil {
		fmt.Fprintf(stderr, "relayd-bench: unknown mode %q\n\n%s", mode, usage)
		return 2
	}
	fs.SetOutput(stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "relayd-bench %s: unexpected arguments %q\n", mode, fs.Args())
		return 2
	}
	c := s.common
	if isTerminal(stderr) && !s.asJSON {
		c.Progress = func(line string) { fmt.Fprintf(stderr, "\r\033[K%s", line) }
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var (
		res   any
		err   error
		human func() string
	)
	switch mode {
	case "throughput":
		run := bench.Throughput
		if s.direct {
			run = bench.Direct
		}
		var r *bench.ThroughputResult
		r, err = run(ctx, bench.ThroughputConfig{Common: c, Pairs: s.pairs, Size: s.size, Window: s.window})
		res, human = r, func() string {
			return fmt.Sprintf("%s  pairs=%d size=%dB  %.0f frames/s  %.1f MB/s  drops=%d reordered=%d  server=%s bench=%.2f cores",
				r.Mode, r.Pairs, r.Size, r.FramesPerSec, r.MBPerSec, r.Drops, r.Reordered, cores(r.ServerCores), r.BenchCores)
		}
	case "latency":
		var r *bench.LatencyResult
		r, err = bench.Latency(ctx, bench.LatencyConfig{Common: c, Pairs: s.pairs, Size: s.size, Rate: s.rate})
		res, human = r, func() string {
			what := "round trip"
			if r.Loop == "open" {
				what = fmt.Sprintf("one way at %.0f/s", r.Rate)
			}
			return fmt.Sprintf("latency (%s)  pairs=%d size=%dB  p50=%.0fµs p99=%.0fµs p999=%.0fµs max=%.0fµs  (%d samples)",
				what, r.Pairs, r.Size, r.P50, r.P99, r.P999, r.Max, r.Samples)
		}
	case "idle":
		var r *bench.IdleResult
		r, err = bench.Idle(ctx, bench.IdleConfig{Common: c, Conns: s.conns, Heartbeat: s.heartbeat, Parallel: s.parallel})
		res, human = r, func() string {
			return fmt.Sprintf("idle  conns=%d  server RSS %.1f MiB → %.1f MiB  %.0f bytes per connection  (logged in in %.1fs)",
				r.Conns, float64(r.ServerRSSStart)/(1<<20), float64(r.ServerRSSEnd)/(1<<20), r.BytesPerConn, r.DialSeconds)
		}
	}
	if c.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		fmt.Fprintf(stderr, "relayd-bench: %v\n", err)
		return 1
	}
	if s.asJSON {
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			return 1
		}
		return 0
	}
	fmt.Fprintln(stdout, human())
	return 0
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
