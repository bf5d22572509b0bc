// Command hops measures the copy-only ceiling of the topologies
// bench/compare.sh sets side by side: what loopback TCP gives forwarders
// that only read and write, with no protocol at all.
//
//	single: load → pair forwarder (each connection to its own) → load
//	cross:  load → mux (many to one) → fwd (one to one) → demux (one to many) → load
//
// The cross chain is the shape of a cluster: node A funnels its senders
// into one NATS connection, nats-server passes it on, node B spreads it
// over its receivers. Each forwarder is a process of its own (compare.sh
// pins them where it pins the relays); the load writes 64 KiB chunks, flat
// out, on as many connections as the relays' cells have pairs, and counts
// what arrives.
//
//	hops forward --mode pair|mux|fwd|demux --listen ADDR --next ADDR --conns N
//	hops load --first ADDR --sink ADDR --conns N --warmup 1s --duration 5s
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const chunk = 64 << 10

func main() {
	log.SetFlags(0)
	log.SetPrefix("hops: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: hops forward|load [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	mode := fs.String("mode", "pair", "forward: pair, mux, fwd or demux")
	listen := fs.String("listen", "", "forward: the address to accept on")
	next := fs.String("next", "", "forward: the next hop")
	first := fs.String("first", "", "load: the first hop")
	sink := fs.String("sink", "", "load: the address the last hop writes to")
	conns := fs.Int("conns", 64, "connections at each end")
	warmup := fs.Duration("warmup", time.Second, "load: before measuring")
	duration := fs.Duration("duration", 5*time.Second, "load: measured")
	topology := fs.String("topology", "", "load: the name the result carries (single, cross)")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "forward":
		if err := forward(*mode, *listen, *next, *conns); err != nil {
			log.Fatal(err)
		}
	case "load":
		if err := load(*first, *sink, *topology, *conns, *warmup, *duration); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatalf("unknown command %q: forward or load", os.Args[1])
	}
}

// forward accepts its inbound connections, dials its outbound ones, and
// copies until an inbound connection ends.
func forward(mode, listen, next string, conns int) error {
	in, out := conns, conns
	switch mode {
	case "pair":
	case "mux":
		out = 1
	case "fwd":
		in, out = 1, 1
	case "demux":
		in = 1
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	outs := make([]net.Conn, out)
	for i := range outs {
		if outs[i], err = dialRetry(next); err != nil {
			return err
		}
	}
	var (
		mu   sync.Mutex // one writer at a time on mux's one outbound connection
		done = make(chan error, in)
	)
	for i := range in {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			buf := make([]byte, 4*chunk)
			for k := 0; ; k++ {
				n, err := c.Read(buf)
				if err != nil {
					done <- err
					return
				}
				switch mode {
				case "pair":
					_, err = outs[i].Write(buf[:n])
				case "fwd":
					_, err = outs[0].Write(buf[:n])
				case "mux":
					mu.Lock()
					_, err = outs[0].Write(buf[:n])
					mu.Unlock()
				case "demux": // a chunk to each receiver in turn
					for off := 0; off < n && err == nil; off += chunk {
						_, err = outs[(k+off/chunk)%out].Write(buf[off:min(n, off+chunk)])
					}
				}
				if err != nil {
					done <- err
					return
				}
			}
		}()
	}
	if err := <-done; !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func dialRetry(addr string) (net.Conn, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type result struct {
	Mode     string  `json:"mode"`
	Topology string  `json:"topology"`
	Conns    int     `json:"pairs"`
	MBPerSec float64 `json:"mb_per_sec"`
}

// load listens on sink for the last hop's connections, writes flat out
// into first and prints the MB/s that arrived, as JSON.
func load(first, sink, topology string, conns int, warmup, duration time.Duration) error {
	ln, err := net.Listen("tcp", sink)
	if err != nil {
		return err
	}
	defer ln.Close()
	var got atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4*chunk)
				for {
					n, err := c.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	senders := make([]net.Conn, conns)
	for i := range senders {
		if senders[i], err = dialRetry(first); err != nil {
			return err
		}
		go func(c net.Conn) {
			b := make([]byte, chunk)
			for {
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}(senders[i])
	}
	time.Sleep(warmup)
	start := got.Load()
	time.Sleep(duration)
	mb := float64(got.Load()-start) / duration.Seconds() / 1e6
	for _, c := range senders {
		c.Close()
	}
	return json.NewEncoder(os.Stdout).Encode(result{Mode: "hops", Topology: topology, Conns: conns, MBPerSec: mb})
}
