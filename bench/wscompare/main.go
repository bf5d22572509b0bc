// Command wscompare measures the two WebSocket libraries relayd could build
// its websocket listener on, the way relayd would use them: server memory
// per idle upgraded connection, and echo throughput of 1 KiB binary
// messages over 64 connections, open loop. Server and clients run in
// separate processes (the measuring process re-executes itself as the
// server), and the clients are the same for both libraries.
//
//	go run ./wscompare idle -lib coder  -n 10000
//	go run ./wscompare idle -lib gobwas -n 10000
//	go run ./wscompare tput -lib coder  -conns 64 -size 1024 -d 5s
//	go run ./wscompare tput -lib gobwas -conns 64 -size 1024 -d 5s
//
// coder: github.com/coder/websocket, one goroutine per connection blocked in
// Reader, as its API requires. gobwas: github.com/gobwas/ws's zero-copy
// upgrade and frame helpers; an idle connection is parked on one epoll
// instance without a goroutine or buffer (as relayd parks TCP), and a busy
// one is served by a goroutine with 64 KiB read and write buffers.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wscompare idle|tput|serve [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	lib := fs.String("lib", "gobwas", "coder | gobwas")
	n := fs.Int("n", 10000, "idle: connections")
	conns := fs.Int("conns", 64, "tput: connections")
	size := fs.Int("size", 1024, "tput: message size in bytes")
	dur := fs.Duration("d", 5*time.Second, "tput: how long to send")
	mode := fs.String("mode", "idle", "serve: idle | echo")
	wsURL := fs.String("ws", "", "relayd-*: the websocket listener's URL")
	tcpAddr := fs.String("tcp", "", "relayd-*: the TCP listener's address (instead of -ws)")
	pid := fs.Int("pid", 0, "relayd-idle: relayd's process ID, to read its memory")
	_ = fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(*lib, *mode)
	case "idle":
		err = idle(*lib, *n)
	case "tput":
		err = tput(*lib, *conns, *size, *dur)
	case "relayd-idle":
		err = relaydIdle(*wsURL, *tcpAddr, *pid, *n)
	case "relayd-tput":
		err = relaydTput(*wsURL, *tcpAddr, *conns, *size, *dur)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "wscompare:", err)
		os.Exit(1)
	}
}

// startServer re-executes this binary as the server and returns its
// process and address.
func startServer(lib, mode string) (*exec.Cmd, string, error) {
	cmd := exec.Command(os.Args[0], "serve", "-lib", lib, "-mode", mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, "", fmt.Errorf("server did not print its address: %w", err)
	}
	return cmd, strings.TrimSpace(line), nil
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return -1
}

func idle(lib string, n int) error {
	cmd, addr, err := startServer(lib, "idle")
	if err != nil {
		return err
	}
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	time.Sleep(500 * time.Millisecond)
	before := rssKiB(pid)
	_, port, _ := net.SplitHostPort(addr)
	held := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range n {
		// 127.0.0.x sources, so that ephemeral ports never run out.
		src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/20000), byte(1+i%250))}
		d := ws.Dialer{NetDial: func(ctx context.Context, network, a string) (net.Conn, error) {
			return (&net.Dialer{LocalAddr: src}).DialContext(ctx, network, a)
		}}
		c, br, _, err := d.Dial(context.Background(), "ws://127.0.0.1:"+port+"/relay")
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		if br != nil {
			ws.PutReader(br)
		}
		held = append(held, c)
	}
	dial := time.Since(start)
	time.Sleep(2 * time.Second)
	settled := rssKiB(pid)
	_ = cmd.Process.Signal(syscall.SIGUSR1) // FreeOSMemory
	time.Sleep(2 * time.Second)
	freed := rssKiB(pid)
	fmt.Printf("lib=%s conns=%d dial=%.1fs rss_before=%dKiB rss_after=%dKiB per_conn=%.0fB after_FreeOSMemory=%dKiB per_conn=%.0fB\n",
		lib, n, dial.Seconds(), before, settled, float64(settled-before)*1024/float64(n), freed, float64(freed-before)*1024/float64(n))
	return nil
}

