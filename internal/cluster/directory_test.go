package cluster

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/registry"
)

// simNet runs directories without NATS: every node's records go to every
// other node in order (NATS keeps one publisher's order), and the test
// decides when each message arrives, or that it never does.
type simNet struct {
	t     *testing.T
	rng   *rand.Rand
	dirs  []*directory
	queue [][][]byte // queue[from*n+to]: messages not yet delivered
	past  [][][]byte // past[from*n+to]: messages delivered, for replays
	clock time.Time  // every node's wall clock: logins at the same moment
	peers map[*fakePeer]int
}

func newSimNet(t *testing.T, n int, seed uint64) *simNet {
	s := &simNet{t: t, rng: rand.New(rand.NewPCG(seed, 1)), queue: make([][][]byte, n*n),
		past: make([][][]byte, n*n), clock: time.Unix(1700000000, 0), peers: map[*fakePeer]int{}}
	for i := 0; i < n; i++ {
		i := i
		d := newDirectory(fmt.Sprintf("inst%d", i), fmt.Sprintf("node%d", i), registry.NewLocal(), time.Hour, 64, hooks{
			kick: func(p registry.Peer) { p.Kick() },
		})
		d.now = func() time.Time { return s.clock }
		s.dirs = append(s.dirs, d)
		_ = i
	}
	return s
}

// publish moves node i's outbox onto the wire.
func (s *simNet) publish(i int) {
	out := s.dirs[i].takeOutbox(nil)
	if len(out) == 0 {
		return
	}
	for j := range s.dirs {
		if j != i {
			s.queue[i*len(s.dirs)+j] = append(s.queue[i*len(s.dirs)+j], out)
		}
	}
}

func (s *simNet) deliver(from, to int) {
	q := &s.queue[from*len(s.dirs)+to]
	if len(*q) == 0 {
		return
	}
	m := (*q)[0]
	*q = (*q)[1:]
	s.past[from*len(s.dirs)+to] = append(s.past[from*len(s.dirs)+to], m)
	if !s.dirs[to].receive(s.dirs[from].self.instance, m) {
		s.t.Fatal("a directory message did not parse")
	}
}

// settle publishes and delivers until nothing moves.
func (s *simNet) settle() {
	for moved := true; moved; {
		moved = false
		for i := range s.dirs {
			s.publish(i)
		}
		for from := range s.dirs {
			for to := range s.dirs {
				for len(s.queue[from*len(s.dirs)+to]) > 0 {
					s.deliver(from, to)
					moved = true
				}
			}
		}
	}
}

// check asserts that every replica agrees on one owner per ID: at most one
// node has it logged in, and every other node routes it there, at that
// login's generation; an ID logged in nowhere is routed nowhere.
func (s *simNet) check(ids []string) {
	s.t.Helper()
	for _, id := range ids {
		owner := -1
		for i, d := range s.dirs {
			if _, ok := d.local.Lookup([]byte(id)); ok {
				if owner >= 0 {
					s.t.Fatalf("%q is logged in on node %d and node %d", id, owner, i)
				}
				owner = i
			}
		}
		for i, d := range s.dirs {
			if i == owner {
				continue
			}
			p, ok := d.lookupRemote([]byte(id))
			if owner < 0 {
				if ok {
					s.t.Fatalf("%q is online nowhere, but node %d routes it to %s", id, i, p.node.instance)
				}
				continue
			}
			o := s.dirs[owner]
			if !ok || p.gone.Load() || p.node.instance != o.self.instance || p.clock != o.gens[id] {
				s.t.Fatalf("node %d routes %q to %v, want node %d at clock %d", i, id, p, owner, o.gens[id])
			}
		}
	}
}

