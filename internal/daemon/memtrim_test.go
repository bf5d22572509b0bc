package daemon

import (
	"runtime/debug"
	"runtime/metrics"
	"testing"
)

var sink [][]byte

func heapFree() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// Garbage left by a burst goes back to the OS at the first quiet look, not
// while the process is still allocating, whether a collection ran since or
// not.
func TestMemTrimAfterABurst(t *testing.T) {
	m := newMemTrim()
	for range 64 << 10 {
		sink = append(sink, make([]byte, 1024)) // 64 MiB of small objects, like connections' setup
	}
	sink = nil // garbage, collected or not yet
	if got := m.maybe(0); got != 0 {
		t.Fatalf("trimmed %d bytes right after allocating 64 MiB", got)
	}
	if got := m.maybe(0); got == 0 {
		t.Fatalf("no trim at a quiet look, with %d free", heapFree())
	}
	if free := heapFree(); free >= trimMin {
		t.Fatalf("%d bytes still free after the trim", free)
	}
	if got := m.maybe(0); got != 0 {
		t.Fatalf("trimmed %d bytes again with nothing allocated since", got)
	}
}

// The collector's goal stays the headroom above a small live heap and twice
// a large one; without a headroom it is the runtime's default.
func TestGCPercent(t *testing.T) {
	const h = 64 << 20
	for _, c := range []struct {
		live, headroom uint64
		want           int
	}{
		{0, h, 1600},       // no collection yet: as 4 MiB, the runtime's least goal
		{1 << 20, h, 1600}, // 1 MiB: as 4 MiB (the runtime's goal floor is 4 MiB x GOGC/100)
		{16 << 20, h, 400}, // 16 MiB: goal 80 MiB
		{h, h, 100},        // from here on the runtime's default
		{1 << 30, h, 100},
		{16 << 20, 0, 100}, // not in a cluster
	} {
		if got := gcPercent(c.live, c.headroom); got != c.want {
			t.Errorf("gcPercent(%d, %d) = %d, want %d", c.live, c.headroom, got, c.want)
		}
	}
}

// GOGC in the environment is the operator's: pace leaves it alone.
func TestPaceLeavesGOGCAlone(t *testing.T) {
	t.Setenv("GOGC", "50")
	m := newMemTrim()
	prev := debug.SetGCPercent(50)
	defer debug.SetGCPercent(prev)
	m.pace(1<<20, 64<<20)
	if got := debug.SetGCPercent(50); got != 50 {
		t.Fatalf("GC percent %d with GOGC=50 in the environment", got)
	}
}

// Paced, the percent follows the live heap and skips small changes.
func TestPaceFollowsTheLiveHeap(t *testing.T) {
	t.Setenv("GOGC", "")
	m := newMemTrim()
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	m.pace(16<<20, 64<<20)
	if got := debug.SetGCPercent(400); got != 400 || m.percent != 400 {
		t.Fatalf("percent %d (recorded %d) for 16 MiB live, want 400", got, m.percent)
	}
	debug.SetGCPercent(123) // pace must not set it again for a change under a tenth
	m.pace(16<<20+1<<20, 64<<20)
	if got := debug.SetGCPercent(400); got != 123 {
		t.Fatalf("pace set the percent to %d for a 6 %% change", got)
	}
	m.pace(1<<30, 64<<20)
	if got := debug.SetGCPercent(400); got != 100 {
		t.Fatalf("percent %d for 1 GiB live, want 100", got)
	}
	m.pace(16<<20, 64<<20) // 400 again, recorded
	m.pace(16<<20, 0)      // left the cluster
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("percent %d without a headroom, want 100", got)
	}
}
