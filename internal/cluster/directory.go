package cluster

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/internal/registry"
)

// The directory is this node's replica of who is logged in where.
//
// Each node is the authority on its own logins: it announces each login and
// logout with a generation, a hybrid logical clock (microseconds since the
// epoch, bumped past every generation this node has seen) with the node's
// instance as the tie-break. A newer generation always wins, on every
// replica, whatever order the announcements arrive in; a logout removes only
// the generation it names. So a delayed or replayed login can never kick a
// newer one, and two logins at the same moment resolve the same way
// everywhere.
//
// Announcements carry a per-node sequence number. A replica that sees a gap
// (a lost message, or a heartbeat naming a later sequence than it has)
// asks that node for a snapshot of its logins, which replaces everything the
// replica attributes to that node. A node that joins or reconnects asks every
// node for one. Nodes that are not heard from for node_timeout are dropped
// with all their clients.

// node is one relayd process of the cluster, this one included.
type node struct {
	// Static after construction.
	instance string // random per process: a restarted node is a new node
	self     bool

	// Guarded by directory.mu.
	nodeID    string // as the node calls itself; for logs
	lastSeen  time.Time
	seq       uint64 // of the last announcement applied
	synced    bool   // a whole snapshot has been applied: seq is meaningful
	asked     bool   // a snapshot has been asked for and not yet received whole
	askedAt   time.Time
	snapEpoch uint32 // incremented at each snapshot's first part
	snapNext  uint32 // the part expected next; snapBroken while a snapshot is unusable

	dead atomic.Bool // dropped from the directory; its peers are gone
	link *link       // frames to the node; nil for this one and in directory tests

	// Owned by the data subscription's goroutine.
	asm assembly // a frame larger than one NATS message, being reassembled
}

const snapBroken = ^uint32(0)

// gen is a login's generation.
type gen struct {
	clock uint64
	node  *node
}

func (g gen) newer(o gen) bool {
	if g.clock != o.clock {
		return g.clock > o.clock
	}
	return g.node.instance > o.node.instance
}

// remotePeer is a client logged in on another node. The server caches it
// for a stream of frames; it turns Gone the moment the directory forgets it.
type remotePeer struct {
	// Static after construction.
	node  *node
	id    string
	clock uint64

	win   window      // frames sent to it and not yet credited back
	next  *remotePeer // guarded by the shard's mu: an older login of the ID on another node
	gone  atomic.Bool // not where frames for the ID go (now): a newer login, a logout, or its node dropped
	epoch uint32      // guarded by directory.mu: the snapshot of its node that last named it
}

func (p *remotePeer) gen() gen { return gen{p.clock, p.node} }

const shardCount = 64

type dirShard struct {
	mu    sync.RWMutex
	peers map[string]*remotePeer // guarded by mu: each ID's remote logins, newest first
	_     [32]byte               // keep neighbouring shards' locks on separate cache lines
}

// hooks are how the directory acts on the world. Each runs with
// directory.mu held and must not block or call back into the directory.
type hooks struct {
	kick     func(p registry.Peer) // a newer login elsewhere took p's ID
	nodeUp   func(n *node)         // a node was heard from for the first time (or again after being dropped)
	nodeDown func(n *node)         // a node was dropped
	announce func()                // outbox has something to publish
}

type directory struct {
	// Static after construction.
	self    *node
	local   *registry.Local // the logins of this node; its peers are the server's connections
	seed    maphash.Seed
	timeout time.Duration // node_timeout
	part    int           // bytes of snapshot entries per record
	h       hooks
	shards  [shardCount]dirShard
	remote  atomic.Int64 // remote peers in shards
	live    atomic.Int64 // nodes in nodes

	mu       sync.Mutex
	clock    uint64            // hybrid logical clock, guarded by mu
	seq      uint64            // of this node's last announcement, guarded by mu
	gens     map[string]uint64 // clock of each local login, guarded by mu
	nodes    map[string]*node  // other live nodes by instance, guarded by mu
	outbox   []byte            // directory records not yet published, guarded by mu
	wantSnap bool              // a snapshot of this node's logins is to be published, guarded by mu
	now      func() time.Time  // for tests
	resyncs  atomic.Uint64     // snapshots asked for
}

// outboxMax bounds what accumulates while NATS is unreachable; past it the
// records are dropped and a snapshot is published instead, which every
// replica applies in their place.
const outboxMax = 1 << 20

