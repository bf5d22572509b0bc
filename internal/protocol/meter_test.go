package protocol

import (
	"bytes"
	"errors"
	"testing"
)

func TestMeter(t *testing.T) {
	login, _ := AppendLogin(nil, "alice")
	transfer, _ := AppendTransfer(nil, "alice", "bob", []byte("hello"))
	heartbeat, _ := AppendTransfer(nil, "alice", "", nil)
	empty := []byte("RELY\x01\x01\x00") // an empty login ID: the reader's business, not the meter's
	big, _ := AppendTransferHead(nil, "a", "b", 1<<20)
	tests := []struct {
		name  string
		in    []byte
		total int
		err   error
	}{
		{"login", login, len(login), nil},
		{"transfer", transfer, len(transfer), nil},
		{"heartbeat", heartbeat, len(heartbeat), nil},
		{"empty login ID", empty, len(empty), nil},
		{"large payload header only", big, len(big) + 1<<20, nil},
		{"bad magic", []byte("RELX\x01\x01\x01a"), 0, BadMagic},
		{"bad version", []byte("RELY\x02\x01\x01a"), 0, BadVersion},
		{"bad command", []byte("RELY\x01\x05\x01a"), 0, BadCommand},
		{"incomplete", transfer[:10], 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and one byte at a time: the same answer.
			for _, step := range []int{len(tt.in), 1} {
				var m Meter
				var err error
				fed := 0
				for fed < len(tt.in) && err == nil {
					var n int
					n, err = m.Feed(tt.in[fed:min(fed+step, len(tt.in))])
					fed += n
					if n == 0 {
						break
					}
				}
				if !errors.Is(err, tt.err) {
					t.Fatalf("step %d: err %v, want %v", step, err, tt.err)
				}
				if m.Total() != tt.total {
					t.Fatalf("step %d: total %d, want %d", step, m.Total(), tt.total)
				}
			}
		})
	}
}

func TestMeterStopsAtFrameEnd(t *testing.T) {
	a, _ := AppendTransfer(nil, "alice", "bob", []byte("one"))
	b, _ := AppendLogin(nil, "bob")
	stream := append(append([]byte{}, a...), b...)
	var m Meter
	n, err := m.Feed(stream)
	if err != nil || n != len(a) || !m.Done() {
		t.Fatalf("Feed = %d, %v, done %v; want %d, nil, true", n, err, m.Done(), len(a))
	}
	m.Reset()
	n, err = m.Feed(stream[n:])
	if err != nil || n != len(b) || !m.Done() || !bytes.Equal(stream[len(a):], b) {
		t.Fatalf("second Feed = %d, %v; want %d", n, err, len(b))
	}
}
