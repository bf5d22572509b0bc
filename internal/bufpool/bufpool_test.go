package bufpool

import "testing"

func TestGetCapacity(t *testing.T) {
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 4097, 1 << 20, 8<<20 + 522} {
		b := Get(n)
		if cap(b.B) < n || len(b.B) != 0 {
			t.Fatalf("Get(%d): len %d cap %d", n, len(b.B), cap(b.B))
		}
		if c := cap(b.B); c&(c-1) != 0 {
			t.Fatalf("Get(%d): capacity %d is not a power of two", n, c)
		}
		b.B = append(b.B, 1, 2, 3)
		Put(b)
	}
}

func TestPutForeignBufferIgnored(t *testing.T) {
	Put(&Buf{B: make([]byte, 0, 1000)}) // not a class size: must not be pooled
	Put(nil)
	for i := 0; i < 100; i++ {
		if b := Get(1000); cap(b.B) != 1024 {
			t.Fatalf("Get(1000) returned capacity %d", cap(b.B))
		}
	}
}

func TestSteadyStateDoesNotAllocate(t *testing.T) {
	Put(Get(64 << 10))
	allocs := testing.AllocsPerRun(1000, func() {
		b := Get(64 << 10)
		b.B = append(b.B, 'x')
		Put(b)
	})
	if allocs > 0.01 {
		t.Fatalf("Get/Put allocated %.2f times per run", allocs)
	}
}