func newDirectory(instance, nodeID string, local *registry.Local, timeout time.Duration, part int, h hooks) *directory {
	d := &directory{
		self:    &node{instance: instance, nodeID: nodeID, self: true},
		local:   local,
		seed:    maphash.MakeSeed(),
		timeout: timeout,
		part:    part,
		h:       h,
		gens:    make(map[string]uint64),
		nodes:   make(map[string]*node),
		now:     time.Now,
	}
	for i := range d.shards {
		d.shards[i].peers = make(map[string]*remotePeer)
	}
	return d
}

func (d *directory) shard(id []byte) *dirShard {
	return &d.shards[maphash.Bytes(d.seed, id)%shardCount]
}

func (d *directory) shardString(id string) *dirShard {
	return &d.shards[maphash.String(d.seed, id)%shardCount]
}

// lookupRemote returns the remote peer for id, without allocating.
func (d *directory) lookupRemote(id []byte) (*remotePeer, bool) {
	s := d.shard(id)
	s.mu.RLock()
	p, ok := s.peers[string(id)]
	s.mu.RUnlock()
	return p, ok
}

// tick advances the clock for a login on this node. Called with mu held.
func (d *directory) tick() uint64 {
	now := uint64(d.now().UnixMicro())
	if now <= d.clock {
		now = d.clock + 1
	}
	d.clock = now
	return now
}

func (d *directory) observe(clock uint64) {
	if clock > d.clock {
		d.clock = clock
	}
}

// emit replaces the outbox with b, the outbox with records appended.
func (d *directory) emit(b []byte) {
	d.outbox = b
	if len(d.outbox) > outboxMax {
		d.outbox = d.outbox[:0]
		d.wantSnap = true
	}
	if d.h.announce != nil {
		d.h.announce()
	}
}

// login records a login on this node, announces it, and returns the local
// peer it replaced.
func (d *directory) login(id string, p registry.Peer) registry.Peer {
	d.mu.Lock()
	defer d.mu.Unlock()
	clock := d.tick()
	old := d.local.Swap(id, p)
	d.gens[id] = clock
	d.refresh(id) // a sender holding the remote peer looks again and finds this one
	d.seq++
	d.emit(appendChange(d.outbox, dirLogin, d.seq, clock, id))
	return old
}

// adoptLocal announces, with fresh generations, the local logins that this
// directory did not record itself: those made before this cluster was
// built (relayd ran alone, or under the cluster a reload replaced). It
// reports how many it adopted.
func (d *directory) adoptLocal() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ids []string
	d.local.Range(func(id string, _ registry.Peer) bool {
		if _, ok := d.gens[id]; !ok {
			ids = append(ids, id)
		}
		return true
	})
	for _, id := range ids {
		clock := d.tick()
		d.gens[id] = clock
		d.refresh(id)
		d.seq++
		d.emit(appendChange(d.outbox, dirLogin, d.seq, clock, id))
	}
	return len(ids)
}

// logout removes a local login if p still holds it, and announces that.
func (d *directory) logout(id string, p registry.Peer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.local.CompareAndDelete(id, p) {
		return
	}
	clock := d.gens[id]
	delete(d.gens, id)
	d.refresh(id)
	d.seq++
	d.emit(appendChange(d.outbox, dirLogout, d.seq, clock, id))
}

// beat announces that this node is alive and how far its announcements go.
func (d *directory) beat() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.emit(appendBeat(d.outbox, d.seq, d.self.nodeID))
}

// expire drops the nodes not heard from for the timeout.
func (d *directory) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	for _, n := range d.nodes {
		if now.Sub(n.lastSeen) > d.timeout {
			d.dropNode(n)
		}
	}
}

// resyncAll asks every node for its logins and offers ours, as after
// (re)connecting to NATS.
func (d *directory) resyncAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.wantSnap = true
	d.resyncs.Add(1)
	d.emit(appendSync(d.outbox, ""))
}

// leave announces that this node is going away.
func (d *directory) leave() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	// Taken, not shared: the heartbeat may still append to the outbox
	// while Close publishes this.
	out := append(d.outbox, dirLeave)
	d.outbox = nil
	return out
}

