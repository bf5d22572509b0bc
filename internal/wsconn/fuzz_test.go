package wsconn

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/relayd/relayd/internal/protocol"
)

// readStream runs a client byte stream through a Conn, the socket handing
// it over in pieces of the sizes in cuts and Read asked for sizes from
// sizes, and returns what Read returned and the error it ended with.
func readStream(stream []byte, cuts, sizes []int) ([]byte, string) {
	mc := &memConn{in: stream, cuts: cuts}
	c := newConn(mc, protocol.Fixed(4096))
	var out []byte
	buf := make([]byte, 8192)
	for i := 0; ; i++ {
		n := len(buf)
		if len(sizes) > 0 {
			n = 1 + sizes[i%len(sizes)]%len(buf)
		}
		m, err := c.Read(buf[:n])
		out = append(out, buf[:m]...)
		if err != nil {
			return out, err.Error()
		}
	}
}

// wholeFrames is the length of the longest prefix of b made of whole RELY frames.
func wholeFrames(b []byte) int {
	end := 0
	for end < len(b) {
		var m protocol.Meter
		n, err := m.Feed(b[end:])
		if err != nil || !m.Done() {
			break
		}
		end += n
	}
	return end
}

func FuzzRead(f *testing.F) {
	l := login("alice")
	tr := transfer("alice", "bob", []byte("hello"))
	f.Add(concat(binaryMsg(l), binaryMsg(tr)), []byte{3, 1, 7})
	f.Add(concat(clientFrame(opBinary, tr[:4]), clientFrame(0x80|opPing, []byte("x")), clientFrame(0x80|opContinuation, tr[4:])), []byte{1})
	f.Add(concat(binaryMsg(l), clientFrame(0x80|opText, []byte("hi"))), []byte{})
	f.Add(concat(binaryMsg(l), binaryMsg(concat(l, l))), []byte{5, 2})
	f.Add(concat(clientFrame(opBinary, l), clientFrame(0x80|opContinuation, nil)), []byte{2})
	f.Add(concat(binaryMsg(l), clientFrame(0x80|opClose, []byte{3, 0xE8})), []byte{})
	f.Add([]byte{0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4}, []byte{1})
	f.Add(binaryMsg(transfer("a", "b", make([]byte, 5000))), []byte{9})
	f.Fuzz(func(t *testing.T, stream, split []byte) {
		whole, werr := readStream(stream, nil, nil)
		var cuts, sizes []int
		for i, b := range split {
			if i%2 == 0 {
				cuts = append(cuts, int(b))
			} else {
				sizes = append(sizes, int(b))
			}
		}
		got, gerr := readStream(stream, cuts, sizes)
		if gerr != werr {
			t.Fatalf("split read ends with %q, whole read with %q", gerr, werr)
		}
		if !bytes.HasPrefix(got, whole) || wholeFrames(got) != wholeFrames(whole) {
			t.Fatalf("split read returned %x, whole read %x: not the same frames", got, whole)
		}
		if wholeFrames(whole) != len(whole) && werr != "EOF" && werr != "unexpected EOF" {
			t.Fatalf("read %x with %q: the output is not whole frames", whole, werr)
		}
	})
}

// parseServerStream splits what a Conn wrote into messages.
func parseServerStream(t *testing.T, b []byte) [][]byte {
	t.Helper()
	r := bytes.NewReader(b)
	var msgs [][]byte
	for r.Len() > 0 {
		op, fin, p, err := readServerFrame(r)
		if err != nil || op != opBinary || !fin {
			t.Fatalf("server stream: op %x fin %v, %v", op, fin, err)
		}
		msgs = append(msgs, p)
	}
	return msgs
}

func FuzzWrite(f *testing.F) {
	f.Add([]byte("seed"), uint64(1))
	f.Add(bytes.Repeat([]byte{0xFF}, 40), uint64(7))
	f.Fuzz(func(t *testing.T, spec []byte, seed uint64) {
		// Frames whose IDs and payload sizes come from spec.
		var frames [][]byte
		for len(spec) >= 3 {
			from, to := int(spec[0]%8)+1, int(spec[1]%8)
			n := int(binary.BigEndian.Uint16([]byte{spec[2], 0})) % 70000
			if len(spec) > 3 {
				n = int(spec[2]) << int(spec[3]%9) % 70000
			}
			fr, _ := protocol.AppendTransfer(nil, bytes.Repeat([]byte("f"), from), bytes.Repeat([]byte("t"), to), bytes.Repeat([]byte{spec[1]}, n))
			frames = append(frames, fr)
			spec = spec[min(len(spec), 4):]
		}
		stream := concat(frames...)
		mc := &memConn{}
		c := newConn(mc, nil)
		rng := rand.New(rand.NewPCG(seed, seed>>1))
		for rest := stream; len(rest) > 0; {
			var bufs [][]byte
			total := 0
			for range 1 + rng.IntN(3) {
				k := min(len(rest), rng.IntN(1+rng.IntN(3000)))
				bufs = append(bufs, rest[:k])
				rest = rest[k:]
				total += k
			}
			n, err := c.WriteBuffers(bufs)
			if err != nil || n != total {
				t.Fatalf("WriteBuffers = %d, %v; want %d", n, err, total)
			}
		}
		msgs := parseServerStream(t, mc.out.Bytes())
		if len(msgs) != len(frames) {
			t.Fatalf("%d messages for %d frames", len(msgs), len(frames))
		}
		for i := range frames {
			if !bytes.Equal(msgs[i], frames[i]) {
				t.Fatalf("message %d differs from its frame", i)
			}
		}
	})
}
