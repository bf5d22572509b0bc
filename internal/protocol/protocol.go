// Package protocol implements the RELY v1 wire format: frame layout, encoding,
// and a reader that parses frames from a stream without allocating per frame.
//
// Every frame starts with a 6-byte header: the magic "RELY", the version 0x01
// and a command byte.
//
//	login:    header | IDLen u8 (1–255) | ID
//	transfer: header | FromLen u8 (1–255) | From | ToLen u8 (0–255) | To | PayloadLen u32 BE | Payload
//
// A transfer whose ToLen is 0 is a heartbeat.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of RELY v1.
const (
	Magic   = "RELY"
	Version = 0x01

	CmdLogin    = 0x01
	CmdTransfer = 0x09

	HeaderLen = 6   // magic, version, command
	MaxIDLen  = 255 // an ID length is one byte

	// MaxTransferOverhead is the largest number of bytes a transfer frame
	// carries besides its payload: header, two length-prefixed IDs of the
	// maximum length and the payload length.
	MaxTransferOverhead = HeaderLen + 1 + MaxIDLen + 1 + MaxIDLen + 4 // 522
)

// Violation names a way in which a peer broke the protocol. The server closes
// the connection on any of them; the names appear in debug logs.
type Violation string

// The protocol violations of docs/PROTOCOL.md rule 7.
const (
	BadMagic          Violation = "bad magic"
	BadVersion        Violation = "bad version"
	BadCommand        Violation = "bad command"
	EmptyID           Violation = "zero-length client ID"
	PayloadTooLarge   Violation = "payload length over max_payload"
	TransferBeforeLog Violation = "transfer before login"
	SecondLogin       Violation = "second login on the connection"
	FromMismatch      Violation = "from client ID differs from the logged-in ID"
)

// Error implements error so a Violation can be returned and matched with errors.As.
func (v Violation) Error() string { return "protocol violation: " + string(v) }

// IsViolation reports whether err is (or wraps) a protocol violation and returns it.
func IsViolation(err error) (Violation, bool) {
	var v Violation
	ok := errors.As(err, &v)
	return v, ok
}

// TransferLen is the encoded length of a transfer frame.
func TransferLen(fromLen, toLen, payloadLen int) int {
	return HeaderLen + 1 + fromLen + 1 + toLen + 4 + payloadLen
}

// PayloadLen returns the payload length of frame, a whole transfer frame
// that a Reader returned (so its ID lengths are consistent with its size).
func PayloadLen(frame []byte) int {
	fromLen := int(frame[HeaderLen])
	toLen := int(frame[HeaderLen+1+fromLen])
	return len(frame) - TransferLen(fromLen, toLen, 0)
}

// TransferTo returns the ToClientID of frame if frame is exactly one
// well-formed transfer frame addressed to someone (not a heartbeat). It
// checks bytes no Reader has seen: a cluster node's, which are trusted no
// more than a client's.
func TransferTo(frame []byte) ([]byte, bool) {
	const fixed = HeaderLen + 1 + 1 + 4 // header, two lengths, payload length
	if len(frame) < fixed+2 || string(frame[:4]) != Magic ||
		frame[4] != Version || frame[5] != CmdTransfer {
		return nil, false
	}
	fromLen := int(frame[HeaderLen])
	if fromLen == 0 || len(frame) < fixed+fromLen+1 {
		return nil, false
	}
	off := HeaderLen + 1 + fromLen
	toLen := int(frame[off])
	if toLen == 0 || len(frame) < fixed+fromLen+toLen {
		return nil, false
	}
	to := frame[off+1 : off+1+toLen]
	n := binary.BigEndian.Uint32(frame[off+1+toLen:])
	if uint64(len(frame)) != uint64(TransferLen(fromLen, toLen, 0))+uint64(n) {
		return nil, false
	}
	return to, true
}

// ID is a ClientID: opaque bytes, held as a string or a byte slice.
type ID interface{ ~string | ~[]byte }

// AppendLogin appends a login frame for id to dst.
func AppendLogin[T ID](dst []byte, id T) ([]byte, error) {
	if err := checkID("client ID", id, false); err != nil {
		return dst, err
	}
	dst = appendHeader(dst, CmdLogin)
	dst = append(dst, byte(len(id)))
	return append(dst, id...), nil
}

// AppendTransfer appends a transfer frame from → to carrying payload to dst.
// An empty to makes a heartbeat.
func AppendTransfer[T ID](dst []byte, from, to T, payload []byte) ([]byte, error) {
	dst, err := AppendTransferHead(dst, from, to, len(payload))
	if err != nil {
		return dst, err
	}
	return append(dst, payload...), nil
}

// AppendTransferHead appends everything of a transfer frame that comes
// before its payload of payloadLen bytes, for writers that send the payload
// from where it is instead of copying it behind the head.
func AppendTransferHead[T ID](dst []byte, from, to T, payloadLen int) ([]byte, error) {
	if err := checkID("from client ID", from, false); err != nil {
		return dst, err
	}
	if err := checkID("to client ID", to, true); err != nil {
		return dst, err
	}
	if payloadLen < 0 || uint64(payloadLen) > 0xFFFFFFFF {
		return dst, fmt.Errorf("payload of %d bytes does not fit a uint32 length", payloadLen)
	}
	dst = appendHeader(dst, CmdTransfer)
	dst = append(dst, byte(len(from)))
	dst = append(dst, from...)
	dst = append(dst, byte(len(to)))
	dst = append(dst, to...)
	return binary.BigEndian.AppendUint32(dst, uint32(payloadLen)), nil
}

func appendHeader(dst []byte, cmd byte) []byte {
	dst = append(dst, Magic...)
	return append(dst, Version, cmd)
}

func checkID[T ID](what string, id T, emptyOK bool) error {
	switch {
	case len(id) == 0 && !emptyOK:
		return fmt.Errorf("%s must not be empty", what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("%s is %d bytes, more than %d", what, len(id), MaxIDLen)
	}
	return nil
}
