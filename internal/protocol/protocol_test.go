package protocol

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func login(t testing.TB, id string) []byte {
	t.Helper()
	b, err := AppendLogin(nil, []byte(id))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func transfer(t testing.TB, from, to, payload string) []byte {
	t.Helper()
	b, err := AppendTransfer(nil, []byte(from), []byte(to), []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func newReader(b []byte, size int, maxPayload int) *Reader {
	return NewReader(bufio.NewReaderSize(bytes.NewReader(b), size), Fixed(maxPayload))
}

func TestEncodingIsByteExact(t *testing.T) {
	got := login(t, "alice")
	want := []byte("RELY\x01\x01\x05alice")
	if !bytes.Equal(got, want) {
		t.Fatalf("login = %q, want %q", got, want)
	}
	got = transfer(t, "a", "bob", "hi")
	want = []byte("RELY\x01\x09\x01a\x03bob\x00\x00\x00\x02hi")
	if !bytes.Equal(got, want) {
		t.Fatalf("transfer = %q, want %q", got, want)
	}
	if n := TransferLen(1, 3, 2); n != len(want) {
		t.Fatalf("TransferLen = %d, want %d", n, len(want))
	}
	if MaxTransferOverhead != 522 {
		t.Fatalf("MaxTransferOverhead = %d", MaxTransferOverhead)
	}
	head, err := AppendTransferHead(nil, "a", "bob", 2)
	if err != nil || !bytes.Equal(append(head, "hi"...), want) {
		t.Fatalf("head + payload = %q, %v; want %q", append(head, "hi"...), err, want)
	}
	if _, err := AppendTransferHead(nil, "a", "b", -1); err == nil {
		t.Fatal("a negative payload length was encoded")
	}
}

func TestEncodingRejectsBadIDs(t *testing.T) {
	long := strings.Repeat("x", 256)
	if _, err := AppendLogin(nil, ""); err == nil {
		t.Error("empty login ID accepted")
	}
	if _, err := AppendLogin(nil, []byte(long)); err == nil {
		t.Error("256-byte login ID accepted")
	}
	if _, err := AppendTransfer(nil, "", "b", nil); err == nil {
		t.Error("empty from ID accepted")
	}
	if _, err := AppendTransfer(nil, []byte("a"), []byte(long), nil); err == nil {
		t.Error("256-byte to ID accepted")
	}
	if _, err := AppendTransfer(nil, "a", "", nil); err != nil {
		t.Errorf("heartbeat refused: %v", err)
	}
}

func TestReaderValidFrames(t *testing.T) {
	big := strings.Repeat("p", 5000)
	id255 := strings.Repeat("i", 255)
	tests := []struct {
		name    string
		in      []byte
		cmd     byte
		id, to  string
		payload string
	}{
		{"login", login(t, "alice"), CmdLogin, "alice", "", ""},
		{"login 255-byte ID", login(t, id255), CmdLogin, id255, "", ""},
		{"transfer", transfer(t, "alice", "bob", "hello"), CmdTransfer, "alice", "bob", "hello"},
		{"empty payload", transfer(t, "alice", "bob", ""), CmdTransfer, "alice", "bob", ""},
		{"heartbeat", transfer(t, "alice", "", ""), CmdTransfer, "alice", "", ""},
		{"heartbeat with payload", transfer(t, "alice", "", "xyz"), CmdTransfer, "alice", "", "xyz"},
		{"binary IDs", transfer(t, "\x00\xff\n", "\r\n\x00", "\x00"), CmdTransfer, "\x00\xff\n", "\r\n\x00", "\x00"},
		{"larger than read buffer", transfer(t, id255, id255, big), CmdTransfer, id255, id255, big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Two copies back to back: the second must parse after the first is released.
			r := newReader(cat(tc.in, tc.in), MinReadBuffer, 1<<20)
			for i := 0; i < 2; i++ {
				f, err := r.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if f.Cmd != tc.cmd || string(f.ID) != tc.id || string(f.To) != tc.to || string(f.Payload) != tc.payload {
					t.Fatalf("frame %d = cmd %#x id %q to %q payload %q", i, f.Cmd, f.ID, f.To, f.Payload)
				}
				if !bytes.Equal(f.Raw, tc.in) {
					t.Fatalf("frame %d: Raw differs from the bytes received", i)
				}
				if f.IsHeartbeat() != (tc.cmd == CmdTransfer && tc.to == "") {
					t.Fatalf("IsHeartbeat = %v", f.IsHeartbeat())
				}
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want io.EOF", err)
			}
		})
	}
}

func TestReaderMalformed(t *testing.T) {
	withLen := func(n uint32) []byte {
		b := []byte("RELY\x01\x09\x01a\x01b")
		return binary.BigEndian.AppendUint32(b, n)
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"bad magic", []byte("RELX\x01\x01\x01a"), BadMagic},
		{"http request", []byte("GET / HTTP/1.1\r\n\r\n"), BadMagic},
		{"bad version", []byte("RELY\x02\x01\x01a"), BadVersion},
		{"bad command", []byte("RELY\x01\x02\x01a"), BadCommand},
		{"bad command, short", []byte("RELY\x01\x00"), BadCommand},
		{"empty login ID", []byte("RELY\x01\x01\x00"), EmptyID},
		{"empty from ID", []byte("RELY\x01\x09\x00\x01b\x00\x00\x00\x00"), EmptyID},
		{"payload over max", withLen(101), PayloadTooLarge},
		{"payload 0xFFFFFFFF", withLen(0xFFFFFFFF), PayloadTooLarge},
		{"truncated header", []byte("REL"), io.ErrUnexpectedEOF},
		{"truncated login", []byte("RELY\x01\x01\x05ali"), io.ErrUnexpectedEOF},
		{"truncated payload", append(withLen(10), "abc"...), io.ErrUnexpectedEOF},
		{"truncated large payload", append(withLen(100), make([]byte, 50)...), io.ErrUnexpectedEOF},
		{"empty stream", nil, io.EOF},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newReader(tc.in, MinReadBuffer, 100)
			_, err := r.Next()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// A payload over the limit is refused at its length: not one payload byte is read.
func TestReaderRefusesOversizedPayloadAtHeader(t *testing.T) {
	head := []byte("RELY\x01\x09\x01a\x01b\xff\xff\xff\xff")
	src := &countingReader{r: io.MultiReader(bytes.NewReader(head), infinite{})}
	r := NewReader(bufio.NewReaderSize(src, MinReadBuffer), Fixed(8<<20))
	if _, err := r.Next(); err != PayloadTooLarge {
		t.Fatalf("err = %v", err)
	}
	if src.n > MinReadBuffer {
		t.Fatalf("read %d bytes: the payload was consumed", src.n)
	}
}

// Frames that arrive one byte per read parse exactly as whole ones.
func TestReaderOneByteAtATime(t *testing.T) {
	var stream []byte
	for i := 0; i < 50; i++ {
		stream = append(stream, transfer(t, "a", "b", strings.Repeat("x", i*40))...)
	}
	r := NewReader(bufio.NewReaderSize(&oneByteReader{b: stream}, MinReadBuffer), Fixed(1<<20))
	for i := 0; i < 50; i++ {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if len(f.Payload) != i*40 {
			t.Fatalf("frame %d: payload %d bytes", i, len(f.Payload))
		}
	}
}

func TestReaderSteadyStateDoesNotAllocate(t *testing.T) {
	small := transfer(t, "alice", "bob", strings.Repeat("x", 64))
	large := transfer(t, "alice", "bob", strings.Repeat("x", 64<<10))
	for _, frame := range [][]byte{small, large} {
		src := &repeatReader{frame: frame}
		r := NewReader(bufio.NewReaderSize(src, 16<<10), Fixed(1<<20))
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(1000, func() {
			if _, err := r.Next(); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 0.01 {
			t.Fatalf("%d-byte frames: %.2f allocations per frame", len(frame), allocs)
		}
	}
}

func BenchmarkReader(b *testing.B) {
	for _, size := range []int{64, 64 << 10} {
		frame := transfer(b, "alice", "bob", strings.Repeat("x", size))
		b.Run(byteSize(size), func(b *testing.B) {
			r := NewReader(bufio.NewReaderSize(&repeatReader{frame: frame}, 16<<10), Fixed(1<<20))
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Next(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<10 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

type infinite struct{}

func (infinite) Read(p []byte) (int, error) { return len(p), nil }

type oneByteReader struct{ b []byte }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

// repeatReader streams the same frame forever.
type repeatReader struct {
	frame []byte
	off   int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.frame[r.off:])
		n += c
		r.off = (r.off + c) % len(r.frame)
	}
	return n, nil
}
