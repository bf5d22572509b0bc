package cluster

import (
	"encoding/binary"
	"errors"
)

// The bytes nodes exchange over NATS. Every integer is big-endian. Nothing
// here is trusted more than a client's bytes: a node holding the cluster's
// credentials can send anything, so every parser bounds every length.
//
// Data (subject relayd.<name>.data.<to node>.<from node>): records
//
//	kind u8 | n u32 | body[n]
//	kindFrame: body is one whole RELY transfer frame
//	kindBegin: body is total u32 | the first part of a frame larger than one NATS message
//	kindMore:  body is the next part of that frame; it is complete at total bytes
//	kindPos:   body is pos u64: the frame bytes the sender has queued for
//	           the node, ever; the last record of a batch's last message
//
// Credit (subject relayd.<name>.credit.<to node>.<from node>): the last pos
// received from that node, then entries
//
//	pos u64                 the other node's frames were read up to here
//	idLen u8 | id | n u32   bytes of frames for id that the sender of the
//	                        credit has taken off the network
//
// Directory (subject relayd.<name>.dir.<from node>): records
//
//	dirLogin:    seq u64 | clock u64 | idLen u8 | id
//	dirLogout:   seq u64 | clock u64 | idLen u8 | id
//	dirBeat:     seq u64 | nodeIDLen u8 | nodeID
//	dirSnapshot: seq u64 | part u32 | last u8 | nodeIDLen u8 | nodeID | count u32 | count × (clock u64 | idLen u8 | id)
//	dirSync:     targetLen u8 | target   (empty: every node)
//	dirLeave:    (no body)
const (
	kindFrame byte = 'F'
	kindBegin byte = 'B'
	kindMore  byte = 'M'
	kindPos   byte = 'P'

	dirLogin    byte = 'L'
	dirLogout   byte = 'O'
	dirBeat     byte = 'H'
	dirSnapshot byte = 'S'
	dirSync     byte = 'R'
	dirLeave    byte = 'G'

	recHeader = 5 // kind u8 | n u32
)

var errMalformed = errors.New("malformed cluster message")

// appendRecordHeader appends a data record's kind and body length.
func appendRecordHeader(b []byte, kind byte, n int) []byte {
	b = append(b, kind)
	return binary.BigEndian.AppendUint32(b, uint32(n))
}

// nextRecord splits the first data record off b.
func nextRecord(b []byte) (kind byte, body, rest []byte, err error) {
	if len(b) < recHeader {
		return 0, nil, nil, errMalformed
	}
	n := binary.BigEndian.Uint32(b[1:])
	if uint64(n) > uint64(len(b)-recHeader) {
		return 0, nil, nil, errMalformed
	}
	end := recHeader + int(n)
	return b[0], b[recHeader:end], b[end:], nil
}

// appendCredit appends one credit entry.
func appendCredit(b, id []byte, n int64) []byte {
	b = append(b, byte(len(id)))
	b = append(b, id...)
	return binary.BigEndian.AppendUint32(b, uint32(min(n, 0xFFFFFFFF)))
}

// nextCredit splits the first credit entry off b.
func nextCredit(b []byte) (id []byte, n int64, rest []byte, err error) {
	if len(b) < 1 {
		return nil, 0, nil, errMalformed
	}
	l := int(b[0])
	if l == 0 || len(b) < 1+l+4 {
		return nil, 0, nil, errMalformed
	}
	return b[1 : 1+l], int64(binary.BigEndian.Uint32(b[1+l:])), b[1+l+4:], nil
}

// dirRecord is one decoded directory record. Its byte slices point into the
// message it came from.
type dirRecord struct {
	kind   byte
	seq    uint64
	clock  uint64
	id     []byte // login, logout
	nodeID []byte // beat, snapshot
	target []byte // sync
	part   uint32 // snapshot
	last   bool   // snapshot
	count  uint32 // snapshot: entries in entries
	ents   []byte // snapshot entries, parsed by nextSnapEntry
}

// reader takes fields off the front of b; reading past its end sets bad
// and yields zeros from then on.
type reader struct {
	b   []byte
	bad bool
}

