package protocol

// Meter follows one frame's bytes as they stream past and learns the
// frame's length from its header, without holding any of them. Transports
// that carry one frame per message (WebSocket) use it to check that a
// message is exactly one frame, and to find frame boundaries in a stream of
// frames they must send one per message.
//
// The zero Meter is at the start of a frame.
type Meter struct {
	pos   int    // bytes of the frame seen so far
	total int    // the frame's length once known; 0 until then
	cmd   byte   // the command, once seen
	toOff int    // transfer: offset of ToClientIDLen; 0 until known
	head  int    // transfer: offset of the payload; 0 until known
	plen  uint32 // transfer: the payload length as far as read
}

// Reset puts m at the start of a new frame.
func (m *Meter) Reset() { *m = Meter{} }

// Pos is the number of bytes of the frame seen so far.
func (m *Meter) Pos() int { return m.pos }

// Total is the frame's length, or 0 while its header is incomplete.
func (m *Meter) Total() int { return m.total }

// Done reports whether the whole frame has been seen.
func (m *Meter) Done() bool { return m.total > 0 && m.pos == m.total }

// Feed consumes the bytes of b that belong to the frame, at most up to its
// end, and returns how many. It reads only header bytes; a payload is
// skipped over. A header that is not RELY v1's is a Violation (BadMagic,
// BadVersion or BadCommand): no length can be learnt from it. Feed never
// reports the other violations (an empty ID, a payload over max_payload):
// the frame's reader does.
func (m *Meter) Feed(b []byte) (int, error) {
	if m.pos == 0 && len(b) >= HeaderLen+1 {
		if n, ok, err := m.whole(b); ok || err != nil {
			return n, err
		}
	}
	n := 0
	for n < len(b) {
		if m.total > 0 {
			k := min(len(b)-n, m.total-m.pos)
			m.pos += k
			return n + k, nil
		}
		c := b[n]
		switch p := m.pos; {
		case p < 4:
			if c != Magic[p] {
				return n, BadMagic
			}
		case p == 4:
			if c != Version {
				return n, BadVersion
			}
		case p == 5:
			if c != CmdLogin && c != CmdTransfer {
				return n, BadCommand
			}
			m.cmd = c
		case p == HeaderLen:
			if m.cmd == CmdLogin {
				m.total = HeaderLen + 1 + int(c)
			} else {
				m.toOff = HeaderLen + 1 + int(c)
			}
		case p == m.toOff:
			m.head = p + 1 + int(c) + 4
		case m.head > 0 && p >= m.head-4:
			m.plen = m.plen<<8 | uint32(c)
			if p == m.head-1 {
				m.total = m.head + int(m.plen)
			}
		}
		m.pos++
		n++
	}
	return n, nil
}

// whole is Feed's fast path for a frame whose header b holds from its
// first byte: the length is read off the header at once instead of byte by
// byte. ok is false when b does not hold the whole header (Feed then walks
// it); an error is the one the walk would give, at the same count.
func (m *Meter) whole(b []byte) (n int, ok bool, err error) {
	for i := 0; i < 4; i++ {
		if b[i] != Magic[i] {
			m.pos = i
			return i, false, BadMagic
		}
	}
	if b[4] != Version {
		m.pos = 4
		return 4, false, BadVersion
	}
	cmd := b[5]
	if cmd != CmdLogin && cmd != CmdTransfer {
		m.pos = 5
		return 5, false, BadCommand
	}
	var total, toOff, head int
	var plen uint32
	if cmd == CmdLogin {
		total = HeaderLen + 1 + int(b[HeaderLen])
	} else {
		toOff = HeaderLen + 1 + int(b[HeaderLen])
		if len(b) <= toOff {
			return 0, false, nil
		}
		head = toOff + 1 + int(b[toOff]) + 4
		if len(b) < head {
			return 0, false, nil
		}
		plen = uint32(b[head-4])<<24 | uint32(b[head-3])<<16 | uint32(b[head-2])<<8 | uint32(b[head-1])
		total = head + int(plen)
	}
	*m = Meter{pos: min(len(b), total), total: total, cmd: cmd, toOff: toOff, head: head, plen: plen}
	return m.pos, true, nil
}
