package protocol

import "testing"

// The fast path gives what feeding the bytes one at a time gives.
func FuzzMeterFastPath(f *testing.F) {
	f.Add([]byte("RELY\x01\x09\x01a\x01b\x00\x00\x00\x02hi"))
	f.Add([]byte("RELY\x01\x01\x03abc"))
	f.Add([]byte("RELY\x02\x01\x03abc"))
	f.Add([]byte("RELY\x01\x09\x01a\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var fast, slow Meter
		nf, ef := fast.Feed(b)
		ns, es := 0, error(nil)
		for ns < len(b) && es == nil && !slow.Done() {
			var k int
			k, es = slow.Feed(b[ns : ns+1])
			ns += k
		}
		if ef != es || nf != ns || fast.Total() != slow.Total() || fast.Pos() != slow.Pos() {
			t.Fatalf("%q: fast (%d, %v, total %d, pos %d), byte by byte (%d, %v, total %d, pos %d)",
				b, nf, ef, fast.Total(), fast.Pos(), ns, es, slow.Total(), slow.Pos())
		}
		// And the rest of the frame continues the same way.
		if ef == nil && !fast.Done() {
			more := make([]byte, 10)
			a, _ := fast.Feed(more)
			c, _ := slow.Feed(more)
			if a != c || fast.Pos() != slow.Pos() {
				t.Fatalf("%q: continuing differs", b)
			}
		}
	})
}
