package server

import (
	"bytes"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/bufpool"
	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// testOffer is the terms of a receiver with send_queue limit and the default
// stall_timeout; it counts the writers the queue asks to start.
func testOffer(limit int, w *registry.Waiter, starts *int) *offer {
	return &offer{limit: limit, stall: 250 * time.Millisecond, waiter: w, writer: startCounter{starts}}
}

type startCounter struct{ n *int }

func (s startCounter) startWriter() { *s.n++ }

func frameOf(s string) []byte {
	f, err := protocol.AppendTransfer(nil, "a", "b", []byte(s))
	if err != nil {
		panic(err)
	}
	return f
}

// Copied frames and handed-over buffers leave the queue in the order they
// entered it, within the byte limit, and a closed queue takes neither. A
// handed-over buffer is written as it is, never copied.
func TestSendQueueKeepsOrderAcrossHandedOverBuffers(t *testing.T) {
	var q sendQueue
	var starts int
	const limit = 1 << 20
	o := testOffer(limit, nil, &starts)
	owned := func(s string) *bufpool.Buf {
		b := bufpool.Get(len(s))
		b.B = append(b.B, frameOf(s)...)
		return b
	}
	var want []byte
	frames := 0
	push := func(s string) {
		t.Helper()
		if r := q.push(frameOf(s), o); r != registry.Delivered {
			t.Fatalf("push %q: %v", s, r)
		}
		want = append(want, frameOf(s)...)
		frames++
	}
	handed := map[*bufpool.Buf]bool{}
	pushBuf := func(s string) {
		t.Helper()
		b := owned(s)
		if r := q.pushBuf(b, o); r != registry.Delivered {
			t.Fatalf("pushBuf %q: %v", s, r)
		}
		handed[b] = true
		want = append(want, b.B...)
		frames++
	}

	push("a1 ")
	push("a2 ")
	pushBuf("BIG1 ")
	push("a3 ")
	pushBuf("BIG2 ")
	pushBuf("BIG3 ")
	push("a4")
	if starts != 1 {
		t.Fatalf("%d writers started for one burst, want 1", starts)
	}
	var got []byte
	items := make([]queued, maxIOV)
	n := q.take(items, false)
	counted := 0
	for _, it := range items[:n] {
		got = append(got, it.b.B...)
		counted += it.frames
		delete(handed, it.b)
		bufpool.Put(it.b)
	}
	if len(handed) != 0 {
		t.Fatalf("%d handed-over buffers were copied instead of queued", len(handed))
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("written %q, want %q", got, want)
	}
	if counted != frames {
		t.Fatalf("buffers say they hold %d frames, %d were queued", counted, frames)
	}
	q.written(len(got))
	if q.queued != 0 {
		t.Fatalf("%d bytes still counted after writing everything", q.queued)
	}

	// The limit counts handed-over buffers too; a refused one stays the caller's.
	fill := frameOf(string(make([]byte, limit-100)))
	if r := q.push(fill, o); r != registry.Delivered {
		t.Fatalf("push to fill the queue: %v", r)
	}
	big := owned(string(make([]byte, 200)))
	size := len(big.B)
	if r := q.pushBuf(big, o); r != registry.QueueFull {
		t.Fatalf("pushBuf over the limit with no waiter: %v, want QueueFull", r)
	}
	if len(big.B) != size {
		t.Fatal("a refused buffer was changed")
	}
	var counts frameCounts
	q.close(DropClosed, &counts)
	if got := counts.lostClosed.Load(); got != 1 {
		t.Fatalf("close dropped %d frames as closed, want the 1 still queued", got)
	}
	if r := q.pushBuf(big, o); r != registry.Gone {
		t.Fatalf("pushBuf after close: %v", r)
	}
	if r := q.push(frameOf("x"), o); r != registry.Gone {
		t.Fatalf("push after close: %v", r)
	}
	if q.take(items, true) != 0 {
		t.Fatal("a closed queue still holds frames")
	}
}

// Rule 9 (docs/PROTOCOL.md) at the queue: a full queue whose socket is taking data
// makes the sender wait (and wakes it when bytes are written); once the
// socket has taken nothing for stall_timeout the frame is refused.
func TestSendQueuePacesUntilTheReceiverStalls(t *testing.T) {
	var q sendQueue
	var starts int
	w := registry.NewWaiter()
	o := testOffer(1000, w, &starts)
	f := frameOf(string(make([]byte, 600)))
	if r := q.push(f, o); r != registry.Delivered {
		t.Fatalf("first frame: %v", r)
	}
	if r := q.push(f, o); r != registry.Wait {
		t.Fatalf("second frame into a full queue that is not stalled: %v, want Wait", r)
	}
	if w.Max <= 0 || w.Max > o.stall {
		t.Fatalf("Wait with Max %v, want (0, %v]", w.Max, o.stall)
	}
	items := make([]queued, maxIOV)
	q.take(items, false)
	q.written(len(items[0].b.B))
	select {
	case <-w.C:
	default:
		t.Fatal("writing freed room but the waiting sender was not signalled")
	}
	bufpool.Put(items[0].b)
	if r := q.push(f, o); r != registry.Delivered {
		t.Fatalf("after room was freed: %v", r)
	}

	// The socket refuses bytes from now on.
	q.blocked()
	if r := q.push(f, o); r != registry.Wait {
		t.Fatalf("blocked for less than stall_timeout: %v, want Wait", r)
	}
	q.blockedAt.Store(time.Now().Add(-o.stall).UnixNano())
	if r := q.push(f, o); r != registry.QueueFull {
		t.Fatalf("blocked for stall_timeout: %v, want QueueFull", r)
	}
	// It reads again: paced like any other from then on.
	q.take(items, false)
	q.written(len(items[0].b.B))
	bufpool.Put(items[0].b)
	if r := q.push(frameOf(string(make([]byte, 700))), o); r != registry.Delivered {
		t.Fatalf("after the receiver read again: %v", r)
	}
	if r := q.push(f, o); r != registry.Wait {
		t.Fatalf("a receiver that recovered: %v, want Wait", r)
	}
}
