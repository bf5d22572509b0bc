// Package bufpool recycles byte buffers in power-of-two size classes, so the
// forwarding path reuses memory instead of allocating per frame or per batch,
// and idle connections hold none.
package bufpool

import (
	"math/bits"
	"sync"
)

const (
	minShift = 9  // smallest class: 512 B
	maxShift = 30 // largest pooled class: 1 GiB; larger buffers are not pooled
)

// Buf is a pooled buffer. It is a pointer so that putting it back into a
// sync.Pool does not allocate.
type Buf struct {
	B []byte
}

var pools [maxShift - minShift + 1]sync.Pool

// Get returns an empty buffer whose capacity is at least n.
func Get(n int) *Buf {
	c := class(n)
	if c < 0 {
		return &Buf{B: make([]byte, 0, n)}
	}
	if b, ok := pools[c].Get().(*Buf); ok {
		return b
	}
	return &Buf{B: make([]byte, 0, 1<<(c+minShift))}
}

// Put returns b to the pool; b must not be used afterwards. A nil b is ignored.
func Put(b *Buf) {
	if b == nil {
		return
	}
	c := class(cap(b.B))
	if c < 0 || cap(b.B) != 1<<(c+minShift) {
		return // not one of ours; let the GC have it
	}
	b.B = b.B[:0]
	pools[c].Put(b)
}

// class returns the index of the smallest class holding n bytes, or -1 when n
// is larger than the largest pooled class.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxShift {
		return -1
	}
	return shift - minShift
}
