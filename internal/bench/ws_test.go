package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/relayd/relayd/client"
	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/daemon"
	"github.com/relayd/relayd/internal/protocol"
)

// wsPair is a wsConn and the server's end of its upgraded connection.
func wsPair(t *testing.T, readBuf int) (*wsConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- nil
			return
		}
		if _, err := ws.Upgrade(c); err != nil {
			c.Close()
			c = nil
		}
		srv <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws://"+ln.Addr().String()+"/relay", nil, readBuf)
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s == nil {
		t.Fatal("upgrade failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*wsConn), s
}

func testFrames(t *testing.T) [][]byte {
	t.Helper()
	login, err := protocol.AppendLogin(nil, "alice")
	if err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{login}
	for _, n := range []int{0, 1, 125, 126, 1000, 65535, 65536, 200 << 10} {
		p := bytes.Repeat([]byte{byte(n)}, n)
		f, err := protocol.AppendTransfer(nil, "alice", "bob", p)
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	return frames
}

// However the client's buffer cuts the stream of frames, every frame goes
// out as exactly one masked binary message (gobwas checks the mask and
// unmasks), byte for byte.
func TestWSWriteOneMessagePerFrame(t *testing.T) {
	frames := testFrames(t)
	stream := bytes.Join(frames, nil)
	for _, cut := range []int{1, 2, 7, 13, 100, 4096, 70000, len(stream)} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			c, s := wsPair(t, 4096)
			errc := make(chan error, 1)
			go func() {
				for p := stream; len(p) > 0; {
					n := min(cut, len(p))
					if k, err := c.Write(p[:n]); err != nil || k != n {
						errc <- fmt.Errorf("write returned %d, %v", k, err)
						return
					}
					p = p[n:]
				}
				errc <- nil
			}()
			_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
			for i, want := range frames {
				h, err := ws.ReadHeader(s)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !h.Fin || h.OpCode != ws.OpBinary || !h.Masked {
					t.Fatalf("message %d: header %+v, want a final masked binary frame", i, h)
				}
				got := make([]byte, h.Length)
				if _, err := io.ReadFull(s, got); err != nil {
					t.Fatal(err)
				}
				ws.Cipher(got, h.Mask, 0)
				if !bytes.Equal(got, want) {
					t.Fatalf("message %d: %d bytes, not frame %d's %d bytes", i, len(got), i, len(want))
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Bytes that are not RELY frames are refused, not sent as a guess.
func TestWSWriteRefusesGarbage(t *testing.T) {
	c, _ := wsPair(t, 4096)
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\n")); err == nil {
		t.Fatal("a stream that is not RELY was written")
	}
}

// Reads return the payloads of the server's messages as one stream, across
// messages that are already buffered; an expired deadline in the middle of
// a header loses nothing; a ping is answered; a close ends the stream.
func TestWSRead(t *testing.T) {
	frames := testFrames(t)
	c, s := wsPair(t, 4096)
	var want []byte
	for _, f := range frames {
		if err := wsutil.WriteServerBinary(s, f); err != nil {
			t.Fatal(err)
		}
		want = append(want, f...)
	}
	// A header in two halves, with the deadline expiring between them.
	f := frames[3]
	hdr := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: int64(len(f))}
	var hb bytes.Buffer
	_ = ws.WriteHeader(&hb, hdr)
	if _, err := s.Write(hb.Bytes()[:1]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the payloads read are not the frames written")
	}
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !isTimeout(err) {
		t.Fatalf("read with half a header: %v, want a timeout", err)
	}
	_, _ = s.Write(append(hb.Bytes()[1:], f...))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got = make([]byte, len(f))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, f) {
		t.Fatalf("after the timeout: %v", err)
	}

	if err := wsutil.WriteServerMessage(s, ws.OpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_ = wsutil.WriteServerMessage(s, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after the close: %v, want EOF", err)
	}
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(s)
	for _, op := range []ws.OpCode{ws.OpPong, ws.OpClose} {
		h, err := ws.ReadHeader(br)
		if err != nil || h.OpCode != op || !h.Masked {
			t.Fatalf("want a masked %v from the client, got %+v, %v", op, h, err)
		}
		_, _ = br.Discard(int(h.Length))
	}
}

// startWSRelay runs relayd (as relayd -c does) with a TCP and a websocket
// listener, and returns the TCP address and the ws:// URL.
func startWSRelay(t *testing.T) (addr, url string) {
	t.Helper()
	cfg, err := config.Parse("bench.toml", []byte(`
[log]
level = "error"
[reload]
watch = false
[[listener]]
name = "plain"
address = "127.0.0.1:0"
[[listener]]
name = "web"
address = "127.0.0.1:0"
transport = "websocket"
ws_path = "/relay"
`))
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg)
	a := d.Server().Addrs()
	return a["plain"].String(), "ws://" + a["web"].String() + "/relay"
}

func startDaemon(t *testing.T, cfg *config.Config) *daemon.Daemon {
	t.Helper()
	d, err := daemon.Start(cfg, io.Discard, "bench-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Shutdown("test over") })
	return d
}

// Every mode runs over WebSocket, and across transports: senders on TCP,
// receivers on WebSocket.
func TestModesOverWebSocket(t *testing.T) {
	addr, url := startWSRelay(t)
	c := Common{WS: url, ServerPID: os.Getpid(), Warmup: 100 * time.Millisecond, Duration: 400 * time.Millisecond}
	for _, tc := range []struct {
		common    Common
		transport string
	}{
		{c, "websocket"},
		{Common{Addr: addr, RecvWS: url, Warmup: c.Warmup, Duration: c.Duration}, "tcp/websocket"},
	} {
		for _, size := range []int{64, 64 << 10} {
			r, err := Throughput(context.Background(), ThroughputConfig{Common: tc.common, Pairs: 3, Size: size, OpenLoop: true})
			if err != nil {
				t.Fatal(err)
			}
			if r.Transport != tc.transport || r.Frames == 0 || r.Drops != 0 || r.Gaps != 0 || r.Reordered != 0 || r.Sent != r.Received {
				t.Fatalf("%s, %d B: %+v", tc.transport, size, r)
			}
		}
	}
	l, err := Latency(context.Background(), LatencyConfig{Common: c, Pairs: 1, Size: 64})
	if err != nil {
		t.Fatal(err)
	}
	if l.Transport != "websocket" || l.Samples == 0 || l.P50 <= 0 {
		t.Fatalf("latency: %+v", l)
	}
	i, err := Idle(context.Background(), IdleConfig{Common: c, Conns: 200, Heartbeat: time.Second, Parallel: 8})
	if err != nil {
		t.Fatal(err)
	}
	if i.Transport != "websocket" || i.Conns != 200 {
		t.Fatalf("idle: %+v", i)
	}
}

// A kick over WebSocket (a close frame from relayd) ends Recv with
// ErrServerClosed, as on TCP.
func TestWSKick(t *testing.T) {
	_, url := startWSRelay(t)
	ctx := context.Background()
	e := endpoint{ws: url}
	first, err := dial(ctx, e, "kicked", &client.Options{Heartbeat: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	// Prove the first login registered before the second one kicks it.
	if err := first.Send("kicked", []byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Recv(); err != nil {
		t.Fatal(err)
	}
	second, err := dial(ctx, e, "kicked", &client.Options{Heartbeat: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := first.Recv(); !errors.Is(err, client.ErrServerClosed) {
		t.Fatalf("the kicked client's Recv: %v, want ErrServerClosed", err)
	}
}