// take returns the next n bytes, or nil and bad when there are fewer.
func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() byte {
	if v := r.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (r *reader) u32() uint32 {
	if v := r.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if v := r.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// str reads a u8-length-prefixed string of at least min bytes.
func (r *reader) str(min int) []byte {
	n := int(r.u8())
	if !r.bad && n < min {
		r.bad = true
	}
	return r.take(n)
}

// nextDir decodes the first directory record of b.
func nextDir(b []byte) (rec dirRecord, rest []byte, err error) {
	r := reader{b: b}
	rec.kind = r.u8()
	switch rec.kind {
	case dirLogin, dirLogout:
		rec.seq, rec.clock = r.u64(), r.u64()
		rec.id = r.str(1)
	case dirBeat:
		rec.seq = r.u64()
		rec.nodeID = r.str(0)
	case dirSnapshot:
		rec.seq, rec.part = r.u64(), r.u32()
		rec.last = r.u8() != 0
		rec.nodeID = r.str(0)
		rec.count = r.u32()
		start := r.b
		for i := uint32(0); i < rec.count && !r.bad; i++ {
			r.u64()
			r.str(1)
		}
		if !r.bad {
			rec.ents = start[:len(start)-len(r.b)]
		}
	case dirSync:
		rec.target = r.str(0)
	case dirLeave:
	default:
		r.bad = true
	}
	if r.bad {
		return dirRecord{}, nil, errMalformed
	}
	return rec, r.b, nil
}

// nextSnapEntry splits the first entry off a snapshot's entries, which
// nextDir has already checked.
func nextSnapEntry(b []byte) (clock uint64, id, rest []byte) {
	clock = binary.BigEndian.Uint64(b)
	n := int(b[8])
	return clock, b[9 : 9+n], b[9+n:]
}

func appendChange(b []byte, kind byte, seq, clock uint64, id string) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = binary.BigEndian.AppendUint64(b, clock)
	b = append(b, byte(len(id)))
	return append(b, id...)
}

func appendBeat(b []byte, seq uint64, nodeID string) []byte {
	b = append(b, dirBeat)
	b = binary.BigEndian.AppendUint64(b, seq)
	b = append(b, byte(len(nodeID)))
	return append(b, nodeID...)
}

func appendSync(b []byte, target string) []byte {
	b = append(b, dirSync, byte(len(target)))
	return append(b, target...)
}

// snapWriter builds the snapshot records of one node's logins, each at most
// about limit bytes so that every record fits a NATS message.
type snapWriter struct {
	out     []byte
	seq     uint64
	nodeID  string
	limit   int
	part    uint32
	start   int // offset of the open record in out; -1 when none
	countAt int
	count   uint32
}

func (w *snapWriter) open() {
	w.start = len(w.out)
	w.out = append(w.out, dirSnapshot)
	w.out = binary.BigEndian.AppendUint64(w.out, w.seq)
	w.out = binary.BigEndian.AppendUint32(w.out, w.part)
	w.out = append(w.out, 0, byte(len(w.nodeID)))
	w.out = append(w.out, w.nodeID...)
	w.countAt = len(w.out)
	w.out = append(w.out, 0, 0, 0, 0)
	w.count = 0
}

func (w *snapWriter) add(clock uint64, id string) {
	if w.start < 0 || len(w.out)-w.start > w.limit {
		w.closeRecord(false)
		w.open()
	}
	w.out = binary.BigEndian.AppendUint64(w.out, clock)
	w.out = append(w.out, byte(len(id)))
	w.out = append(w.out, id...)
	w.count++
}

func (w *snapWriter) closeRecord(last bool) {
	if w.start < 0 {
		return
	}
	if last {
		w.out[w.start+1+8+4] = 1
	}
	binary.BigEndian.PutUint32(w.out[w.countAt:], w.count)
	w.part++
	w.start = -1
}

// finish closes the last record; a snapshot of nothing is one empty record.
func (w *snapWriter) finish() []byte {
	if w.start < 0 {
		w.open()
	}
	w.closeRecord(true)
	return w.out
}

// dirRecordLen returns the length of the first directory record of b, for
// splitting a buffer of records into messages; b holds only records this
// node wrote.
func dirRecordLen(b []byte) int {
	_, rest, err := nextDir(b)
	if err != nil {
		return len(b)
	}
	return len(b) - len(rest)
}
