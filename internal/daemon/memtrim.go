package daemon

import (
	"runtime/debug"
	"runtime/metrics"
)

// memTrim gives the heap that a burst freed back to the operating system
// at the first quiet look after it. The Go runtime keeps freed memory up to
// its heap goal (twice the live heap) for reuse: after 10,000 logins about
// 5-10 MB of their setup garbage stayed resident, about 0.5 KiB per idle
// connection. Forwarding allocates nothing, so a relay that only forwards
// or holds idle connections is quiet, and one trim returns the lot; under
// churn (logins, reloads) the runtime reuses that memory itself, and
// nothing is trimmed.
//
// What a burst left cannot be read off the heap's statistics (garbage that
// was live at the last collection still counts as live), so a trim follows
// any allocation worth one: at least 4 MiB and an eighth of the live heap
// since the last trim. A trim is a full collection: on a heap of hundreds
// of MB it takes the caller (the daemon's signal loop) a fraction of a
// second, while the relay goes on.
type memTrim struct {
	samples   []metrics.Sample
	allocs    uint64 // bytes allocated in all, at the last look
	sinceTrim uint64 // bytes allocated since the last trim
}

const (
	trimQuiet = 1 << 20 // allocated since the last look, at most, to be quiet
	trimMin   = 4 << 20 // allocated since the last trim, at least...
	trimShare = 8       // ...and at least 1/trimShare of the live heap
)

func newMemTrim() *memTrim {
	m := &memTrim{samples: []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
	}}
	m.read()
	m.sinceTrim = 0
	return m
}

// read returns what was allocated since the last read, the live heap (as
// of the last collection) and the heap returned to the OS.
func (m *memTrim) read() (allocated, live, released uint64) {
	metrics.Read(m.samples)
	total := m.samples[0].Value.Uint64()
	allocated, m.allocs = total-m.allocs, total
	m.sinceTrim += allocated
	return allocated, m.samples[1].Value.Uint64(), m.samples[2].Value.Uint64()
}

// maybe looks at the heap, called about once a second, and returns free
// memory to the OS when the process allocated little since the last look
// and enough since the last trim. It returns how many bytes the trim
// released, or 0 when it did not trim.
func (m *memTrim) maybe() uint64 {
	allocated, live, before := m.read()
	if allocated > trimQuiet || m.sinceTrim < trimMin || m.sinceTrim < live/trimShare {
		return 0
	}
	debug.FreeOSMemory()
	_, _, after := m.read()
	m.sinceTrim = 0 // what the collection allocated is not the next trim's
	if after < before {
		return 0
	}
	return max(after-before, 1)
}
