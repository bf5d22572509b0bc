package registry

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

type fakePeer struct {
	name   string
	frames atomic.Int64
}

func (p *fakePeer) Deliver([]byte, *Waiter) Result { p.frames.Add(1); return Delivered }
func (p *fakePeer) Kick()                          {}

func TestLastLoginWinsAndUnregisterIsGenerationSafe(t *testing.T) {
	r := NewLocal()
	old, cur := &fakePeer{name: "old"}, &fakePeer{name: "new"}
	if prev := r.Swap("alice", old); prev != nil {
		t.Fatalf("first Register replaced %v", prev)
	}
	if prev := r.Swap("alice", cur); prev != old {
		t.Fatalf("second Register replaced %v, want the old peer", prev)
	}
	if r.Len() != 1 {
		t.Fatalf("Len = %d, want 1", r.Len())
	}
	r.Unregister("alice", old) // the kicked connection finishing its teardown
	if p, ok := r.Lookup([]byte("alice")); !ok || p != cur {
		t.Fatalf("after the old peer unregistered, Lookup = %v, %v; want the new peer", p, ok)
	}
	r.Unregister("alice", cur)
	if _, ok := r.Lookup([]byte("alice")); ok {
		t.Fatal("Lookup found alice after she unregistered")
	}
	if r.Len() != 0 {
		t.Fatalf("Len = %d, want 0", r.Len())
	}
	r.Unregister("nobody", cur) // unknown IDs are a no-op
	if r.Len() != 0 {
		t.Fatalf("Len = %d after unregistering an unknown ID", r.Len())
	}
}

func TestBinaryIDs(t *testing.T) {
	r := NewLocal()
	ids := []string{"\x00", "\x00\x00", "a\nb", "\xff\xfe", "ä"}
	for _, id := range ids {
		r.Swap(id, &fakePeer{name: id})
	}
	for _, id := range ids {
		p, ok := r.Lookup([]byte(id))
		if !ok || p.(*fakePeer).name != id {
			t.Fatalf("Lookup(%q) = %v, %v", id, p, ok)
		}
	}
}

func TestConcurrentRegisterLookup(t *testing.T) {
	r := NewLocal()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &fakePeer{}
			for i := 0; i < 2000; i++ {
				id := fmt.Sprintf("c%d", i%50)
				r.Swap(id, p)
				r.Lookup([]byte(id))
				r.Unregister(id, p)
			}
		}()
	}
	wg.Wait()
	if r.Len() < 0 || r.Len() > 50 {
		t.Fatalf("Len = %d after concurrent churn", r.Len())
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	r := NewLocal()
	r.Swap("bob", &fakePeer{})
	id := []byte("bob")
	if n := testing.AllocsPerRun(1000, func() { r.Lookup(id) }); n != 0 {
		t.Fatalf("Lookup allocated %.1f times", n)
	}
}

// singleLock is the baseline the sharded registry is measured against: one
// RWMutex in front of one map.
type singleLock struct {
	mu    sync.RWMutex
	peers map[string]Peer
}

func (s *singleLock) Lookup(id []byte) (Peer, bool) {
	s.mu.RLock()
	p, ok := s.peers[string(id)]
	s.mu.RUnlock()
	return p, ok
}

// BenchmarkLookup64Pairs measures lookups from 64 concurrent senders, each
// addressing its own receiver, against a single-lock map in the same run.
func BenchmarkLookup64Pairs(b *testing.B) {
	const pairs = 64
	ids := make([][]byte, pairs)
	local := NewLocal()
	single := &singleLock{peers: map[string]Peer{}}
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("receiver-%d", i))
		local.Swap(string(ids[i]), &fakePeer{})
		single.peers[string(ids[i])] = &fakePeer{}
	}
	run := func(b *testing.B, lookup func([]byte) (Peer, bool)) {
		var next atomic.Int64
		b.SetParallelism(pairs) // at least 64 concurrent senders
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			id := ids[next.Add(1)%pairs]
			for pb.Next() {
				if _, ok := lookup(id); !ok {
					b.Fatal("lookup missed")
				}
			}
		})
	}
	b.Run("sharded", func(b *testing.B) { run(b, local.Lookup) })
	b.Run("single-lock", func(b *testing.B) { run(b, single.Lookup) })
}
