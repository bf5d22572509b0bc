// Package wait is the one polling helper for tests: wait for a condition
// with a deadline instead of sleeping for a guessed time.
package wait

import (
	"testing"
	"time"
)

// For calls cond until it returns true, and fails the test with what (the
// condition that never came) once timeout has passed. It polls at once,
// then with a backoff from 1ms to 50ms, so that quick conditions are seen
// quickly and slow ones cost little CPU. cond runs on the test's
// goroutine, so it may itself call t.Fatal.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, what)
		}
		time.Sleep(delay)
	}
}
