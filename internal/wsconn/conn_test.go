package wsconn

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/protocol"
)

func upgraded(t *testing.T, opt *Options) *pair {
	t.Helper()
	p, err := newPair(t, opt, upgradeRequest("/relay"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *pair) send(t *testing.T, b ...[]byte) {
	t.Helper()
	if _, err := p.client.Write(concat(b...)); err != nil {
		t.Fatal(err)
	}
}

func TestReadMessages(t *testing.T) {
	l := login("alice")
	tr := transfer("alice", "bob", bytes.Repeat([]byte("x"), 70000)) // a 64-bit length
	hb := transfer("alice", "", nil)
	p := upgraded(t, nil)
	p.send(t,
		binaryMsg(l),
		clientFrame(0x80|opPing, []byte("are you there")),
		// A fragmented message with a ping between its fragments.
		clientFrame(opBinary, tr[:10]),
		clientFrame(0x80|opPing, nil),
		clientFrame(opContinuation, tr[10:500]),
		clientFrame(0x80|opContinuation, tr[500:]),
		clientFrame(0x80|opPong, []byte("unsolicited")),
		binaryMsg(hb),
	)
	want := concat(l, tr, hb)
	got, err := readN(p.srv, len(want))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, %v; want %d bytes exactly as sent", len(got), err, len(want))
	}
	for _, ping := range []string{"are you there", ""} {
		op, fin, payload, err := readServerFrame(p.cr)
		if err != nil || op != opPong || !fin || string(payload) != ping {
			t.Fatalf("got op %x fin %v %q, %v; want pong %q", op, fin, payload, err, ping)
		}
	}
	if n := p.srv.Buffered(); n != 0 {
		t.Fatalf("Buffered() = %d between messages", n)
	}
}

func TestReadViolations(t *testing.T) {
	good := login("alice")
	tr := transfer("alice", "bob", []byte("hi"))
	big := transfer("alice", "bob", make([]byte, 1990))
	tests := []struct {
		name string
		in   []byte
		code uint16
	}{
		{"text", clientFrame(0x80|opText, []byte("hello")), CloseUnsupported},
		{"too big", binaryMsg(make([]byte, 2000)), CloseTooBig},
		{"too big fragmented", concat(clientFrame(opBinary, big[:1000]), clientFrame(0x80|opContinuation, big[1000:])), CloseTooBig},
		{"two frames in one message", binaryMsg(concat(good, good)), CloseProtocol},
		{"trailing byte", binaryMsg(concat(tr, []byte{0})), CloseProtocol},
		{"short message", binaryMsg(tr[:len(tr)-1]), CloseProtocol},
		{"empty message", binaryMsg(nil), CloseProtocol},
		{"not RELY", binaryMsg([]byte("GET / HTTP/1.1\r\n")), CloseProtocol},
		{"trailing fragment", concat(clientFrame(opBinary, good), clientFrame(0x80|opContinuation, []byte{1})), CloseProtocol},
		{"unmasked", []byte{0x80 | opBinary, byte(len(good))}, CloseProtocol},
		{"reserved bit", func() []byte { f := binaryMsg(good); f[0] |= 0x40; return f }(), CloseProtocol},
		{"opcode 3", clientFrame(0x80|3, good), CloseProtocol},
		{"opcode 0xB", clientFrame(0x80|0xB, nil), CloseProtocol},
		{"continuation first", clientFrame(0x80|opContinuation, good), CloseProtocol},
		{"interleaved message", concat(clientFrame(opBinary, good[:3]), binaryMsg(good)), CloseProtocol},
		{"fragmented ping", clientFrame(opPing, nil), CloseProtocol},
		{"long ping", clientFrame(0x80|opPing, make([]byte, 126)), CloseProtocol},
		{"close of one byte", clientFrame(0x80|opClose, []byte{3}), CloseProtocol},
		{"close code 1005", clientFrame(0x80|opClose, []byte{0x03, 0xED}), CloseProtocol},
		{"close reason not UTF-8", clientFrame(0x80|opClose, []byte{0x03, 0xE8, 0xFF}), CloseInvalidData},
		{"64-bit length top bit", []byte{0x80 | opBinary, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, CloseProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := upgraded(t, &Options{MaxFrame: protocol.Fixed(1500)})
			p.send(t, binaryMsg(good), tt.in)
			got, err := readAll(p.srv)
			if _, ok := protocol.IsViolation(err); !ok {
				t.Fatalf("Read error %v, want a protocol violation", err)
			}
			if CloseCode(err) != tt.code {
				t.Fatalf("CloseCode(%v) = %d, want %d", err, CloseCode(err), tt.code)
			}
			// The bad message's first bytes may have been read before it
			// showed itself bad, but never a whole frame from it.
			if !bytes.HasPrefix(got, good) || len(got)-len(good) >= len(good) {
				t.Fatalf("read %q before the violation, want the good message %q and no frame after", got, good)
			}
			expectClose(t, p.cr, tt.code)
			if _, err2 := p.srv.Read(make([]byte, 10)); err2 != err {
				t.Fatalf("next Read: %v, want the same error again", err2)
			}
		})
	}
}

func TestClientClose(t *testing.T) {
	p := upgraded(t, nil)
	p.send(t, binaryMsg(login("a")), clientFrame(0x80|opClose, []byte{0x03, 0xE9, 'b', 'y', 'e'}))
	got, err := readN(p.srv, 100)
	if !errors.Is(err, io.EOF) || !bytes.Equal(got, login("a")) {
		t.Fatalf("read %q, %v; want the login then io.EOF", got, err)
	}
	expectClose(t, p.cr, 1001) // echoed
	if _, err := p.srv.Write(transfer("b", "a", nil)); err == nil {
		t.Fatal("Write after the close handshake succeeded")
	}
}

// A read deadline that fires anywhere, mid-header or mid-payload, loses
// nothing: the next Read goes on where the last stopped.
func TestReadDeadlineResumes(t *testing.T) {
	msgs := [][]byte{
		login("alice"),
		transfer("alice", "bob", bytes.Repeat([]byte("y"), 300)),
		transfer("alice", "bob", bytes.Repeat([]byte("z"), 70000)),
	}
	var stream, want []byte
	for _, m := range msgs {
		stream = append(stream, binaryMsg(m)...)
		want = append(want, m...)
	}
	stream = append(stream, clientFrame(0x80|opPing, []byte("p"))...)
	p := upgraded(t, nil)
	cuts := []int{1, 2, 3, 7, 9, 20, 200, 313, 320, 5000, len(stream) - 3, len(stream) - 1}
	go func() {
		prev := 0
		for _, c := range append(cuts, len(stream)) {
			p.client.Write(stream[prev:c])
			prev = c
			time.Sleep(15 * time.Millisecond)
		}
	}()
	var got []byte
	buf := make([]byte, 4096)
	timeouts := 0
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < len(want) && time.Now().Before(deadline) {
		_ = p.srv.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		n, err := p.srv.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read: %v", err)
			}
			timeouts++
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d exactly as sent", len(got), len(want))
	}
	if timeouts == 0 {
		t.Fatal("no read deadline fired: the test did not test anything")
	}
	// The ping at the end is answered although Read returned nothing for it.
	_ = p.srv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := p.srv.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read after the last message: %v, want a timeout", err)
	}
	if op, _, payload, err := readServerFrame(p.cr); err != nil || op != opPong || string(payload) != "p" {
		t.Fatalf("got op %x %q, %v; want pong \"p\"", op, payload, err)
	}
}

