package server

import (
	"context"
	"sort"
	"time"
)

// ClientInfo describes one logged-in client of this node, for the admin
// API (SPEC §12).
type ClientInfo struct {
	ID        string
	Listener  string
	Remote    string    // the client's address: the TCP peer's, or what a proxy said
	Since     time.Time // when the login completed
	FramesIn  uint64    // transfers it sent (heartbeats not counted)
	BytesIn   uint64    // their payload bytes
	FramesOut uint64    // frames written to it
	BytesOut  uint64    // their payload bytes
	Queued    int       // bytes queued for it and not yet written
}

// Clients lists the clients logged in on this node, ordered by ID; with
// id != "", only that one (an empty list when it is not logged in here).
func (s *Server) Clients(id string) []ClientInfo {
	var out []ClientInfo
	for _, l := range s.liveListeners() {
		for _, c := range l.connections() {
			at := c.loginAt.Load()
			if at == 0 || c.closed() {
				continue
			}
			p, ok := s.reg.Lookup([]byte(c.loginID()))
			if !ok || p != c {
				continue // kicked meanwhile
			}
			if id != "" && c.loginID() != id {
				continue
			}
			out = append(out, ClientInfo{
				ID:        c.loginID(),
				Listener:  l.name(),
				Remote:    c.remote.String(),
				Since:     time.Unix(0, at),
				FramesIn:  c.counts.framesIn.load(),
				BytesIn:   c.counts.bytesIn.load(),
				FramesOut: c.counts.framesOut.load(),
				BytesOut:  c.counts.bytesOut.load(),
				Queued:    c.out.pending(),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Kick disconnects the client logged in here as id (reason kicked) and
// reports whether there was one.
func (s *Server) Kick(id string) bool {
	p, ok := s.reg.Lookup([]byte(id))
	if !ok {
		return false
	}
	c, ok := p.(*conn)
	if !ok {
		return false // on another node
	}
	s.kicks.Add(1)
	c.close(ReasonKicked, "kicked through the admin API")
	return true
}

// Drain stops accepting on every listener, then closes the existing
// connections spread evenly over period (reason drain), so that their
// clients reconnect elsewhere without a thundering herd. It returns when
// every connection is closed or ctx is done; progress, called on Drain's
// goroutine after each close, says how many are left.
// The caller shuts the server down afterwards.
func (s *Server) Drain(ctx context.Context, period time.Duration, progress func(left int)) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	ls := append(listenerList(s.listeners), s.stopped...)
	s.mu.Unlock()
	var conns []*conn
	for _, l := range ls {
		l.stopAccepting()
		conns = append(conns, l.connections()...)
	}
	if len(conns) == 0 {
		return nil
	}
	step := period / time.Duration(len(conns))
	t := time.NewTimer(0)
	defer t.Stop()
	for i, c := range conns {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.close(ReasonDrain, "")
		if progress != nil {
			progress(len(conns) - i - 1)
		}
		t.Reset(step)
	}
	return nil
}

func (s *Server) liveListeners() []*listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listenerList(s.listeners)
}