// takeOutbox returns the records to publish, a snapshot included when one
// was asked for, and gives the directory spare for the next ones.
func (d *directory) takeOutbox(spare []byte) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.outbox
	if d.wantSnap {
		d.wantSnap = false
		w := snapWriter{out: out, seq: d.seq, nodeID: d.self.nodeID, limit: d.part, start: -1}
		d.local.Range(func(id string, _ registry.Peer) bool {
			if clock, ok := d.gens[id]; ok {
				w.add(clock, id)
			}
			return true
		})
		out = w.finish()
	}
	d.outbox = spare[:0]
	return out
}

// nodeFor returns the live node with this instance, creating it when it is
// new. Called with mu held.
func (d *directory) nodeFor(instance string) *node {
	n := d.nodes[instance]
	if n == nil {
		n = &node{instance: instance, lastSeen: d.now()}
		d.nodes[instance] = n
		d.live.Add(1)
		if d.h.nodeUp != nil {
			d.h.nodeUp(n)
		}
	}
	return n
}

// node returns the live node with this instance, or nil.
func (d *directory) node(instance []byte) *node {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nodes[string(instance)]
}

// liveNode is nodeFor for the data path.
func (d *directory) liveNode(instance string) *node {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := d.nodes[instance]; n != nil {
		return n
	}
	n := d.nodeFor(instance)
	d.ask(n)
	return n
}

// ask requests a snapshot from n: once until it arrives, or again after
// half the node timeout in case the request or the snapshot was lost.
// Called with mu held.
func (d *directory) ask(n *node) {
	now := d.now()
	if n.asked && now.Sub(n.askedAt) < d.timeout/2 {
		return
	}
	n.asked, n.askedAt = true, now
	d.resyncs.Add(1)
	d.emit(appendSync(d.outbox, n.instance))
}

