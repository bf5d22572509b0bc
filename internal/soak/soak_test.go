package soak

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestFramesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := newBlock(1<<16, rng)
	for _, n := range []int{1, 2, 7, 8, 11, 12, 13, 100, 4096, 1 << 16} {
		for _, seq := range []uint64{0, 1, 255, 256, 1<<40 + 12345} {
			p := make([]byte, n)
			b.encode(p, seq)
			got, exact, ok := b.decode(p)
			if !ok || exact != (n >= seqLen) {
				t.Fatalf("size %d seq %d: ok %v exact %v", n, seq, ok, exact)
			}
			mask := ^uint64(0)
			if n < seqLen {
				mask = 1<<(8*n) - 1
			}
			if got != seq&mask {
				t.Fatalf("size %d seq %d: decoded %d", n, seq, got)
			}
		}
	}
}

func TestFramesCorruption(t *testing.T) {
	b := newBlock(1<<12, rand.New(rand.NewPCG(1, 2)))
	frame := func(n int, seq uint64) []byte { p := make([]byte, n); b.encode(p, seq); return p }
	for _, tc := range []struct {
		name string
		p    []byte
	}{
		{"empty", nil},
		{"flipped body bit", func() []byte { p := frame(100, 7); p[50] ^= 1; return p }()},
		{"flipped checksum bit", func() []byte { p := frame(100, 7); p[9] ^= 1; return p }()},
		{"flipped sequence bit", func() []byte { p := frame(100, 7); p[0] ^= 1; return p }()},
		{"bad padding", func() []byte { p := frame(10, 7); p[9] = 0; return p }()},
		{"truncated", frame(100, 7)[:99]},
		{"body of another frame, checksum fixed", func() []byte {
			p := frame(100, 7)
			copy(p[:seqLen], frame(100, 8)[:seqLen]) // claims to be frame 8 with frame 7's body
			return p
		}()},
	} {
		if _, _, ok := b.decode(tc.p); ok {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

func TestStream(t *testing.T) {
	b := newBlock(1<<12, rand.New(rand.NewPCG(1, 2)))
	frame := func(n int, seq uint64) []byte { p := make([]byte, n); b.encode(p, seq); return p }
	type step struct {
		p    []byte
		want verdict
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		min, max uint64
	}{
		{"in order with gaps", []step{{frame(20, 3), fine}, {frame(20, 4), fine}, {frame(20, 9), fine}}, 3, 9},
		{"backwards", []step{{frame(20, 5), fine}, {frame(20, 4), reordered}, {frame(20, 6), fine}}, 4, 6},
		{"duplicate", []step{{frame(20, 5), fine}, {frame(20, 5), reordered}}, 5, 5},
		{"corrupt", []step{{frame(20, 5), fine}, {func() []byte { p := frame(20, 6); p[19] ^= 1; return p }(), corrupt}}, 5, 5},
		// Short payloads carry only low bytes: 1-byte frame 0x01 after 255 is
		// 257, so 256 (exact) after it went backwards.
		{"short frames follow the exact ones", []step{{frame(20, 255), fine}, {frame(1, 257), fine}, {frame(20, 256), reordered}}, 255, 256},
		{"short frames before any exact one", []step{{frame(3, 70000), fine}, {frame(20, 3), fine}}, 3, 3},
	} {
		var s stream
		for i, st := range tc.steps {
			if got := s.add(b, st.p); got != st.want {
				t.Errorf("%s: step %d: got %v, want %v", tc.name, i, got, st.want)
			}
		}
		if !s.exact || s.min != tc.min || s.max != tc.max {
			t.Errorf("%s: span %d–%d (exact %v), want %d–%d", tc.name, s.min, s.max, s.exact, tc.min, tc.max)
		}
	}
}

func TestOverlaps(t *testing.T) {
	for _, tc := range []struct {
		spans []span
		want  int
	}{
		{nil, 0},
		{[]span{{0, 10}, {11, 20}, {25, 25}}, 0},
		{[]span{{11, 20}, {0, 10}}, 0}, // order of arrival does not matter
		{[]span{{0, 10}, {10, 20}}, 1}, // frame 10 twice
		{[]span{{0, 100}, {20, 30}, {40, 50}}, 2},
	} {
		if got := overlaps(tc.spans); got != tc.want {
			t.Errorf("overlaps(%v) = %d, want %d", tc.spans, got, tc.want)
		}
	}
}

func TestResultBooks(t *testing.T) {
	r := Result{Sent: 100, Received: 90, Accepted: 100, Forwarded: 90}
	r.Dropped[1] = 10
	if r.Unexplained() != 0 || !r.OK() {
		t.Fatalf("balanced books rejected: %s", r.String())
	}
	r.Dropped[1] = 9
	if r.Unexplained() != 1 || r.OK() {
		t.Fatalf("a lost frame passed: %s", r.String())
	}
	r.Dropped[1] = 10
	r.Reordered = 1
	if r.OK() {
		t.Fatal("a reordering passed")
	}
}

func TestRandomSize(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var small, large int
	for range 10000 {
		n := randomSize(rng, 1<<20)
		if n < 1 || n > 1<<20 {
			t.Fatalf("size %d out of range", n)
		}
		if n < 16 {
			small++
		}
		if n > 1<<19 {
			large++
		}
	}
	if small == 0 || large == 0 {
		t.Fatalf("%d sizes under 16 B, %d over 512 KiB: not spread from 1 B to 1 MiB", small, large)
	}
}

// A short soak against the real relayd, SIGTERM included: the mix runs,
// relayd reads everything sent, nothing arrives corrupted, reordered or
// reset, and relayd's own books balance (what it accepted was forwarded
// or dropped with a reason). Whether the receivers' side balances too is
// what `make soak` reports; see docs/BENCHMARKS.md.
func TestSoak(t *testing.T) {
	var lines int
	res, err := Run(context.Background(), Config{
		Duration: 3 * time.Second, Pairs: 3, MaxSize: 64 << 10, Seed: 7,
		Progress: func(string) { lines++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(res)
	if res.Sent == 0 || res.Received == 0 || res.Logins < 6 {
		t.Fatalf("no traffic: %s", res)
	}
	if res.Accepted != res.Sent {
		t.Errorf("relayd accepted %d of %d frames sent", res.Accepted, res.Sent)
	}
	if res.Corrupt != 0 || res.Reordered != 0 || res.Resets != 0 {
		t.Errorf("corrupt %d, reordered %d, resets %d", res.Corrupt, res.Reordered, res.Resets)
	}
	if got := res.Forwarded + res.DroppedTotal(); got != res.Accepted {
		t.Errorf("relayd's books: forwarded + dropped = %d, accepted %d", got, res.Accepted)
	}
	if lines == 0 {
		t.Error("no progress reported")
	}
}
