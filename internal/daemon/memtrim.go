package daemon

import (
	"runtime/debug"
	"runtime/metrics"
)

// memTrim gives the heap that a burst freed back to the operating system
// at the first quiet look after a collection (the heap counts as free only
// once collected; a quiet process is collected at least every 2 minutes). The Go runtime keeps freed memory up to
// its heap goal (twice the live heap) for reuse: after 10,000 logins its
// connections' setup garbage stayed resident, about 0.5 KiB per idle
// connection. Forwarding allocates nothing, so a relay that only forwards
// or holds idle connections is quiet, and one trim returns the lot; under
// churn (logins, reloads) the runtime reuses that memory itself, and
// nothing is trimmed.
type memTrim struct {
	samples []metrics.Sample
	allocs  uint64 // bytes allocated in all, at the last look
}

const (
	trimQuiet = 1 << 20 // allocated since the last look, at most, to be quiet
	trimMin   = 4 << 20 // free heap worth a trim, at least...
	trimShare = 8       // ...and at least 1/trimShare of the live heap
)

func newMemTrim() *memTrim {
	m := &memTrim{samples: []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
	}}
	m.read()
	return m
}

func (m *memTrim) read() (allocated, free, objects uint64) {
	metrics.Read(m.samples)
	total := m.samples[0].Value.Uint64()
	allocated, m.allocs = total-m.allocs, total
	return allocated, m.samples[1].Value.Uint64(), m.samples[2].Value.Uint64()
}

// maybe looks at the heap, called about once a second, and returns its
// free memory to the OS when the process allocated little since the last
// look and enough is free to be worth a collection. It returns how many
// bytes were free, or 0 when it did not trim. A trim is a full collection:
// on a heap of hundreds of MB it takes the caller (the daemon's signal
// loop) a fraction of a second, while the relay goes on.
func (m *memTrim) maybe() uint64 {
	allocated, free, objects := m.read()
	if allocated > trimQuiet || free < trimMin || free < objects/trimShare {
		return 0
	}
	debug.FreeOSMemory()
	m.read() // what the collection allocated is not the next interval's
	return free
}
