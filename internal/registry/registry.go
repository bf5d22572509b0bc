// Package registry maps logged-in ClientIDs to the connections that frames
// for them are delivered to: one connection per ID, last login wins.
//
// Registry is the seam for scaling out: the Local implementation serves one
// process; a distributed one (NATS) can implement the same interface and hand
// out Peers that forward to other nodes.
package registry

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// Result is the outcome of delivering a frame to a Peer.
type Result uint8

const (
	Delivered Result = iota // queued for sending
	QueueFull               // the peer's send queue has no room for the frame
	Gone                    // the peer is closing or closed
)

// A Peer is a logged-in connection that frames can be delivered to.
type Peer interface {
	// Deliver queues a copy of frame for sending. It never blocks on the
	// network and never retains frame.
	Deliver(frame []byte) Result
	// Kick closes the peer because a newer login took its ID. It must not
	// block and must not call back into the Registry.
	Kick()
}

// Registry tracks which Peer is logged in under each ClientID.
type Registry interface {
	// Register makes p the peer for id and returns the peer it replaced, if
	// any. The caller kicks the replaced peer.
	Register(id string, p Peer) (replaced Peer)
	// Unregister removes id only if p is still its peer, so a kicked
	// connection that finishes closing never unregisters its successor.
	Unregister(id string, p Peer)
	// Lookup returns the peer logged in as id.
	Lookup(id []byte) (Peer, bool)
	// Len returns the number of logged-in IDs.
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

// Register implements Registry.
func (l *Local) Register(id string, p Peer) Peer {
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
func (l *Local) Unregister(id string, p Peer) {
	s := l.shardString(id)
	s.mu.Lock()
	cur, ok := s.peers[id]
	if ok && cur == p {
		delete(s.peers, id)
	}
	s.mu.Unlock()
	if ok && cur == p {
		l.n.Add(-1)
	}
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