// A header split across reads is held and counted by Buffered.
func TestBufferedSplitHeader(t *testing.T) {
	p := upgraded(t, nil)
	f := binaryMsg(login("alice"))
	p.send(t, f[:3])
	_ = p.srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := p.srv.Read(make([]byte, 100))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %d, %v; want a timeout", n, err)
	}
	if b := p.srv.Buffered(); b != 3 {
		t.Fatalf("Buffered() = %d, want 3", b)
	}
	p.send(t, f[3:])
	_ = p.srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := readN(p.srv, len(login("alice")))
	if err != nil || !bytes.Equal(got, login("alice")) || p.srv.Buffered() != 0 {
		t.Fatalf("read %q, %v, Buffered %d", got, err, p.srv.Buffered())
	}
}

// A message longer than its frame is refused before the frame is whole,
// even when a read ends exactly at the frame's end.
func TestLongMessageRefusedBeforeFrameEnds(t *testing.T) {
	f := login("alice")
	msg := binaryMsg(concat(f, f))
	p := upgraded(t, nil)
	p.send(t, msg[:len(msg)-len(f)])
	got, err := readN(p.srv, len(f))
	if _, ok := protocol.IsViolation(err); !ok || len(got) >= len(f) {
		t.Fatalf("read %q, %v; want less than a frame and a violation", got, err)
	}
}