func tput(lib string, conns, size int, dur time.Duration) error {
	cmd, addr, err := startServer(lib, "echo")
	if err != nil {
		return err
	}
	defer cmd.Process.Kill()
	msg := make([]byte, size)
	var got, sent atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, br, _, err := ws.Dial(context.Background(), "ws://"+addr+"/relay")
		if err != nil {
			return err
		}
		if br != nil {
			return fmt.Errorf("server sent data before the first message")
		}
		cs[i] = c
	}
	for _, c := range cs {
		wg.Add(2)
		go func() { // open loop: write as fast as TCP takes it
			defer wg.Done()
			bw := bufio.NewWriterSize(c, 64<<10)
			frame := make([]byte, size)
			for {
				select {
				case <-stop:
					bw.Flush()
					return
				default:
				}
				h := ws.Header{Fin: true, OpCode: ws.OpBinary, Masked: true, Mask: ws.NewMask(), Length: int64(size)}
				if err := ws.WriteHeader(bw, h); err != nil {
					return
				}
				copy(frame, msg)
				ws.Cipher(frame, h.Mask, 0)
				if _, err := bw.Write(frame); err != nil {
					return
				}
				sent.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(c, 64<<10)
			buf := make([]byte, size)
			for {
				h, err := ws.ReadHeader(br)
				if err != nil {
					return
				}
				if _, err := io.ReadFull(br, buf[:h.Length]); err != nil {
					return
				}
				got.Add(1)
			}
		}()
	}
	start := time.Now()
	time.Sleep(dur)
	received := got.Load()
	elapsed := time.Since(start)
	close(stop)
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	fmt.Printf("lib=%s conns=%d size=%d sent=%d echoed=%d in %.1fs: %.0f msg/s, %.1f MB/s\n",
		lib, conns, size, sent.Load(), received, elapsed.Seconds(),
		float64(received)/elapsed.Seconds(), float64(received)*float64(size)/elapsed.Seconds()/1e6)
	return nil
}

func serve(lib, mode string) error {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			debug.FreeOSMemory()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	switch lib {
	case "coder":
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			c.SetReadLimit(1 << 20)
			ctx := context.Background()
			buf := make([]byte, 0, 1024)
			for {
				// Idle or busy, a coder connection waits for its next
				// message in a goroutine of its own.
				typ, rd, err := c.Reader(ctx)
				if err != nil {
					return
				}
				buf = buf[:0]
				for {
					if len(buf) == cap(buf) {
						buf = append(buf, 0)[:len(buf)]
					}
					m, err := rd.Read(buf[len(buf):cap(buf)])
					buf = buf[:len(buf)+m]
					if err == io.EOF {
						break
					}
					if err != nil {
						return
					}
				}
				if err := c.Write(ctx, typ, buf); err != nil {
					return
				}
			}
		}))
	case "gobwas":
		p, err := newPoller()
		if err != nil {
			return err
		}
		for {
			nc, err := ln.Accept()
			if err != nil {
				return err
			}
			go func() {
				if _, err := ws.Upgrade(nc); err != nil {
					nc.Close()
					return
				}
				if mode == "idle" {
					p.park(nc.(*net.TCPConn))
					return // no goroutine, no buffer while idle
				}
				echo(nc)
			}()
		}
	}
	return fmt.Errorf("unknown -lib %q", lib)
}

// echo serves a busy gobwas connection: header and payload through a
// 64 KiB read buffer, echoed through a 64 KiB write buffer flushed when no
// more input is buffered.
func echo(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 64<<10)
	bw := bufio.NewWriterSize(nc, 64<<10)
	buf := make([]byte, 1<<20)
	for {
		h, err := ws.ReadHeader(br)
		if err != nil || h.Length > int64(len(buf)) {
			return
		}
		p := buf[:h.Length]
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		ws.Cipher(p, h.Mask, 0)
		if err := ws.WriteHeader(bw, ws.Header{Fin: true, OpCode: h.OpCode, Length: h.Length}); err != nil {
			return
		}
		bw.Write(p)
		if br.Buffered() == 0 {
			if bw.Flush() != nil {
				return
			}
		}
	}
}

// poller holds parked connections in one epoll instance.
type poller struct {
	mu    sync.Mutex
	epfd  int
	conns map[int]*net.TCPConn
}

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: fd, conns: map[int]*net.TCPConn{}}
	go func() {
		runtime.LockOSThread()
		ev := make([]syscall.EpollEvent, 128)
		for {
			n, err := syscall.EpollWait(fd, ev, -1)
			if err != nil {
				continue
			}
			for _, e := range ev[:n] {
				p.mu.Lock()
				c := p.conns[int(e.Fd)]
				delete(p.conns, int(e.Fd))
				p.mu.Unlock()
				if c != nil {
					c.Close()
				}
			}
		}
	}()
	return p, nil
}

func (p *poller) park(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return
	}
	rc.Control(func(fd uintptr) {
		p.mu.Lock()
		p.conns[int(fd)] = c
		p.mu.Unlock()
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(fd)}
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
}
