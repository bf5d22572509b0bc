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
	ReasonLimit                         // over max_connections, max_connections_per_ip or logins_per_ip
	ReasonSlowReceiver                  // stalled with slow_receiver = "disconnect" (rule 9)
	ReasonDrain                         // closed by a drain (SIGUSR2)
	numReasons
)

var reasonNames = [numReasons]string{
	"eof", "idle_timeout", "login_timeout", "protocol_error", "kicked",
	"write_timeout", "listener_removed", "shutdown", "limit", "slow_receiver", "drain",
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

// Drop says why a frame accepted from a sender was not written to its
// receiver's socket (docs/PROTOCOL.md rule 9: every frame is accounted for).
type Drop uint8

const (
	DropOffline     Drop = iota // no connection is logged in as the ToClientID
	DropQueueFull               // the receiver was stalled and its send queue had no room
	DropClosed                  // queued for (or held for) a connection that closed first, e.g. kicked
	DropShutdown                // still queued when shutdown_timeout ran out
	DropClusterDown             // for a client on another node while the cluster was unreachable
	numDrops
)

var dropNames = [numDrops]string{"offline", "queue_full", "closed", "shutdown", "cluster_down"}

func (d Drop) String() string { return dropNames[d] }

// Drops lists every Drop.
func Drops() []Drop {
	ds := make([]Drop, numDrops)
	for i := range ds {
		ds[i] = Drop(i)
	}
	return ds
}

// counter is a monotonic count with a single writer at a time (the goroutine
// that owns it; ownership may pass between goroutines through a lock) and
// any number of readers. Incrementing is a plain load and store: no locked
// instruction on the per-frame path.
type counter struct{ v atomic.Uint64 }

func (c *counter) add(n uint64) { c.v.Store(c.v.Load() + n) }
func (c *counter) load() uint64 { return c.v.Load() }

// frameCounts are one connection's frame counters. The inbound ones are
// owned by its read loop, the outbound ones by whichever write goroutine
// holds the send queue's writer role; dropped is added to from teardown
// and writers too, so it uses atomic adds (it is not per frame).
type frameCounts struct {
	// Owned by the read loop.
	framesIn   counter // transfers received from this client, heartbeats excluded
	bytesIn    counter // their payload bytes
	heartbeats counter
	waits      counter           // times a frame of this sender waited for room (rule 9)
	refused    [numDrops]counter // frames of this sender dropped: offline, queue_full, closed, shutdown, cluster_down

	// Owned by the writer.
	framesOut counter // frames written to this client's socket: "forwarded"
	bytesOut  counter // their payload bytes

	// Frames queued for this client that it never got (closed first, or
	// at shutdown); any goroutine.
	lostClosed, lostShutdown atomic.Uint64
}

// lose counts frames queued for this client that it will never get.
func (c *frameCounts) lose(reason Drop, frames int) {
	if reason == DropShutdown {
		c.lostShutdown.Add(uint64(frames))
	} else {
		c.lostClosed.Add(uint64(frames))
	}
}

// FrameStats is a snapshot of frame counters.
type FrameStats struct {
	Forwarded  uint64 // frames written to a receiver's socket
	Bytes      uint64 // payload bytes of those frames
	Heartbeats uint64
	Received   uint64           // transfers accepted from senders (heartbeats excluded)
	Waits      uint64           // times a sender waited for room at its receiver
	Dropped    [numDrops]uint64 // indexed by Drop
}

func (s *FrameStats) addCounts(c *frameCounts) {
	s.Forwarded += c.framesOut.load()
	s.Bytes += c.bytesOut.load()
	s.Heartbeats += c.heartbeats.load()
	s.Received += c.framesIn.load()
	s.Waits += c.waits.load()
	for i := range c.refused {
		s.Dropped[i] += c.refused[i].load()
	}
	s.Dropped[DropClosed] += c.lostClosed.Load()
	s.Dropped[DropShutdown] += c.lostShutdown.Load()
}

func (s *FrameStats) add(o *FrameStats) {
	s.Forwarded += o.Forwarded
	s.Bytes += o.Bytes
	s.Heartbeats += o.Heartbeats
	s.Received += o.Received
	s.Waits += o.Waits
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
	Clients     int // ClientIDs logged in on this node
	Frames      FrameStats
	Kicks       uint64
	Disconnects [numReasons]uint64 // indexed by Reason
	IdleParks   uint64             // times a connection gave its read buffer back and parked
	Upgrades    uint64             // moves of a connection to a larger read buffer
}
