package soak

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"math/rand/v2"
)

// Every soak payload says which frame of its pair's stream it is and lets
// the receiver prove it arrived intact:
//
//	12 bytes or more: sequence number (8, little-endian), CRC-32C of the
//	                  rest (4), then bytes from the shared random block at
//	                  an offset the sequence number picks
//	8 to 11 bytes:    the sequence number, then 0xA5 bytes
//	1 to 7 bytes:     the low bytes of the sequence number only
//
// Little-endian so that a short payload keeps the low bytes, which with
// the previous frame's number give back the whole one (see stream.add).
const (
	headLen = 12
	seqLen  = 8
	pad     = 0xA5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// block is the random material payload bodies are cut from: content that
// differs from frame to frame without generating it per frame.
type block []byte

// blockSlack is how far into the block a body may start.
const blockSlack = 4096

func newBlock(maxSize int, rng *rand.Rand) block {
	b := make(block, maxSize+blockSlack)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func bodyOffset(seq uint64) int { return int((seq * 0x9E3779B97F4A7C15) >> 52 % blockSlack) }

// encode fills p (its length is the payload size) as frame seq.
func (b block) encode(p []byte, seq uint64) {
	var s [seqLen]byte
	binary.LittleEndian.PutUint64(s[:], seq)
	n := copy(p, s[:])
	if len(p) < headLen {
		for i := n; i < len(p); i++ {
			p[i] = pad
		}
		return
	}
	body := p[headLen:]
	copy(body, b[bodyOffset(seq):])
	binary.LittleEndian.PutUint32(p[seqLen:], crc32.Checksum(body, castagnoli))
}

// decode checks p and returns its sequence number: all of it (exact) for
// payloads of 8 bytes or more, else only its low len(p) bytes. ok is false
// when p is not a frame encode made.
func (b block) decode(p []byte) (seq uint64, exact, ok bool) {
	switch {
	case len(p) == 0:
		return 0, false, false
	case len(p) < seqLen:
		var s [seqLen]byte
		copy(s[:], p)
		return binary.LittleEndian.Uint64(s[:]), false, true
	}
	seq = binary.LittleEndian.Uint64(p)
	if len(p) < headLen {
		for _, c := range p[seqLen:] {
			if c != pad {
				return seq, true, false
			}
		}
		return seq, true, true
	}
	body := p[headLen:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(p[seqLen:]) {
		return seq, true, false
	}
	// The checksum alone would pass a body from the wrong offset (a frame
	// of another sequence number spliced in): compare with the block too.
	want := b[bodyOffset(seq):]
	return seq, true, len(want) >= len(body) && string(want[:len(body)]) == string(body)
}

// randomSize draws a payload size from 1 to max, uniform in its logarithm:
// as many 1–2 byte frames as 512 KiB–1 MiB ones, most of the bytes in the
// large ones.
func randomSize(rng *rand.Rand, max int) int {
	n := int(math.Exp(rng.Float64() * math.Log(float64(max))))
	return min(max, n+1)
}

// stream checks the frames one receiver connection gets from its pair's
// sender: in order, intact, none twice.
type stream struct {
	last     uint64 // sequence number of the previous frame
	known    bool   // last is set: an exact number has been seen
	min, max uint64 // of the exact numbers seen
	exact    bool   // min and max are set
	frames   uint64
}

// verdict is what stream.add found wrong with a frame.
type verdict int

const (
	fine      verdict = iota
	corrupt           // not a frame encode made
	reordered         // its sequence number went backwards
)

func (s *stream) add(b block, p []byte) verdict {
	seq, exact, ok := b.decode(p)
	if !ok {
		return corrupt
	}
	s.frames++
	if !exact {
		if s.known {
			// The smallest number after the previous one with these low
			// bytes: never more than the true one, so never a false
			// reordering.
			mask := uint64(1)<<(8*len(p)) - 1
			next := (s.last+1)&^mask | seq
			if next <= s.last {
				next += mask + 1
			}
			s.last = next
		}
		return fine
	}
	v := fine
	if s.known && seq <= s.last {
		v = reordered
	}
	if !s.exact || seq < s.min {
		s.min = seq
	}
	if !s.exact || seq > s.max {
		s.max = seq
	}
	s.exact = true
	if !s.known || seq > s.last {
		s.last = seq
	}
	s.known = true
	return v
}

// span is the range of exact sequence numbers one receiver connection got.
type span struct{ min, max uint64 }

// overlaps counts the spans that overlap another. The connections logged
// in as one ClientID one after another each get a later part of the
// stream (a newer login takes every frame from its login on), so their
// spans are disjoint: an overlap is a frame delivered twice, or one that
// reached an older connection after a newer one had taken over.
func overlaps(spans []span) int {
	s := append([]span(nil), spans...)
	// Insertion sort: a pair has tens of spans.
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j].min < s[j-1].min; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	n := 0
	var end uint64
	for i, sp := range s {
		if i > 0 && sp.min <= end {
			n++
		}
		end = max(end, sp.max)
	}
	return n
}
