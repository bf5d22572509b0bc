package daemon

import (
	"os"
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
//
// The same look paces the collector: see clusterHeadroom.
type memTrim struct {
	samples   []metrics.Sample
	allocs    uint64 // bytes allocated in all, at the last look
	sinceTrim uint64 // bytes allocated since the last trim
	percent   int    // the GC percent set, 0 while GOGC from the environment rules
}

const (
	trimQuiet = 1 << 20 // allocated since the last look, at most, to be quiet
	trimMin   = 4 << 20 // allocated since the last trim, at least...
	trimShare = 8       // ...and at least 1/trimShare of the live heap
)

// clusterHeadroom is the least garbage the collector lets build up before
// it runs on a cluster node. The runtime's own goal is twice the live heap,
// a few tens of MiB on a relay, which is right while forwarding allocates
// nothing; but a cluster node gets every NATS message as a fresh allocation
// from nats.go (the whole payload, one per message: its API gives no way to
// reuse one). Receiving 200 MB/s from another node, the heap was collected
// several times a second, each collection also emptying the buffer pool the
// send queues draw on: with this headroom the receiving node used 10-13 %
// less CPU per frame (docs/CLUSTER.md, "CPU per frame"). What it costs is up
// to this much more heap while frames flow; quiet, the trim returns it, and
// GOMEMLIMIT, when set, still bounds the heap.
const clusterHeadroom = 128 << 20

func newMemTrim() *memTrim {
	m := &memTrim{samples: []metrics.Sample{
		{Name: "/gc/heap/allocs:bytes"},
		{Name: "/gc/heap/live:bytes"},
		{Name: "/memory/classes/heap/released:bytes"},
		{Name: "/gc/scan/stack:bytes"},
		{Name: "/gc/scan/globals:bytes"},
	}}
	if os.Getenv("GOGC") == "" {
		m.percent = 100 // the runtime's default, as set now
	}
	m.read()
	m.sinceTrim = 0
	return m
}

// gcPercent is the GC percent that keeps the collector's goal at least
// headroom above the live heap, and at twice it (the runtime's default,
// GOGC=100) once the base is larger than the headroom. The runtime's goal
// is the live heap plus GOGC percent of base (the live heap and the GC
// roots: stacks and globals), and never below GOGC percent of 4 MiB, so a
// base under 4 MiB counts as 4 MiB; before the first collection the base
// reads 0.
func gcPercent(base, headroom uint64) int {
	return int(max(100, headroom*100/max(base, 4<<20)))
}

// pace sets the GC percent for the base (see gcPercent) and the headroom wanted,
// unless GOGC in the environment says what it is. A change under a tenth
// is not worth the runtime's heap lock.
func (m *memTrim) pace(base, headroom uint64) {
	if m.percent == 0 {
		return
	}
	if p := gcPercent(base, headroom); p*10 < m.percent*9 || p*10 > m.percent*11 {
		debug.SetGCPercent(p)
		m.percent = p
	}
}

// read returns what was allocated since the last read, the live heap (as
// of the last collection), the heap returned to the OS, and the GC roots
// (stacks and globals) the collector scanned.
func (m *memTrim) read() (allocated, live, released, roots uint64) {
	metrics.Read(m.samples)
	total := m.samples[0].Value.Uint64()
	allocated, m.allocs = total-m.allocs, total
	m.sinceTrim += allocated
	return allocated, m.samples[1].Value.Uint64(), m.samples[2].Value.Uint64(),
		m.samples[3].Value.Uint64() + m.samples[4].Value.Uint64()
}

// maybe looks at the heap, called about once a second, paces the collector
// for the live heap and the headroom wanted, and returns free memory to the OS when the process allocated little since the last look
// and enough since the last trim. It returns how many bytes the trim
// released, or 0 when it did not trim.
func (m *memTrim) maybe(headroom uint64) uint64 {
	allocated, live, before, roots := m.read()
	m.pace(live+roots, headroom)
	if allocated > trimQuiet || m.sinceTrim < trimMin || m.sinceTrim < live/trimShare {
		return 0
	}
	debug.FreeOSMemory()
	_, _, after, _ := m.read()
	m.sinceTrim = 0 // what the collection allocated is not the next trim's
	if after < before {
		return 0
	}
	return max(after-before, 1)
}
