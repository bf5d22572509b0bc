// Package registry maps logged-in ClientIDs to the peers that frames for
// them are delivered to: one peer per ID, last login wins.
//
// Registry is the seam for scaling out. Local serves one process; a
// cluster registry (internal/cluster) implements the same interface over
// NATS and hands out Peers that stand for clients on other nodes. The
// server neither knows nor cares which kind of Peer a lookup returns.
package registry

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Result is the outcome of offering a frame to a Peer.
type Result uint8

const (
	// Delivered: queued for a local connection's socket. The frame counts
	// as forwarded only once it is written, by the receiving connection.
	Delivered Result = iota
	// Sent: handed to the cluster for the node the receiver is on.
	Sent
	// Wait: no room now, but the receiver is taking data. The peer has
	// registered the Waiter and signals it when room may have been freed,
	// or when the peer closes; the sender waits at most Waiter.Max and
	// offers the frame again (docs/PROTOCOL.md rule 9: senders are paced, not
	// dropped, while their receivers keep reading).
	Wait
	// QueueFull: dropped, because the receiver is stalled (its socket has
	// accepted nothing for stall_timeout). With slow_receiver = "disconnect"
	// the peer has also been disconnected. Counted as queue_full.
	QueueFull
	// Gone: the peer is closing or closed. Look the ID up again.
	Gone
	// Down: the receiver is on another node and the cluster is unreachable.
	// Counted as cluster_down.
	Down
)

var resultNames = [...]string{"delivered", "sent", "wait", "queue_full", "gone", "down"}

func (r Result) String() string { return resultNames[r] }

// A Waiter lets one sender wait for room at a peer without allocating: it
// is made once per sender and reused for every wait.
type Waiter struct {
	// C has capacity 1. A peer signals it with a non-blocking send, so a
	// signal may be stale: a woken sender just offers its frame again.
	C chan struct{}
	// Max is set by a peer that returns Wait: the longest the sender
	// should wait before offering again, the time left until the receiver
	// would count as stalled.
	Max time.Duration
}

// NewWaiter returns a Waiter ready for use.
func NewWaiter() *Waiter { return &Waiter{C: make(chan struct{}, 1)} }

// Signal wakes the waiter's sender if it is not already awake.
func (w *Waiter) Signal() {
	select {
	case w.C <- struct{}{}:
	default:
	}
}

// Waiters are the senders waiting for room at one peer. The peer guards
// the list with its own lock.
type Waiters struct{ ws []*Waiter }

// Add registers w to be signalled. A sender already listed is not added
// again while the list is short; a long one may hold it twice, which only
// costs a spare signal. A sender that stopped waiting stays listed until
// the next Signal, which then wakes it early once, harmlessly: it offers
// its frame again.
func (l *Waiters) Add(w *Waiter) {
	if len(l.ws) <= 16 {
		for _, x := range l.ws {
			if x == w {
				return
			}
		}
	}
	l.ws = append(l.ws, w)
}

// Signal wakes every listed sender and empties the list; those that still
// find no room wait again.
func (l *Waiters) Signal() {
	for i, w := range l.ws {
		w.Signal()
		l.ws[i] = nil
	}
	l.ws = l.ws[:0]
}

// A Peer is a logged-in client that frames can be offered to: a local
// connection, or a client on another node.
type Peer interface {
	// Deliver offers frame, one whole RELY transfer frame. It may be called
	// from any goroutine, concurrently with every other method; it never
	// blocks and never retains frame (it copies what it keeps). A sender
	// that cannot wait passes a nil w, and then never gets Wait back but
	// QueueFull (or, for a remote peer, whatever its node's link says).
	Deliver(frame []byte, w *Waiter) Result
	// Kick closes the peer because a newer login took its ID, on this node
	// or another. Any goroutine; it must not block and must not call back
	// into the Registry.
	Kick()
}

// Registry tracks which Peer is logged in under each ClientID.
//
// Every method may be called from any goroutine. Lookup runs once per
// stream of frames to one receiver (senders remember the last receiver),
// must not allocate and must not block on the network.
type Registry interface {
	// Register makes p the peer for id and returns the local peer it
	// replaced, if any; the caller kicks it. A cluster registry also
	// announces the login so that other nodes kick theirs. It fails only
	// when the login cannot be recorded at all (ctx done); the caller then
	// closes the connection.
	Register(ctx context.Context, id string, p Peer) (replaced Peer, err error)
	// Unregister removes id only if p is still its peer, so a kicked
	// connection that finishes closing never unregisters its successor.
	Unregister(id string, p Peer)
	// Lookup returns the peer logged in as id, here or elsewhere.
	Lookup(id []byte) (Peer, bool)
	// Len returns the number of IDs logged in on this node.
	Len() int
}

// shardCount spreads IDs over independently locked maps so that lookups from
// many connections do not queue behind one lock.
const shardCount = 64

// Local is an in-process Registry. Lookups take a read lock on one of 64
// shards and do not allocate.
type Local struct {
	seed   maphash.Seed // static after construction
	n      atomic.Int64 // number of registered IDs
	shards [shardCount]shard
}

type shard struct {
	mu    sync.RWMutex
	peers map[string]Peer // guarded by mu
	_     [32]byte        // pad to 64 bytes: keep neighbouring shards' locks on separate cache lines
}

// NewLocal returns an empty in-process registry.
func NewLocal() *Local {
	l := &Local{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].peers = make(map[string]Peer)
	}
	return l
}

func (l *Local) shard(id []byte) *shard {
	return &l.shards[maphash.Bytes(l.seed, id)%shardCount]
}

func (l *Local) shardString(id string) *shard {
	return &l.shards[maphash.String(l.seed, id)%shardCount]
}

// Register implements Registry; it never fails.
func (l *Local) Register(_ context.Context, id string, p Peer) (Peer, error) {
	return l.Swap(id, p), nil
}

// Swap makes p the peer for id and returns the one it replaced.
func (l *Local) Swap(id string, p Peer) Peer {
	s := l.shardString(id)
	s.mu.Lock()
	old, ok := s.peers[id]
	s.peers[id] = p
	s.mu.Unlock()
	if !ok {
		l.n.Add(1)
	}
	return old
}

// Unregister implements Registry.
func (l *Local) Unregister(id string, p Peer) { l.CompareAndDelete(id, p) }

// CompareAndDelete removes id if p is its peer and reports whether it did.
func (l *Local) CompareAndDelete(id string, p Peer) bool {
	s := l.shardString(id)
	s.mu.Lock()
	cur, ok := s.peers[id]
	ok = ok && cur == p
	if ok {
		delete(s.peers, id)
	}
	s.mu.Unlock()
	if ok {
		l.n.Add(-1)
	}
	return ok
}

// Lookup implements Registry.
func (l *Local) Lookup(id []byte) (Peer, bool) {
	s := l.shard(id)
	s.mu.RLock()
	p, ok := s.peers[string(id)] // no allocation: the compiler indexes with the bytes
	s.mu.RUnlock()
	return p, ok
}

// Len implements Registry.
func (l *Local) Len() int { return int(l.n.Load()) }

// Range calls f for every registered ID until f returns false. f must not
// call back into l.
func (l *Local) Range(f func(id string, p Peer) bool) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		for id, p := range s.peers {
			if !f(id, p) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}
