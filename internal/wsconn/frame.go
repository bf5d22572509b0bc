package wsconn

import (
	"encoding/binary"
	"math/bits"

	"github.com/relayd/relayd/internal/protocol"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close status codes (RFC 6455 §7.4.1) relayd sends.
const (
	CloseNormal      = 1000 // the server closed: kicked, timed out, or done
	CloseGoingAway   = 1001 // the server is shutting down or draining
	CloseProtocol    = 1002 // a WebSocket or RELY protocol error
	CloseUnsupported = 1003 // a text message: RELY frames are binary
	CloseInvalidData = 1007 // a close reason that is not UTF-8
	ClosePolicy      = 1008 // over a connection limit
	CloseTooBig      = 1009 // a message over max_payload + protocol.MaxTransferOverhead
)

const (
	maxControl   = 125 // largest control frame payload
	maxHeaderLen = 14  // 2 + 8 length + 4 mask
)

// violation is a way a WebSocket client broke the protocol, with the close
// code it is answered with. It unwraps to a protocol.Violation, so the
// server counts it as a protocol error like RELY's own.
type violation struct {
	v    protocol.Violation
	code uint16
}

func (e *violation) Error() string { return e.v.Error() }
func (e *violation) Unwrap() error { return e.v }

// CloseCode returns the close code an error from Read was answered with,
// or 0 when it was none of the adapter's violations.
func CloseCode(err error) uint16 {
	if v, ok := err.(*violation); ok {
		return v.code
	}
	return 0
}

func newViolation(what string, code uint16) *violation {
	return &violation{protocol.Violation(what), code}
}

var (
	errText         = newViolation("websocket: text message (RELY frames are binary)", CloseUnsupported)
	errTooBig       = newViolation("websocket: message larger than max_payload allows", CloseTooBig)
	errNotOneFrame  = newViolation("websocket: message is not exactly one RELY frame", CloseProtocol)
	errUnmasked     = newViolation("websocket: unmasked client frame", CloseProtocol)
	errReserved     = newViolation("websocket: reserved bits set, no extension was negotiated", CloseProtocol)
	errOpcode       = newViolation("websocket: unknown opcode", CloseProtocol)
	errBadControl   = newViolation("websocket: fragmented or oversized control frame", CloseProtocol)
	errContinuation = newViolation("websocket: continuation frame outside a message", CloseProtocol)
	errInterleaved  = newViolation("websocket: new message before the previous one ended", CloseProtocol)
	errLength       = newViolation("websocket: 64-bit length with its top bit set", CloseProtocol)
	errCloseFrame   = newViolation("websocket: malformed close frame", CloseProtocol)
	errCloseReason  = newViolation("websocket: close reason is not UTF-8", CloseInvalidData)
)

// headerLen is the length of a frame header whose second byte is b1: it
// says how long the extended length is and whether a mask follows.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// appendHeader appends an unmasked server frame header: FIN set, one
// opcode, the payload length in the shortest form.
func appendHeader(dst []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, 0x80|op, byte(n))
	case n <= 0xFFFF:
		return append(dst, 0x80|op, 126, byte(n>>8), byte(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0x80|op, 127), uint64(n))
	}
}

// unmask XORs b with the 4-byte mask key, starting at byte off of the
// payload; it returns the offset after b. Word at a time: unmasking is the
// one pass over every byte a client sends.
func unmask(b []byte, key [4]byte, off int) int {
	// Rotated so that its first byte is the one for b[0].
	k := bits.RotateLeft32(binary.LittleEndian.Uint32(key[:]), -8*(off&3))
	n := len(b)
	i := 0
	k64 := uint64(k) | uint64(k)<<32
	for ; i+8 <= n; i += 8 {
		v := binary.LittleEndian.Uint64(b[i:])
		binary.LittleEndian.PutUint64(b[i:], v^k64)
	}
	for ; i < n; i++ {
		b[i] ^= byte(k >> (8 * (i & 3)))
	}
	return off + n
}
