package server

import "sync/atomic"

// Reason says why a connection ended. One vocabulary for code, debug logs and
// metric labels.
type Reason uint8

const (
	ReasonEOF             Reason = iota // the client closed or reset the connection
	ReasonIdleTimeout                   // no complete frame for idle_timeout
	ReasonLoginTimeout                  // no login (or TLS handshake) within login_timeout
	ReasonProtocolError                 // a rule 7 violation
	ReasonKicked                        // a newer login took the ClientID
	ReasonWriteTimeout                  // a write was blocked for write_timeout
	ReasonListenerRemoved               // its listener was removed by a reload
	ReasonShutdown                      // the server is shutting down
	ReasonLimit                         // over max_connections or max_connections_per_ip
	numReasons
)

var reasonNames = [numReasons]string{
	"eof", "idle_timeout", "login_timeout", "protocol_error", "kicked",
	"write_timeout", "listener_removed", "shutdown", "limit",
}

func (r Reason) String() string { return reasonNames[r] }

// Reasons lists every Reason, for exporting all label values.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Drop says why a frame was not forwarded.
type Drop uint8

const (
	DropOffline   Drop = iota // no connection is logged in as the ToClientID
	DropQueueFull             // the receiver's send queue had no room
	numDrops
)

var dropNames = [numDrops]string{"offline", "queue_full"}

func (d Drop) String() string { return dropNames[d] }

// Drops lists every Drop.
func Drops() []Drop { return []Drop{DropOffline, DropQueueFull} }

// counter is a monotonic count with a single writer (the goroutine that owns
// it) and any number of readers. Incrementing is a plain load and store: no
// locked instruction on the per-frame path.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(n uint64)   { c.v.Store(c.v.Load() + n) }
func (c *counter) load() uint64   { return c.v.Load() }
func (c *counter) reset(n uint64) { c.v.Store(n) }

// frameCounts are the per-frame counters one connection's read loop keeps.
type frameCounts struct {
	forwarded  counter
	bytes      counter // payload bytes forwarded
	heartbeats counter
	dropped    [numDrops]counter
}

// FrameStats is a snapshot of frame counters.
type FrameStats struct {
	Forwarded  uint64 // frames handed to a receiver's send queue
	Bytes      uint64 // payload bytes of those frames
	Heartbeats uint64
	Dropped    [numDrops]uint64 // indexed by Drop
}

func (s *FrameStats) addCounts(c *frameCounts) {
	s.Forwarded += c.forwarded.load()
	s.Bytes += c.bytes.load()
	s.Heartbeats += c.heartbeats.load()
	for i := range c.dropped {
		s.Dropped[i] += c.dropped[i].load()
	}
}

func (s *FrameStats) add(o *FrameStats) {
	s.Forwarded += o.Forwarded
	s.Bytes += o.Bytes
	s.Heartbeats += o.Heartbeats
	for i := range o.Dropped {
		s.Dropped[i] += o.Dropped[i]
	}
}

// ListenerStats describes one listener.
type ListenerStats struct {
	Name        string
	Address     string // the bound address
	Connections int    // open connections, logged in or not
	Logins      uint64 // successful logins since the listener started
}

// Stats is a consistent-enough snapshot of the server's counters: every
// counter is monotonic across snapshots.
type Stats struct {
	Listeners   []ListenerStats
	Clients     int // logged-in ClientIDs
	Frames      FrameStats
	Kicks       uint64
	Disconnects [numReasons]uint64 // indexed by Reason
}
