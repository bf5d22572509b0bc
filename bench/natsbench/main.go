// Command natsbench drives nats-server with the same traffic shapes that
// relayd-bench drives relayd with, for the side-by-side comparison of
// bench/compare.sh. Each relayd client becomes one NATS connection: a
// receiver subscribes to its own subject, a sender publishes to it.
//
//	natsbench throughput --url nats://127.0.0.1:4222 --pairs 64 --size 1024 [--closed-loop]
//	natsbench latency --pairs 1 --size 64
//	natsbench idle --conns 10000 --server-pid PID
//
// It prints one JSON object with the same fields as relayd-bench --json.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
)

type opts struct {
	url       string
	pid       int
	warmup    time.Duration
	duration  time.Duration
	pairs     int
	size      int
	window    int
	openLoop  bool
	settle    time.Duration
	conns     int
	parallel  int
	heartbeat time.Duration
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: natsbench throughput|latency|idle [flags]")
		os.Exit(2)
	}
	var o opts
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	fs.StringVar(&o.url, "url", "nats://127.0.0.1:4222", "server URL")
	fs.IntVar(&o.pid, "server-pid", 0, "server PID, for CPU and memory")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "traffic before the measured window")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window")
	fs.IntVar(&o.pairs, "pairs", 1, "publisher/subscriber pairs")
	fs.IntVar(&o.size, "size", 64, "payload bytes")
	fs.BoolVar(&o.openLoop, "open-loop", true, "publish as fast as the connection allows, no window")
	closedLoop := fs.Bool("closed-loop", false, "keep at most --window bytes in flight per publisher (--open-loop=false)")
	fs.IntVar(&o.window, "window", 4<<20, "bytes a publisher may have in flight, closed loop")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "after the window, messages in flight count as dropped once none has arrived for this long")
	fs.IntVar(&o.conns, "conns", 10000, "idle connections")
	fs.IntVar(&o.parallel, "parallel", 64, "concurrent dials (idle)")
	fs.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "client PING interval (idle)")
	_ = fs.Parse(os.Args[2:])
	o.openLoop = o.openLoop && !*closedLoop

	var res any
	var err error
	switch os.Args[1] {
	case "throughput":
		res, err = throughput(o)
	case "latency":
		res, err = latency(o)
	case "idle":
		res, err = idle(o)
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "natsbench:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func connect(o opts, extra ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{nats.MaxReconnects(0), nats.ReconnectBufSize(-1)}
	return nats.Connect(o.url, append(base, extra...)...)
}

type pairStats struct {
	sent                    atomic.Uint64 // counted before Publish
	frames, gaps, reordered atomic.Uint64
	recvBytes               atomic.Int64
}

