package protocol

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"

	"github.com/relayd/relayd/internal/bufpool"
)

// MinReadBuffer is the smallest bufio.Reader size a Reader accepts: every
// frame's header and IDs must fit in it.
const MinReadBuffer = 1024

// Frame is one decoded frame. Its slices alias the Reader's buffers and are
// valid only until the next call to Next or Release.
type Frame struct {
	Cmd     byte
	ID      []byte // login: the ClientID; transfer: the FromClientID
	To      []byte // transfer: the ToClientID, empty for a heartbeat
	Payload []byte // transfer: the payload
	Raw     []byte // the whole frame exactly as received
}

// IsHeartbeat reports whether f is a transfer addressed to nobody.
func (f *Frame) IsHeartbeat() bool { return f.Cmd == CmdTransfer && len(f.To) == 0 }

// Reader parses frames from a buffered stream. Frames that fit in the
// bufio.Reader's buffer are returned in place; larger ones are assembled in a
// pooled buffer. Either way a steady stream of frames allocates nothing.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	br         *bufio.Reader
	maxPayload func() int   // consulted at each payload length, so a new limit applies from the next frame
	consume    int          // bytes of the previous frame still in br
	large      *bufpool.Buf // holds the previous frame when it did not fit br
	loginOnly  bool         // refuse a transfer at its command byte: nothing before a login may cost more than a login
}

// NewReader returns a Reader over br, whose size must be at least
// MinReadBuffer. maxPayload returns the largest payload accepted; it is
// called when a frame's payload length arrives, so a limit changed while the
// reader waits applies to the frame that arrives next.
func NewReader(br *bufio.Reader, maxPayload func() int) *Reader {
	if br.Size() < MinReadBuffer {
		panic("protocol: bufio.Reader smaller than MinReadBuffer")
	}
	return &Reader{br: br, maxPayload: maxPayload}
}

// InPayload reports whether the Reader is in the middle of a frame larger
// than its buffer, reading the payload straight from the stream: the
// bufio.Reader is empty then, yet a frame is under way.
func (r *Reader) InPayload() bool { return r.large != nil }

// Reset switches the Reader to br, which must hold no part of a frame the
// Reader has started; the previous frame is released first.
func (r *Reader) Reset(br *bufio.Reader) {
	r.Release()
	if br.Size() < MinReadBuffer {
		panic("protocol: bufio.Reader smaller than MinReadBuffer")
	}
	r.br = br
}

// SetLoginOnly makes Next refuse a transfer (TransferBeforeLog) as soon as
// its command byte arrives, before its IDs or payload are read or
// buffered: a server sets it until a login completes, so a connection that
// has not logged in costs no more than a login needs.
func (r *Reader) SetLoginOnly(on bool) { r.loginOnly = on }

// Fixed returns a maxPayload function for a limit that never changes.
func Fixed(n int) func() int { return func() int { return n } }

// Next reads the next frame. A payload longer than the limit is rejected as
// soon as its length is read, before any of it is read or buffered.
//
// Errors: io.EOF when the stream ends cleanly between frames,
// io.ErrUnexpectedEOF when it ends inside one, a Violation for malformed
// input, or the underlying read error.
func (r *Reader) Next() (Frame, error) {
	r.Release()
	var f Frame

	// Validate the header before waiting for more, so garbage is refused
	// as soon as it arrives. b is everything buffered, usually the whole
	// frame and more: it is parsed in place, and only waits (more) when a
	// frame is split across reads.
	b, err := r.ahead(HeaderLen, true)
	if err != nil {
		return f, err
	}
	if string(b[:4]) != Magic {
		return f, BadMagic
	}
	if b[4] != Version {
		return f, BadVersion
	}
	f.Cmd = b[5]
	if f.Cmd != CmdLogin && f.Cmd != CmdTransfer {
		return f, BadCommand
	}
	if r.loginOnly && f.Cmd != CmdLogin {
		return f, TransferBeforeLog
	}
	if b, err = r.more(b, HeaderLen+1); err != nil {
		return f, err
	}
	idLen := int(b[HeaderLen])
	if idLen == 0 {
		return f, EmptyID
	}

	if f.Cmd == CmdLogin {
		n := HeaderLen + 1 + idLen
		if b, err = r.more(b, n); err != nil {
			return f, err
		}
		r.consume = n
		f.Raw = b[:n]
		f.ID = b[HeaderLen+1 : n]
		return f, nil
	}

	toOff := HeaderLen + 1 + idLen // offset of ToClientIDLen
	if b, err = r.more(b, toOff+1); err != nil {
		return f, err
	}
	toLen := int(b[toOff])
	head := toOff + 1 + toLen + 4 // everything up to the payload
	if b, err = r.more(b, head); err != nil {
		return f, err
	}
	payloadLen := binary.BigEndian.Uint32(b[head-4:])
	if maxPayload := r.maxPayload(); maxPayload < 0 || uint64(payloadLen) > uint64(maxPayload) {
		return f, PayloadTooLarge
	}
	total := head + int(payloadLen)

	if total <= r.br.Size() {
		if b, err = r.more(b, total); err != nil {
			return f, err
		}
		b = b[:total]
		r.consume = total
	} else {
		r.large = bufpool.Get(total)
		b = append(r.large.B[:0], b[:head]...)
		b = b[:total]
		_, _ = r.br.Discard(head) // already buffered: cannot fail
		r.large.B = b
		if _, err := io.ReadFull(r.br, b[head:]); err != nil {
			return f, unexpected(err)
		}
	}
	f.Raw = b
	f.ID = b[HeaderLen+1 : toOff]
	f.To = b[toOff+1 : toOff+1+toLen]
	f.Payload = b[head:]
	return f, nil
}

// Large returns the pooled buffer that holds the last frame, exactly, when
// the frame did not fit the read buffer; nil otherwise.
func (r *Reader) Large() *bufpool.Buf { return r.large }

// Disown makes the caller the owner of the buffer Large returned: the
// Reader no longer gives it back, and the last frame's slices are the
// caller's to keep or recycle.
func (r *Reader) Disown() { r.large = nil }

// Release gives back the buffer of the last frame. Next calls it; call it
// directly to drop a large frame's memory before waiting for the next one.
func (r *Reader) Release() {
	if r.consume > 0 {
		_, _ = r.br.Discard(r.consume) // the frame was peeked: cannot fail
		r.consume = 0
	}
	if r.large != nil {
		bufpool.Put(r.large)
		r.large = nil
	}
}

// ahead returns everything buffered, waiting first until at least n bytes
// are; see peek for first and the errors.
func (r *Reader) ahead(n int, first bool) ([]byte, error) {
	if r.br.Buffered() < n {
		if _, err := r.peek(n, first); err != nil {
			return nil, err
		}
	}
	b, _ := r.br.Peek(r.br.Buffered()) // buffered already: cannot fail
	return b, nil
}

// more returns b when it holds at least n bytes, else what ahead returns
// after waiting for n: b is always everything buffered from the frame's
// first byte.
func (r *Reader) more(b []byte, n int) ([]byte, error) {
	if len(b) >= n {
		return b, nil
	}
	return r.ahead(n, false)
}

// peek returns the next n bytes without consuming them. At a frame boundary
// (first) a stream that ends before any byte is io.EOF; anywhere else it is
// io.ErrUnexpectedEOF.
func (r *Reader) peek(n int, first bool) ([]byte, error) {
	b, err := r.br.Peek(n)
	if err == nil {
		return b, nil
	}
	if first && len(b) == 0 {
		return nil, err
	}
	return nil, unexpected(err)
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
