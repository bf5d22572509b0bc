package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader feeds arbitrary streams to the reader: it must never panic, never
// return a frame larger than the limit, and every frame it returns must
// re-encode to exactly the bytes it was read from.
func FuzzReader(f *testing.F) {
	seeds := [][]byte{
		login(f, "alice"),
		cat(login(f, "alice"), transfer(f, "alice", "bob", "hello")),
		transfer(f, "a", "", "heartbeat payload"),
		transfer(f, "a", "b", string(make([]byte, 3000))),
		[]byte("RELX\x01\x01\x01a"),
		[]byte("RELY\x02\x01\x01a"),
		[]byte("RELY\x01\x07\x01a"),
		[]byte("RELY\x01\x01\x00"),
		[]byte("RELY\x01\x09\x01a\x01b\xff\xff\xff\xff"),
		[]byte("RELY\x01\x09\x01a\x01b\x00\x00\x00\x05ab"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	const maxPayload = 4096
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := NewReader(bufio.NewReaderSize(bytes.NewReader(stream), MinReadBuffer), Fixed(maxPayload))
		consumed := 0
		for {
			fr, err := r.Next()
			if err != nil {
				if _, ok := IsViolation(err); !ok && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(fr.Payload) > maxPayload {
				t.Fatalf("payload of %d bytes over the limit", len(fr.Payload))
			}
			var re []byte
			switch fr.Cmd {
			case CmdLogin:
				re, err = AppendLogin(nil, fr.ID)
			case CmdTransfer:
				re, err = AppendTransfer(nil, fr.ID, fr.To, fr.Payload)
			default:
				t.Fatalf("returned a frame with command %#x", fr.Cmd)
			}
			if err != nil {
				t.Fatalf("decoded frame does not re-encode: %v", err)
			}
			if !bytes.Equal(re, fr.Raw) || !bytes.Equal(fr.Raw, stream[consumed:consumed+len(fr.Raw)]) {
				t.Fatalf("frame at offset %d is not byte-exact", consumed)
			}
			consumed += len(fr.Raw)
		}
	})
}

// TransferTo accepts exactly the bytes of one well-formed transfer frame:
// re-encoding an accepted frame from its parts gives the same bytes.
func FuzzTransferTo(f *testing.F) {
	b, _ := AppendTransfer(nil, "alice", "bob", []byte("hi"))
	f.Add(b)
	hb, _ := AppendTransfer(nil, "alice", "", nil)
	f.Add(hb)
	f.Fuzz(func(t *testing.T, b []byte) {
		to, ok := TransferTo(b)
		if !ok {
			return
		}
		from := b[HeaderLen+1 : HeaderLen+1+int(b[HeaderLen])]
		payload := b[TransferLen(len(from), len(to), 0):]
		again, err := AppendTransfer(nil, from, to, payload)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, which re-encodes as %x (%v)", b, again, err)
		}
	})
}