// throughput publishes flat out from one connection per pair to a
// subscriber on another, open loop by default: nats.go buffers what is
// published and writes when its buffer fills, so TCP paces the publisher.
// Closed loop keeps at most --window bytes in flight, like relayd-bench.
func throughput(o opts) (map[string]any, error) {
	stats := make([]pairStats, o.pairs)
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var stop atomic.Bool
	var wg sync.WaitGroup
	// Publishers start together once every pair is connected: connecting
	// while others already publish flat out can take longer than
	// nats.go's connect timeout.
	start := make(chan struct{})
	var slow atomic.Uint64 // slow consumer errors, reported by either end
	onErr := nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrSlowConsumer) {
			slow.Add(1)
		}
	})
	cost := int64(o.size + 64)
	for i := 0; i < o.pairs; i++ {
		st := &stats[i]
		subj := fmt.Sprintf("bench.%d", i)
		sub, err := connect(o, onErr)
		if err != nil {
			return nil, err
		}
		pub, err := connect(o, onErr)
		if err != nil {
			return nil, err
		}
		conns = append(conns, sub, pub)
		var next uint64
		if _, err := sub.Subscribe(subj, func(m *nats.Msg) {
			seq := binary.BigEndian.Uint64(m.Data)
			switch {
			case seq == next:
				next++
			case seq > next:
				st.gaps.Add(seq - next)
				next = seq + 1
			default:
				st.reordered.Add(1)
			}
			st.frames.Add(1)
			st.recvBytes.Add(cost)
		}); err != nil {
			return nil, err
		}
		// nats.go's default pending limits (512 Ki messages, 64 MiB) stay:
		// a subscriber that falls that far behind drops, as a user's would.
		if err := sub.Flush(); err != nil { // the subscription is registered
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			payload := make([]byte, o.size)
			var sent int64
			for seq := uint64(0); !stop.Load(); seq++ {
				for !o.openLoop && sent-st.recvBytes.Load() > int64(o.window) && !stop.Load() {
					time.Sleep(50 * time.Microsecond)
				}
				binary.BigEndian.PutUint64(payload, seq)
				st.sent.Add(1)
				if err := pub.Publish(subj, payload); err != nil {
					return
				}
				sent += cost
			}
			// The server has everything published once a PING is answered.
			_ = pub.FlushTimeout(o.settle)
		}()
	}
	snap := func() (f, d, r uint64) {
		for i := range stats {
			f += stats[i].frames.Load()
			d += stats[i].gaps.Load()
			r += stats[i].reordered.Load()
		}
		return
	}
	sent := func() (n uint64) {
		for i := range stats {
			n += stats[i].sent.Load()
		}
		return
	}
	close(start)
	time.Sleep(o.warmup)
	f0, _, _ := snap()
	sc, bc, began := cpu(o.pid), cpu(os.Getpid()), time.Now()
	time.Sleep(o.duration)
	f1, _, _ := snap() // received first: sent is counted before a message goes out
	s1 := sent()
	el := time.Since(began).Seconds()
	sc1, bc1 := cpu(o.pid), cpu(os.Getpid())

	// Settle: stop publishing, let what is in flight arrive.
	stop.Store(true)
	flushed := make(chan struct{})
	go func() { wg.Wait(); close(flushed) }()
	<-flushed
	// Until everything has arrived, or nothing has for --settle.
	last, lastAt, settling := uint64(0), time.Now(), time.Now()
	for time.Since(settling) < time.Minute {
		f, _, _ := snap()
		if f >= sent() {
			break
		}
		if f != last {
			last, lastAt = f, time.Now()
		} else if time.Since(lastAt) > o.settle {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	recv, gaps, reord := snap()
	total := sent()
	var drops uint64
	if total > recv {
		drops = total - recv
	}
	fps := float64(f1-f0) / el
	return map[string]any{
		"mode": "throughput", "loop": map[bool]string{true: "open", false: "closed"}[o.openLoop],
		"pairs": o.pairs, "payload_bytes": o.size, "seconds": el,
		"frames": f1 - f0, "frames_per_sec": fps, "mb_per_sec": fps * float64(o.size) / 1e6,
		"sent": total, "received": recv, "drops": drops, "gaps": gaps, "reordered": reord,
		"in_flight": s1 - f1, "slow_consumers": slow.Load(),
		"server_cpu_cores": (sc1 - sc) / el, "bench_cpu_cores": (bc1 - bc) / el,
	}, nil
}

func latency(o opts) (map[string]any, error) {
	var conns []*nats.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var measuring, stop atomic.Bool
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < o.pairs; i++ {
		a, err := connect(o)
		if err != nil {
			return nil, err
		}
		b, err := connect(o)
		if err != nil {
			return nil, err
		}
		conns = append(conns, a, b)
		ping, pong := fmt.Sprintf("lat.%d", i), fmt.Sprintf("lat.%d.r", i)
		if _, err := b.Subscribe(ping, func(m *nats.Msg) { _ = b.Publish(pong, m.Data) }); err != nil {
			return nil, err
		}
		replies, err := a.SubscribeSync(pong)
		if err != nil {
			return nil, err
		}
		if err := b.Flush(); err != nil {
			return nil, err
		}
		if err := a.Flush(); err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := make([]byte, o.size)
			for seq := uint64(0); !stop.Load(); seq++ {
				binary.BigEndian.PutUint64(payload, seq)
				t0 := time.Now()
				if err := a.Publish(ping, payload); err != nil {
					return
				}
				for {
					m, err := replies.NextMsg(5 * time.Second)
					if err != nil {
						return
					}
					if binary.BigEndian.Uint64(m.Data) == seq {
						break
					}
				}
				if measuring.Load() {
					mu.Lock()
					all = append(all, time.Since(t0))
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(o.warmup)
	measuring.Store(true)
	time.Sleep(o.duration)
	measuring.Store(false)
	stop.Store(true)
	wg.Wait()
	if len(all) == 0 {
		return nil, fmt.Errorf("no sample")
	}
	slices.Sort(all)
	us := func(d time.Duration) float64 { return float64(d) / 1e3 }
	pct := func(p float64) float64 { return us(all[min(len(all)-1, int(p*float64(len(all))))]) }
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	return map[string]any{
		"mode": "latency", "loop": "closed", "pairs": o.pairs, "payload_bytes": o.size, "samples": len(all),
		"p50_us": pct(0.5), "p99_us": pct(0.99), "p999_us": pct(0.999), "max_us": us(all[len(all)-1]),
		"mean_us": us(sum / time.Duration(len(all))),
	}, nil
}

func idle(o opts) (map[string]any, error) {
	before := rss(o.pid)
	conns := make([]*nats.Conn, o.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, o.parallel)
	for w := 0; w < o.parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.conns {
					return
				}
				d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+(i/20000)%254))}, Timeout: 10 * time.Second}
				nc, err := connect(o, nats.SetCustomDialer(d), nats.PingInterval(o.heartbeat))
				if err != nil {
					errc <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				conns[i] = nc
				// Like a logged-in relay client: an identity to receive on.
				if _, err := nc.SubscribeSync(fmt.Sprintf("idle.%d", i)); err != nil {
					errc <- err
					return
				}
				if err := nc.Flush(); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	dialed := time.Since(start).Seconds()
	time.Sleep(o.duration)
	after := rss(o.pid)
	return map[string]any{
		"mode": "idle", "conns": o.conns, "dial_seconds": dialed,
		"server_rss_start_bytes": before, "server_rss_end_bytes": after,
		"server_rss_bytes_per_conn": float64(after-before) / float64(o.conns),
	}, nil
}

// cpu returns the CPU seconds process pid has used; 0 when unknown.
func cpu(pid int) float64 {
	if pid == 0 {
		return 0
	}
	if pid == os.Getpid() {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// rss returns the resident memory of process pid in bytes.
func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
