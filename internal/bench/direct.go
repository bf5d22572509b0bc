package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"

	"github.com/relayd/relayd/internal/protocol"
)

// Direct sends the same frames as Throughput straight from one socket to
// another over loopback, with no relay in between: the ceiling a relay is
// measured against. Both ends run in this process, so pinning it to one
// core makes it do there what a relay's load generator does on its core.
func Direct(ctx context.Context, cfg ThroughputConfig) (*ThroughputResult, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()

	stats := make([]pairStats, cfg.Pairs)
	errc := make(chan error, 2*cfg.Pairs)
	var conns []net.Conn
	var wg sync.WaitGroup
	var snd senders
	defer func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		snd.wg.Wait()
	}()
	fail := func(err error) {
		if ctx.Err() == nil {
			errc <- err
		}
	}
	for i := 0; i < cfg.Pairs; i++ {
		s, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		rcv, err := ln.Accept()
		if err != nil {
			s.Close()
			return nil, err
		}
		conns = append(conns, s, rcv)
		st := &stats[i]
		g := &gate{cfg: &cfg, st: st, credit: make(chan struct{}, 1), stop: &snd.stop}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := protocol.NewReader(bufio.NewReaderSize(rcv, 64<<10), protocol.Fixed(cfg.Size))
			var next uint64
			for {
				f, err := r.Next()
				if err != nil {
					fail(fmt.Errorf("direct receiver: %w", err))
					return
				}
				st.count(binary.BigEndian.Uint64(f.Payload), &next)
				g.received(st)
			}
		}()
		snd.wg.Add(1)
		go func() {
			defer snd.wg.Done()
			frame, _ := protocol.AppendTransfer(nil, fmt.Sprintf("s%d", i), fmt.Sprintf("r%d", i), make([]byte, cfg.Size))
			seqAt := len(frame) - cfg.Size
			// The relay client's buffer: written when full, not per frame.
			w := bufio.NewWriterSize(s, 64<<10)
			var sent int64
			for seq := uint64(0); !snd.stop.Load(); seq++ {
				if err := g.wait(ctx, sent, w.Flush); err != nil {
					fail(err)
					return
				}
				binary.BigEndian.PutUint64(frame[seqAt:], seq)
				st.sent.inc()
				if _, err := w.Write(frame); err != nil {
					fail(err)
					return
				}
				sent += cfg.frameCost()
			}
			if err := w.Flush(); err != nil {
				fail(err)
			}
		}()
	}
	return measure(ctx, &cfg, stats, &snd, errc, "direct")
}
