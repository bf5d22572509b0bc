package wait

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestForReturnsOnceTrue(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	For(t, 5*time.Second, "n reaches 3", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 || time.Since(start) > time.Second {
		t.Fatalf("%d polls in %v", n.Load(), time.Since(start))
	}
}

// fakeT records a failure instead of failing the real test.
type fakeT struct {
	testing.TB
	msg string
}

func (f *fakeT) Helper()                           {}
func (f *fakeT) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

func TestForFailsWithWhatAfterTheDeadline(t *testing.T) {
	ft := &fakeT{TB: t}
	var polls int
	start := time.Now()
	For(ft, 100*time.Millisecond, "the moon turns blue", func() bool {
		polls++
		return ft.msg != "" // Fatalf does not stop a fake: end the loop once it is called
	})
	if !strings.Contains(ft.msg, "the moon turns blue") || !strings.Contains(ft.msg, "100ms") {
		t.Fatalf("failure message %q", ft.msg)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 2*time.Second {
		t.Fatalf("failed after %v", el)
	}
	if polls > 40 { // 100ms with a 1ms..50ms backoff is about ten polls
		t.Fatalf("%d polls: no backoff", polls)
	}
}
