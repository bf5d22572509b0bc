package bench

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/relayd/relayd/internal/protocol"
)

// Direct sends the same frames as Throughput straight from one socket to
// another over loopback, with no relay in between: the ceiling a relay is
// measured against. Both ends run in this process.
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
	defer func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	fail := func(err error) {
		if ctx.Err() == nil {
			errc <- err
		}
	}
	frameCost := int64(cfg.Size + 64)
	for i := 0; i < cfg.Pairs; i++ {
		snd, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			return nil, err
		}
		rcv, err := ln.Accept()
		if err != nil {
			snd.Close()
			return nil, err
		}
		conns = append(conns, snd, rcv)
		st := &stats[i]
		credit := make(chan struct{}, 1)
		wg.Add(2)
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
				if st.recvBytes.Add(frameCost)%(frameCost*64) == 0 {
					select {
					case credit <- struct{}{}:
					default:
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			frame, _ := protocol.AppendTransfer(nil, fmt.Sprintf("s%d", i), fmt.Sprintf("r%d", i), make([]byte, cfg.Size))
			seqAt := len(frame) - cfg.Size
			w := bufio.NewWriterSize(snd, 64<<10)
			var sent int64
			for seq := uint64(0); ctx.Err() == nil; seq++ {
				for sent-st.recvBytes.Load() > int64(cfg.Window) {
					if err := w.Flush(); err != nil {
						fail(err)
						return
					}
					select {
					case <-credit:
					case <-time.After(time.Millisecond):
					case <-ctx.Done():
						return
					}
				}
				binary.BigEndian.PutUint64(frame[seqAt:], seq)
				if _, err := w.Write(frame); err != nil {
					fail(err)
					return
				}
				// The write buffer goes out when it fills, and before
				// waiting for the window: batched as a client library
				// batches (nats.go does the same), so that the load
				// generator is not what runs out of CPU first.
				sent += frameCost
			}
		}()
	}
	return measure(ctx, cfg, stats, errc, "direct")
}
