package server

import (
	"bytes"
	"testing"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/registry"
)

// Copied frames and handed-over buffers leave the queue in the order they
// entered it, within the byte limit, and a closed queue takes neither. A
// handed-over buffer is written as it is, never copied.
func TestSendQueueKeepsOrderAcrossHandedOverBuffers(t *testing.T) {
	var q sendQueue
	const limit = 1 << 20
	owned := func(s string) *bufpool.Buf {
		b := bufpool.Get(len(s))
		b.B = append(b.B, s...)
		return b
	}
	var want []byte
	push := func(s string) {
		t.Helper()
		if r, _ := q.push([]byte(s), limit); r != registry.Delivered {
			t.Fatalf("push %q: %v", s, r)
		}
		want = append(want, s...)
	}
	handed := map[*bufpool.Buf]bool{}
	pushBuf := func(s string) {
		t.Helper()
		b := owned(s)
		if r, _ := q.pushBuf(b, limit); r != registry.Delivered {
			t.Fatalf("pushBuf %q: %v", s, r)
		}
		handed[b] = true
		want = append(want, s...)
	}

	push("a1 ")
	push("a2 ")
	pushBuf("BIG1 ")
	push("a3 ")
	pushBuf("BIG2 ")
	pushBuf("BIG3 ")
	push("a4")
	var got []byte
	bufs := q.next(nil, false)
	for _, b := range bufs {
		got = append(got, b.B...)
		delete(handed, b)
		bufpool.Put(b)
	}
	if len(handed) != 0 {
		t.Fatalf("%d handed-over buffers were copied instead of queued", len(handed))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("written %q, want %q", got, want)
	}
	q.written(len(got))
	if q.queued != 0 {
		t.Fatalf("%d bytes still counted after writing everything", q.queued)
	}

	// The limit counts handed-over buffers too; a refused one stays the caller's.
	push(string(make([]byte, limit-10)))
	big := owned("more than ten bytes")
	if r, _ := q.pushBuf(big, limit); r != registry.QueueFull {
		t.Fatalf("pushBuf over the limit: %v", r)
	}
	if len(big.B) != len("more than ten bytes") {
		t.Fatal("a refused buffer was changed")
	}
	q.close()
	if r, _ := q.pushBuf(big, limit); r != registry.Gone {
		t.Fatalf("pushBuf after close: %v", r)
	}
	if r, _ := q.push([]byte("x"), limit); r != registry.Gone {
		t.Fatalf("push after close: %v", r)
	}
	if len(q.next(nil, true)) != 0 {
		t.Fatal("a closed queue still holds frames")
	}
}
