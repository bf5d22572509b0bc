package daemon

import (
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
	if got := m.maybe(); got != 0 {
		t.Fatalf("trimmed %d bytes right after allocating 64 MiB", got)
	}
	if got := m.maybe(); got == 0 {
		t.Fatalf("no trim at a quiet look, with %d free", heapFree())
	}
	if free := heapFree(); free >= trimMin {
		t.Fatalf("%d bytes still free after the trim", free)
	}
	if got := m.maybe(); got != 0 {
		t.Fatalf("trimmed %d bytes again with nothing allocated since", got)
	}
}