func TestDirectoryConvergesUnderLossReplayAndResync(t *testing.T) {
	ids := []string{"a", "b", "c", "d", "e"}
	for seed := uint64(0); seed < 300; seed++ {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			s := newSimNet(t, 3, seed)
			n := len(s.dirs)
			var live []struct {
				node int
				id   string
				p    *fakePeer
			}
			for step := 0; step < 400; step++ {
				if s.rng.IntN(4) == 0 {
					s.clock = s.clock.Add(time.Duration(s.rng.IntN(3)) * time.Microsecond)
				}
				i := s.rng.IntN(n)
				switch op := s.rng.IntN(100); {
				case op < 20: // a login
					id := ids[s.rng.IntN(len(ids))]
					p := newPeer(id)
					if old := s.dirs[i].login(id, p); old != nil {
						old.Kick()
					}
					live = append(live, struct {
						node int
						id   string
						p    *fakePeer
					}{i, id, p})
				case op < 30: // a connection closes: kicked or not, it unregisters
					if len(live) > 0 {
						k := s.rng.IntN(len(live))
						l := live[k]
						s.dirs[l.node].logout(l.id, l.p)
						live = append(live[:k], live[k+1:]...)
					}
				case op < 40:
					s.publish(i)
				case op < 75:
					s.deliver(i, s.rng.IntN(n))
				case op < 85: // lost
					j := s.rng.IntN(n)
					if q := &s.queue[i*n+j]; len(*q) > 0 {
						*q = (*q)[1:]
					}
				case op < 90: // a replay of something delivered before
					j := s.rng.IntN(n)
					if past := s.past[i*n+j]; len(past) > 0 && i != j {
						s.dirs[j].receive(s.dirs[i].self.instance, past[s.rng.IntN(len(past))])
					}
				case op < 95:
					s.dirs[i].beat()
				default:
					s.dirs[i].resyncAll()
				}
			}
			// The network heals: what is still queued arrives, heartbeats
			// reveal the gaps and the snapshots they ask for repair them.
			s.settle()
			for i := range s.dirs {
				s.dirs[i].beat()
			}
			s.settle()
			for i := range s.dirs {
				s.dirs[i].beat()
			}
			s.settle()
			s.check(ids)
			for _, l := range live { // and a kicked login is not logged in anywhere
				if l.p.isKicked() {
					if p, ok := s.dirs[l.node].local.Lookup([]byte(l.id)); ok && p == registry.Peer(l.p) {
						t.Fatalf("kicked peer %q on node %d is still registered", l.id, l.node)
					}
				}
			}
		})
	}
}

// Two logins of one ID at the same microsecond on two nodes: both replicas
// pick the same one.
func TestDirectorySameMomentLogins(t *testing.T) {
	s := newSimNet(t, 2, 1)
	pa, pb := newPeer("x"), newPeer("x")
	s.dirs[0].login("x", pa)
	s.dirs[1].login("x", pb)
	s.settle()
	s.check([]string{"x"})
	if pa.isKicked() == pb.isKicked() {
		t.Fatalf("kicked: A %v, B %v; want exactly one", pa.isKicked(), pb.isKicked())
	}
}

// The directory holds 100,000 remote clients in at most 200 bytes each.
func TestDirectoryMemoryPerRemoteClient(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 100,000 entries")
	}
	const clients = 100_000
	ids := make([]string, clients)
	for i := range ids {
		ids[i] = fmt.Sprintf("client-%06d", i) // 13 bytes, a typical short ID
	}
	// Other tests' goroutines may free memory meanwhile and make the
	// difference meaningless (negative): measure again then.
	var d *directory
	var per float64
	for try := 0; try < 5; try++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		d = newDirectory("self", "self", registry.NewLocal(), time.Hour, 1<<16, hooks{})
		n := &node{instance: "other"}
		d.mu.Lock()
		for i, id := range ids {
			d.applyLogin(n, id, uint64(i+1), false)
		}
		d.mu.Unlock()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(d)
		if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 0 {
			per = float64(grown) / clients
			break
		}
	}
	t.Logf("%.0f bytes per remote client (%d clients)", per, clients)
	if per > 200 || per == 0 {
		t.Fatalf("%.0f bytes per remote client, want at most 200", per)
	}
	if d.remote.Load() != clients {
		t.Fatalf("%d remote clients, want %d", d.remote.Load(), clients)
	}
	runtime.KeepAlive(ids)
}

func TestLookupDoesNotAllocate(t *testing.T) {
	c, err := New(Options{Name: "t", NodeID: "n", URLs: []string{"nats://127.0.0.1:1"}}, registry.NewLocal())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.dir.local.Swap("local", newPeer("local"))
	c.dir.mu.Lock()
	c.dir.applyLogin(&node{instance: "x"}, "remote", 1, false)
	c.dir.mu.Unlock()
	for _, id := range [][]byte{[]byte("local"), []byte("remote"), []byte("nobody")} {
		if n := testing.AllocsPerRun(1000, func() { c.Lookup(id) }); n != 0 {
			t.Fatalf("Lookup(%q) allocated %.1f times", id, n)
		}
	}
}

// A login announcement replayed after its logout does not bring the login
// back.
func TestDirectoryReplayAfterLogout(t *testing.T) {
	s := newSimNet(t, 2, 1)
	p := newPeer("x")
	s.dirs[0].login("x", p)
	s.settle()
	s.dirs[0].logout("x", p)
	s.settle()
	s.dirs[1].receive(s.dirs[0].self.instance, s.past[0*2+1][0]) // the login
	s.check([]string{"x"})
}
