package wsconn

import (
	"bytes"
	"testing"
)

func TestUnmask(t *testing.T) {
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	src := make([]byte, 103)
	for i := range src {
		src[i] = byte(i * 7)
	}
	want := make([]byte, len(src))
	for i := range src {
		want[i] = src[i] ^ key[i%4]
	}
	// Any split into pieces gives the same bytes as one pass.
	for split := 0; split <= len(src); split++ {
		b := bytes.Clone(src)
		off := unmask(b[:split], key, 0)
		unmask(b[split:], key, off)
		if !bytes.Equal(b, want) {
			t.Fatalf("split at %d: wrong bytes", split)
		}
	}
}

func TestAppendHeader(t *testing.T) {
	for _, tt := range []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x82, 0}},
		{125, []byte{0x82, 125}},
		{126, []byte{0x82, 126, 0, 126}},
		{65535, []byte{0x82, 126, 0xFF, 0xFF}},
		{65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	} {
		if got := appendHeader(nil, opBinary, tt.n); !bytes.Equal(got, tt.want) {
			t.Errorf("appendHeader(%d) = %x, want %x", tt.n, got, tt.want)
		}
		if got := headerLen(tt.want[1]); got != len(tt.want) {
			t.Errorf("headerLen(%x) = %d, want %d", tt.want[1], got, len(tt.want))
		}
	}
}