// receive applies a directory message from the node with this instance.
// It returns false when the message is malformed (what came before the bad
// record has been applied).
func (d *directory) receive(instance string, msg []byte) bool {
	if instance == d.self.instance {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n := d.nodeFor(instance)
	n.lastSeen = d.now()
	for len(msg) > 0 {
		rec, rest, err := nextDir(msg)
		if err != nil {
			return false
		}
		msg = rest
		switch rec.kind {
		case dirLogin, dirLogout:
			d.observe(rec.clock)
			if n.synced && rec.seq <= n.seq {
				continue // a duplicate or a replay: applied already
			}
			if rec.kind == dirLogin {
				d.applyLogin(n, string(rec.id), rec.clock, false)
			} else {
				d.applyLogout(n, rec.id, rec.clock)
			}
			if n.synced && rec.seq > n.seq+1 {
				n.synced = false // a gap: lost announcements
			}
			n.seq = max(n.seq, rec.seq)
			if !n.synced {
				d.ask(n)
			}
		case dirBeat:
			n.nodeID = string(rec.nodeID)
			if !n.synced || rec.seq > n.seq {
				n.synced = false
				d.ask(n)
			}
		case dirSnapshot:
			d.applySnapshot(n, &rec)
		case dirSync:
			if len(rec.target) == 0 || string(rec.target) == d.self.instance {
				d.wantSnap = true
				d.emit(d.outbox)
			}
		case dirLeave:
			d.dropNode(n)
			return true
		}
	}
	return true
}

func (d *directory) applySnapshot(n *node, rec *dirRecord) {
	n.nodeID = string(rec.nodeID)
	if rec.part == 0 {
		n.snapEpoch++
		n.snapNext = 0
	}
	if rec.part != n.snapNext {
		if n.snapNext != snapBroken {
			n.snapNext = snapBroken // a part was lost: ask for the whole again
			n.synced = false
			n.asked = false
			d.ask(n)
		}
		return
	}
	n.snapNext++
	for e := rec.ents; len(e) > 0; {
		clock, id, rest := nextSnapEntry(e)
		e = rest
		d.observe(clock)
		d.applyLogin(n, string(id), clock, true)
	}
	if !rec.last {
		return
	}
	epoch := n.snapEpoch
	d.sweep(func(p *remotePeer) bool { return p.node == n && p.epoch != epoch })
	n.seq = rec.seq
	n.synced = true
	n.asked = false
}

// applyLogin records node n's login of id at clock. Called with mu held.
func (d *directory) applyLogin(n *node, id string, clock uint64, snap bool) {
	s := d.shardString(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	head := s.peers[id]
	for e := head; e != nil; e = e.next {
		if e.node != n {
			continue
		}
		switch {
		case e.clock == clock:
			if snap {
				e.epoch = n.snapEpoch
			}
			return
		case e.clock > clock:
			return // n has logged in again since: this is old news
		}
		head = unlink(head, e)
		e.gone.Store(true)
		break
	}
	g := gen{clock, n}
	if lc, ok := d.gens[id]; ok && g.newer(gen{lc, d.self}) {
		// A newer login elsewhere: ours goes, and we say so, so that the
		// replicas forget it rather than keep it behind the newer one.
		if p, ok := d.local.Lookup([]byte(id)); ok && d.local.CompareAndDelete(id, p) && d.h.kick != nil {
			d.h.kick(p)
		}
		delete(d.gens, id)
		d.seq++
		d.emit(appendChange(d.outbox, dirLogout, d.seq, lc, id))
	}
	if head == nil {
		d.remote.Add(1)
	}
	head = insert(head, &remotePeer{node: n, id: id, clock: clock, epoch: n.snapEpoch})
	d.setChain(s, id, head)
}

// applyLogout forgets n's login of id at clock, if that is the one known.
func (d *directory) applyLogout(n *node, id []byte, clock uint64) {
	s := d.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	head := s.peers[string(id)]
	for e := head; e != nil; e = e.next {
		if e.node == n && e.clock == clock {
			e.gone.Store(true)
			d.setChain(s, string(id), unlink(head, e))
			return
		}
	}
}

// setChain stores the chain of id's remote logins and marks which one
// frames go to: the newest, unless id is logged in here. Called with mu and
// s.mu held.
func (d *directory) setChain(s *dirShard, id string, head *remotePeer) {
	if head == nil {
		if _, ok := s.peers[id]; ok {
			delete(s.peers, id)
			d.remote.Add(-1)
		}
		return
	}
	s.peers[id] = head
	_, local := d.gens[id]
	head.gone.Store(local)
	for e := head.next; e != nil; e = e.next {
		e.gone.Store(true)
	}
}

// refresh re-marks id's chain after its local login came or went. Called
// with mu held.
func (d *directory) refresh(id string) {
	s := d.shardString(id)
	s.mu.Lock()
	if head, ok := s.peers[id]; ok {
		d.setChain(s, id, head)
	}
	s.mu.Unlock()
}

// sweep removes from every chain the entries that keep returns false for.
// Called with mu held.
func (d *directory) sweep(drop func(p *remotePeer) bool) {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.Lock()
		for id, head := range s.peers {
			changed := false
			for e := head; e != nil; {
				next := e.next
				if drop(e) {
					head = unlink(head, e)
					e.gone.Store(true)
					changed = true
				}
				e = next
			}
			if changed {
				d.setChain(s, id, head)
			}
		}
		s.mu.Unlock()
	}
}

// insert adds p to the chain, newest first.
func insert(head, p *remotePeer) *remotePeer {
	if head == nil || p.gen().newer(head.gen()) {
		p.next = head
		return p
	}
	e := head
	for e.next != nil && e.next.gen().newer(p.gen()) {
		e = e.next
	}
	p.next, e.next = e.next, p
	return head
}

// unlink removes p from the chain.
func unlink(head, p *remotePeer) *remotePeer {
	if head == p {
		return p.next
	}
	for e := head; e != nil; e = e.next {
		if e.next == p {
			e.next = p.next
			break
		}
	}
	return head
}

// dropNode forgets n and every client on it. Called with mu held.
func (d *directory) dropNode(n *node) {
	if d.nodes[n.instance] != n {
		return
	}
	delete(d.nodes, n.instance)
	d.live.Add(-1)
	n.dead.Store(true)
	d.sweep(func(p *remotePeer) bool { return p.node == n })
	if d.h.nodeDown != nil {
		d.h.nodeDown(n)
	}
}

// dropAll forgets every other node, as when this node leaves.
func (d *directory) dropAll() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.nodes {
		d.dropNode(n)
	}
}

// forEachRemote calls f for every remote peer. f must not call back into d.
func (d *directory) forEachRemote(f func(p *remotePeer)) {
	for i := range d.shards {
		s := &d.shards[i]
		s.mu.RLock()
		for _, p := range s.peers {
			f(p)
		}
		s.mu.RUnlock()
	}
}