// A RELY frame that ends a fragment before the message ends is not
// returned whole until the message ends: the end may still break it.
func TestFragmentEndsWithFrame(t *testing.T) {
	f := login("alice")
	p := upgraded(t, nil)
	p.send(t, clientFrame(opBinary, f))
	_ = p.srv.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	got, err := readN(p.srv, len(f))
	if !errors.Is(err, os.ErrDeadlineExceeded) || len(got) != len(f)-1 || p.srv.Buffered() != 1 {
		t.Fatalf("read %d bytes, %v, Buffered %d; want %d, a timeout, 1", len(got), err, p.srv.Buffered(), len(f)-1)
	}
	p.send(t, clientFrame(opContinuation, nil), clientFrame(0x80|opContinuation, nil))
	_ = p.srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := readN(p.srv, 1)
	if err != nil || !bytes.Equal(append(got, rest...), f) {
		t.Fatalf("read %q, %v", append(got, rest...), err)
	}
}

// Frames written in any pieces, split anywhere, go out one message each.
func TestWriteSplitsIntoMessages(t *testing.T) {
	frames := [][]byte{
		transfer("alice", "bob", []byte("one")),
		transfer("alice", "bob", bytes.Repeat([]byte("L"), 70000)),
		transfer("carol", "bob", nil),
		transfer("alice", "bob", bytes.Repeat([]byte("m"), 300)),
	}
	for i := range 40 {
		frames = append(frames, transfer("x", "bob", bytes.Repeat([]byte{byte(i)}, i*13)))
	}
	stream := concat(frames...)
	p := upgraded(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	done := make(chan error, 1)
	go func() {
		for rest := stream; len(rest) > 0; {
			if rng.IntN(2) == 0 {
				k := min(len(rest), 1+rng.IntN(600))
				n, err := p.srv.Write(rest[:k])
				if err != nil || n != k {
					done <- err
					return
				}
				rest = rest[k:]
				continue
			}
			var bufs [][]byte
			total := 0
			for j := 0; j < 3 && len(rest) > 0; j++ {
				k := min(len(rest), rng.IntN(20000))
				bufs = append(bufs, rest[:k])
				rest = rest[k:]
				total += k
			}
			n, err := p.srv.WriteBuffers(bufs)
			if err != nil || n != total {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i, want := range frames {
		op, fin, payload, err := readServerFrame(p.cr)
		if err != nil || op != opBinary || !fin || !bytes.Equal(payload, want) {
			t.Fatalf("message %d: op %x fin %v %d bytes, %v; want the frame of %d bytes", i, op, fin, len(payload), err, len(want))
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestCloseSendsCode(t *testing.T) {
	for _, code := range []uint16{CloseNormal, CloseGoingAway} {
		p := upgraded(t, nil)
		if err := p.srv.CloseWith(code); err != nil {
			t.Fatal(err)
		}
		expectClose(t, p.cr, code)
		if _, _, _, err := readServerFrame(p.cr); err != io.EOF {
			t.Fatalf("after the close frame: %v, want EOF", err)
		}
	}
}

// A half-written frame can take no close frame in its middle: Close then
// just closes.
func TestCloseMidFrame(t *testing.T) {
	p := upgraded(t, nil)
	f := transfer("a", "b", []byte("0123456789"))
	if _, err := p.srv.Write(f[:16]); err != nil {
		t.Fatal(err)
	}
	p.srv.Close()
	_, _, _, err := readServerFrame(p.cr)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read %v, want the half frame cut short", err)
	}
}

// A ping that arrives while a frame is half written is answered after it.
func TestPongWaitsForFrameBoundary(t *testing.T) {
	p := upgraded(t, nil)
	f := transfer("a", "b", []byte("0123456789"))
	if _, err := p.srv.Write(f[:16]); err != nil {
		t.Fatal(err)
	}
	p.send(t, clientFrame(0x80|opPing, []byte("x")))
	_ = p.srv.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, err := p.srv.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal(err)
	}
	if _, err := p.srv.Write(f[16:]); err != nil {
		t.Fatal(err)
	}
	op, _, payload, err := readServerFrame(p.cr)
	if err != nil || op != opBinary || !bytes.Equal(payload, f) {
		t.Fatalf("first: op %x %q, %v; want the frame", op, payload, err)
	}
	op, _, payload, err = readServerFrame(p.cr)
	if err != nil || op != opPong || string(payload) != "x" {
		t.Fatalf("second: op %x %q, %v; want the pong", op, payload, err)
	}
}

func TestWriteRefusesNonFrames(t *testing.T) {
	p := upgraded(t, nil)
	if _, err := p.srv.Write([]byte("not a frame")); err == nil {
		t.Fatal("Write of bytes that are not RELY frames succeeded")
	}
}

// memConn is a net.Conn over memory for allocation counts and fuzzing: it
// reads from in, in pieces of the sizes in cuts, and writes to out.
type memConn struct {
	net.Conn
	in   []byte
	cuts []int
	out  bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error) {
	if len(m.in) == 0 {
		return 0, io.EOF
	}
	n := len(m.in)
	if len(m.cuts) > 0 {
		n, m.cuts = max(1, m.cuts[0]), m.cuts[1:]
	}
	n = copy(p, m.in[:min(n, len(m.in))])
	m.in = m.in[n:]
	return n, nil
}
func (m *memConn) Write(p []byte) (int, error)      { return m.out.Write(p) }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) Close() error                     { return nil }

func TestSteadyStateAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	msg := binaryMsg(transfer("alice", "bob", make([]byte, 1000)))
	in := bytes.Repeat(msg, 200)
	mc := &memConn{}
	c := newConn(mc, protocol.Fixed(1<<20))
	buf := make([]byte, 16<<10)
	frames := bytes.Repeat(transfer("alice", "bob", make([]byte, 1000)), 16)
	read := testing.AllocsPerRun(50, func() {
		mc.in = in
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		c.rerr = nil
	})
	write := testing.AllocsPerRun(50, func() {
		mc.out.Reset()
		c.Write(frames)
	})
	if read != 0 || write != 0 {
		t.Fatalf("allocations: %v per read run, %v per write run; want 0", read, write)
	}
}

// Writes tell OnBlocked when the socket is full and when it takes bytes again.
func TestOnBlocked(t *testing.T) {
	if !haveWritev {
		t.Skip("writev is Linux only")
	}
	p := upgraded(t, nil)
	var full, free atomic.Int64
	p.srv.OnBlocked(func(b bool) {
		if b {
			full.Add(1)
		} else {
			free.Add(1)
		}
	})
	p.client.(*net.TCPConn).SetReadBuffer(128 << 10) // small, yet more than loopback's MSS
	p.srv.raw.(*net.TCPConn).SetWriteBuffer(128 << 10)
	f := transfer("a", "b", make([]byte, 8<<20)) // far more than both buffers
	done := make(chan error, 1)
	go func() {
		_, err := p.srv.Write(f)
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for full.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a write to a client that reads nothing never reported the socket full")
		}
		time.Sleep(time.Millisecond)
	}
	op, _, payload, err := readServerFrame(p.cr) // read it all: the socket frees up
	if err != nil || op != opBinary || !bytes.Equal(payload, f) {
		t.Fatalf("read op %x, %d bytes, %v", op, len(payload), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if full.Load() != free.Load() {
		t.Fatalf("socket reported full %d times and free %d times: the last write must end free", full.Load(), free.Load())
	}
}
