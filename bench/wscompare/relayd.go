package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// The same two measurements against a running relayd, for its websocket
// listener next to its TCP one:
//
//	go run ./wscompare relayd-idle -ws ws://127.0.0.1:8080/relay -pid PID -n 10000
//	go run ./wscompare relayd-tput -ws ws://127.0.0.1:8080/relay -conns 64 -size 1024 -d 5s
//	go run ./wscompare relayd-tput -tcp 127.0.0.1:33333 -conns 64 -size 1024 -d 5s
//
// Idle connections are logged in; throughput connections each send 1 KiB
// transfers to themselves as fast as TCP takes them (open loop) and count
// what comes back.

func loginFrame(id string) []byte {
	return append([]byte{'R', 'E', 'L', 'Y', 1, 1, byte(len(id))}, id...)
}

func transferFrame(from, to string, payload []byte) []byte {
	f := append([]byte{'R', 'E', 'L', 'Y', 1, 9, byte(len(from))}, from...)
	f = append(f, byte(len(to)))
	f = append(f, to...)
	f = binary.BigEndian.AppendUint32(f, uint32(len(payload)))
	return append(f, payload...)
}

// wsMessage writes frame as one masked client message. The mask is the
// zero key, which leaves the bytes as they are: a load generator has no
// proxy caches to protect, and masking would only cost it CPU the server
// under test needs (the server still unmasks every byte).
func wsMessage(w io.Writer, frame []byte) error {
	h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Length: int64(len(frame))}
	if err := ws.WriteHeader(w, h); err != nil {
		return err
	}
	_, err := w.Write(frame)
	return err
}

func dialRelay(wsURL, tcpAddr string, src net.Addr) (net.Conn, error) {
	d := &net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	if tcpAddr != "" {
		return d.Dial("tcp", tcpAddr)
	}
	wd := ws.Dialer{NetDial: func(ctx context.Context, network, a string) (net.Conn, error) { return d.DialContext(ctx, network, a) }}
	c, br, _, err := wd.Dial(context.Background(), wsURL)
	if err == nil && br != nil {
		return nil, fmt.Errorf("server sent data before the login")
	}
	return c, err
}

func relaydIdle(wsURL, tcpAddr string, pid, n int) error {
	before := rssKiB(pid)
	held := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range n {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/20000), byte(1+i%250))}
		c, err := dialRelay(wsURL, tcpAddr, src)
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		id := fmt.Sprintf("idle-%d", i)
		if tcpAddr != "" {
			_, err = c.Write(loginFrame(id))
		} else {
			err = wsMessage(c, loginFrame(id))
		}
		if err != nil {
			return err
		}
		held = append(held, c)
	}
	dial := time.Since(start)
	time.Sleep(5 * time.Second) // let every connection park
	after := rssKiB(pid)
	mode := "websocket"
	if tcpAddr != "" {
		mode = "tcp"
	}
	fmt.Printf("relayd %s: %d logged-in idle connections in %.1fs: rss %d -> %d KiB, %.0f B per connection\n",
		mode, n, dial.Seconds(), before, after, float64(after-before)*1024/float64(n))
	return nil
}

func relaydTput(wsURL, tcpAddr string, conns, size int, dur time.Duration) error {
	payload := make([]byte, size)
	var got, sent atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := dialRelay(wsURL, tcpAddr, nil)
		if err != nil {
			return err
		}
		cs[i] = c
		id := fmt.Sprintf("tput-%d", i)
		frame := transferFrame(id, id, payload)
		wg.Add(2)
		go func() {
			defer wg.Done()
			bw := bufio.NewWriterSize(c, 64<<10)
			if tcpAddr != "" {
				bw.Write(loginFrame(id))
			} else {
				wsMessage(bw, loginFrame(id))
			}
			bw.Flush()
			time.Sleep(200 * time.Millisecond) // the login registers before the first transfer
			for {
				select {
				case <-stop:
					bw.Flush()
					return
				default:
				}
				var err error
				if tcpAddr != "" {
					_, err = bw.Write(frame)
				} else {
					err = wsMessage(bw, frame)
				}
				if err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(c, 64<<10)
			buf := make([]byte, len(frame))
			for {
				n := len(frame)
				if tcpAddr == "" {
					// The header by hand: ws.ReadHeader allocates per
					// frame, which would slow the load generator down.
					var h [10]byte
					if _, err := io.ReadFull(br, h[:2]); err != nil {
						return
					}
					switch n = int(h[1] & 0x7F); n {
					case 126:
						if _, err := io.ReadFull(br, h[2:4]); err != nil {
							return
						}
						n = int(binary.BigEndian.Uint16(h[2:4]))
					case 127:
						if _, err := io.ReadFull(br, h[2:10]); err != nil {
							return
						}
						n = int(binary.BigEndian.Uint64(h[2:10]))
					}
					if n > len(buf) {
						return
					}
				}
				if _, err := io.ReadFull(br, buf[:n]); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	time.Sleep(time.Second) // warm up
	g0, start := got.Load(), time.Now()
	time.Sleep(dur)
	received, elapsed := got.Load()-g0, time.Since(start)
	close(stop)
	time.Sleep(500 * time.Millisecond)
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	mode := "websocket"
	if tcpAddr != "" {
		mode = "tcp"
	}
	fmt.Printf("relayd %s: %d connections, %d B payloads: %.0f frames/s, %.1f MB/s payload (sent %d, received %d in total)\n",
		mode, conns, size, float64(received)/elapsed.Seconds(), float64(received)*float64(size)/elapsed.Seconds()/1e6, sent.Load(), got.Load())
	return nil
}
