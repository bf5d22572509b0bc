package cluster

import (
	"context"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"go.uber.org/goleak"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
	"github.com/relayd/relayd/internal/relaytest"
	"github.com/relayd/relayd/internal/wait"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// natsOpts returns options for an embedded server on 127.0.0.1; port 0
// lets the kernel choose.
func natsOpts(port int) *natsserver.Options {
	o := relaytest.NATSOptions()
	if port != 0 {
		o.Port = port
	}
	return o
}

func startNATS(t *testing.T, o *natsserver.Options) *natsserver.Server {
	return relaytest.StartNATS(t, o)
}

func natsURL(s *natsserver.Server) string { return relaytest.NATSURL(s) }

// testNode is one relayd node: a Cluster over its own local registry.
type testNode struct {
	*Cluster
	local *registry.Local
}

func newNode(t *testing.T, name string, urls []string, tweak ...func(*Options)) *testNode {
	t.Helper()
	opt := Options{Name: "test", NodeID: name, URLs: urls, NodeTimeout: time.Second}
	for _, f := range tweak {
		f(&opt)
	}
	local := registry.NewLocal()
	c, err := New(opt, local)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("Start(%s): %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return &testNode{c, local}
}

// newNodes starts n nodes on one NATS server and waits until they all know
// each other.
func newNodes(t *testing.T, n int, url string) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = newNode(t, fmt.Sprintf("node%c", 'A'+i), []string{url})
	}
	waitFor(t, "every node to see the others", func() bool {
		for _, x := range nodes {
			if x.Stats().Nodes != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitFor polls cond until it holds or 10 s have passed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, cond)
}

// fakePeer is a local connection: it records what it is given, and answers
// what the test tells it to. With a capacity it behaves like a send queue
// that its client empties at the pace of take.
type fakePeer struct {
	name string

	mu      sync.Mutex
	frames  [][]byte
	answer  registry.Result // for every frame, unless capacity is set
	cap     int             // bytes the queue holds; 0: no queue
	queued  int
	waiters []*registry.Waiter
	kicked  bool
}

func newPeer(name string) *fakePeer { return &fakePeer{name: name, answer: registry.Delivered} }

func (p *fakePeer) Deliver(frame []byte, w *registry.Waiter) registry.Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.kicked {
		return registry.Gone
	}
	if p.cap > 0 {
		if p.queued > 0 && p.queued+len(frame) > p.cap {
			if w == nil {
				return registry.QueueFull
			}
			w.Max = 250 * time.Millisecond
			p.waiters = append(p.waiters, w)
			return registry.Wait
		}
		p.queued += len(frame)
	} else if p.answer != registry.Delivered {
		if p.answer == registry.Wait {
			w.Max = 250 * time.Millisecond
			p.waiters = append(p.waiters, w)
		}
		return p.answer
	}
	p.frames = append(p.frames, append([]byte(nil), frame...))
	return registry.Delivered
}

func (p *fakePeer) Kick() { p.change(func() { p.kicked = true }) }

// take empties the queue, as a client reading its socket, and wakes the
// senders waiting for room.
func (p *fakePeer) take() { p.change(func() { p.queued = 0 }) }

func (p *fakePeer) set(r registry.Result) { p.change(func() { p.answer = r }) }

// change applies f under mu and wakes the senders waiting, who look again.
func (p *fakePeer) change(f func()) {
	p.mu.Lock()
	f()
	ws := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, w := range ws {
		w.Signal()
	}
}

func (p *fakePeer) got() [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]byte(nil), p.frames...)
}

func (p *fakePeer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.frames)
}

func (p *fakePeer) isKicked() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kicked
}

func login(t *testing.T, n *testNode, id string, p registry.Peer) {
	t.Helper()
	old, err := n.Register(context.Background(), id, p)
	if err != nil {
		t.Fatalf("Register(%q): %v", id, err)
	}
	if old != nil {
		old.Kick()
	}
}

func frame(t testing.TB, from, to string, payload []byte) []byte {
	t.Helper()
	f, err := protocol.AppendTransfer(nil, from, to, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// remote waits until n sees id on another node and returns that peer.
func remote(t *testing.T, n *testNode, id string) registry.Peer {
	t.Helper()
	var p registry.Peer
	waitFor(t, fmt.Sprintf("%s to see %q on another node", n.opt.NodeID, id), func() bool {
		q, ok := n.Lookup([]byte(id))
		if rp, isRemote := q.(*remotePeer); ok && isRemote && !rp.gone.Load() {
			p = q
			return true
		}
		return false
	})
	return p
}

// send offers frame the way the server does: it waits when told to, and
// looks the ID up again when the peer is gone.
func send(n *testNode, w *registry.Waiter, to string, f []byte) registry.Result {
	for tries := 0; ; tries++ {
		p, ok := n.Lookup([]byte(to))
		if !ok {
			return registry.Gone
		}
		r := p.Deliver(f, w)
		switch r {
		case registry.Wait:
			select {
			case <-w.C:
			case <-time.After(w.Max):
			}
			continue
		case registry.Gone:
			if tries < 100 {
				continue
			}
		}
		return r
	}
}

func routeURL(s *natsserver.Server) *url.URL {
	u, _ := url.Parse("nats://" + s.ClusterAddr().String())
	return u
}

func appendTransferForTest(from, to string, payload []byte) ([]byte, error) {
	return protocol.AppendTransfer(nil, from, to, payload)
}

// countPeer counts the frames delivered to it and always has room.
type countPeer struct{ n atomic.Int64 }

func (p *countPeer) Deliver([]byte, *registry.Waiter) registry.Result {
	p.n.Add(1)
	return registry.Delivered
}
func (p *countPeer) Kick() {}

func startNATSB(b *testing.B) *natsserver.Server { return relaytest.StartNATS(b, natsOpts(0)) }

func newNodeB(b *testing.B, name, url string) *Cluster {
	c, err := New(Options{Name: "bench", NodeID: name, URLs: []string{url}}, registry.NewLocal())
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}
