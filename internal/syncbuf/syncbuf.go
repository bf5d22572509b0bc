// Package syncbuf is a bytes.Buffer that several goroutines may write while
// another reads it: for tests that watch what a logger or a child process
// writes. It imports nothing of relayd's, so every package's tests can use
// it, the server's included.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects writes from any number of goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
