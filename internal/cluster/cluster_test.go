package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"github.com/relayd/relayd/internal/registry"
)

func TestFramesCrossNodesByteForByteInOrder(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	bob := newPeer("bob")
	login(t, b, "bob", bob)
	p := remote(t, a, "bob")

	var want [][]byte
	for i := 0; i < 2000; i++ {
		payload := bytes.Repeat([]byte{byte(i)}, i%700)
		binary.BigEndian.PutUint32(append(payload, 0, 0, 0, 0)[len(payload):], uint32(i))
		f := frame(t, "alice", "bob", append(payload, byte(i>>8), byte(i)))
		want = append(want, f)
		if r := p.Deliver(f, registry.NewWaiter()); r != registry.Sent {
			t.Fatalf("frame %d: Deliver = %v, want sent", i, r)
		}
	}
	waitFor(t, "every frame at bob", func() bool { return bob.count() == len(want) })
	for i, f := range bob.got() {
		if !bytes.Equal(f, want[i]) {
			t.Fatalf("frame %d differs: got %d bytes, want %d", i, len(f), len(want[i]))
		}
	}
	if st := a.Stats(); st.FramesSent != uint64(len(want)) || st.RemoteClients != 1 {
		t.Fatalf("sender's stats = %+v", st)
	}
	if st := b.Stats(); st.FramesReceived != uint64(len(want)) {
		t.Fatalf("receiver's stats = %+v", st)
	}
}

func TestOfflineEverywhere(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	if _, ok := a.Lookup([]byte("nobody")); ok {
		t.Fatal("Lookup found an ID online nowhere")
	}
	// A frame already on its way when the receiver logs out is dropped as
	// offline by the receiver's node.
	bob := newPeer("bob")
	login(t, b, "bob", bob)
	p := remote(t, a, "bob")
	b.Unregister("bob", bob)
	if r := p.Deliver(frame(t, "alice", "bob", []byte("late")), nil); r != registry.Sent && r != registry.Gone {
		t.Fatalf("Deliver = %v", r)
	}
	waitFor(t, "the logout to reach A", func() bool { _, ok := a.Lookup([]byte("bob")); return !ok })
	if r := p.Deliver(frame(t, "alice", "bob", []byte("x")), nil); r != registry.Gone {
		t.Fatalf("Deliver to a logged-out remote peer = %v, want gone", r)
	}
}

func TestLastLoginWinsAcrossNodes(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 3, natsURL(s))
	a, b, c := nodes[0], nodes[1], nodes[2]
	first := newPeer("bob@A")
	login(t, a, "bob", first)
	onA := remote(t, c, "bob")

	second := newPeer("bob@B")
	login(t, b, "bob", second)
	waitFor(t, "A to kick its bob", first.isKicked)
	waitFor(t, "C's cached peer to turn gone", func() bool {
		return onA.Deliver(frame(t, "carol", "bob", nil), nil) == registry.Gone
	})
	for _, n := range []*testNode{a, c} {
		p := remote(t, n, "bob")
		if p.(*remotePeer).node.instance != b.instance {
			t.Fatalf("%s sees bob on %s, want B", n.opt.NodeID, p.(*remotePeer).node.nodeID)
		}
	}
	if k := a.Stats().Kicks; k != 1 {
		t.Fatalf("A counted %d kicks, want 1", k)
	}
	// The kicked connection finishing its teardown must not log bob out.
	a.Unregister("bob", first)
	w := registry.NewWaiter()
	if r := send(c, w, "bob", frame(t, "carol", "bob", []byte("hi"))); r != registry.Sent {
		t.Fatalf("send to bob after the old login unregistered = %v", r)
	}
	waitFor(t, "the frame at bob@B", func() bool { return second.count() == 1 })
}

func TestConcurrentLoginsConvergeOnOneWinner(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 3, natsURL(s))
	for round := 0; round < 20; round++ {
		id := fmt.Sprintf("dup%d", round)
		peers := make([]*fakePeer, len(nodes))
		var wg sync.WaitGroup
		for i, n := range nodes {
			peers[i] = newPeer(id)
			wg.Add(1)
			go func() { defer wg.Done(); login(t, n, id, peers[i]) }()
		}
		wg.Wait()
		waitFor(t, "one winner on every node", func() bool {
			var owner string
			for i, n := range nodes {
				p, ok := n.Lookup([]byte(id))
				if !ok {
					return false
				}
				o := n.instance
				if rp, isRemote := p.(*remotePeer); isRemote {
					o = rp.node.instance
				} else if p != peers[i] {
					return false
				}
				if owner != "" && o != owner {
					return false
				}
				owner = o
			}
			kicked := 0
			for _, p := range peers {
				if p.isKicked() {
					kicked++
				}
			}
			return kicked == len(nodes)-1
		})
	}
}

// A login announcement replayed (or delayed) from before a newer login
// must not kick it.
func TestReplayedLoginKicksNoNewerLogin(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	bobA := newPeer("bob@A")
	login(t, a, "bob", bobA)
	remote(t, b, "bob")

	// Capture A's announcement of the login by replaying what A would send:
	// same node, same generation.
	a.dir.mu.Lock()
	clock := a.dir.gens["bob"]
	a.dir.mu.Unlock()
	bobB := newPeer("bob@B")
	login(t, b, "bob", bobB)
	waitFor(t, "A to kick bob", bobA.isKicked)

	replay := appendChange(nil, dirLogin, 1, clock, "bob")
	if err := a.nc.Publish(a.prefix+"dir."+a.instance, replay); err != nil {
		t.Fatal(err)
	}
	// And a stranger's login with an old clock.
	old := appendChange(nil, dirLogin, 1, clock-1, "bob")
	if err := a.nc.Publish(a.prefix+"dir.intruder", old); err != nil {
		t.Fatal(err)
	}
	_ = a.nc.Flush()
	time.Sleep(100 * time.Millisecond) // nothing to wait for: nothing may happen
	if bobB.isKicked() {
		t.Fatal("a replayed older login kicked the newer one")
	}
	if p, ok := b.Lookup([]byte("bob")); !ok || p != registry.Peer(bobB) {
		t.Fatalf("B's bob is %v, want the local login", p)
	}
}

func TestLargeFramesOverSmallMaxPayload(t *testing.T) {
	o := natsOpts(0)
	o.MaxPayload = 1 << 20
	s := startNATS(t, o)
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	bob := newPeer("bob")
	login(t, b, "bob", bob)
	remote(t, a, "bob")

	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	want := [][]byte{
		frame(t, "alice", "bob", []byte("before")),
		frame(t, "alice", "bob", big),
		frame(t, "alice", "bob", big[:1<<20]), // just over one message
		frame(t, "alice", "bob", []byte("after")),
	}
	w := registry.NewWaiter()
	for i, f := range want {
		if r := send(a, w, "bob", f); r != registry.Sent {
			t.Fatalf("frame %d: %v", i, r)
		}
	}
	waitFor(t, "the frames at bob", func() bool { return bob.count() == len(want) })
	for i, f := range bob.got() {
		if !bytes.Equal(f, want[i]) {
			t.Fatalf("frame %d: got %d bytes, want %d, or different bytes", i, len(f), len(want[i]))
		}
	}
	if st := b.Stats(); st.DroppedMalformed != 0 {
		t.Fatalf("receiver dropped malformed frames: %+v", st)
	}
}

// seqFrame carries a sequence number as its payload.
func seqFrame(t testing.TB, to string, i int) []byte {
	return frame(t, "alice", to, binary.BigEndian.AppendUint32(nil, uint32(i)))
}

func seqs(t *testing.T, p *fakePeer) []int {
	var out []int
	for _, f := range p.got() {
		out = append(out, int(binary.BigEndian.Uint32(f[len(f)-4:])))
	}
	return out
}

func increasing(s []int) bool {
	for i := 1; i < len(s); i++ {
		if s[i] <= s[i-1] {
			return false
		}
	}
	return true
}

func TestReceiverMovesMidStream(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 3, natsURL(s))
	a, b, c := nodes[0], nodes[1], nodes[2]
	onB, onC := newPeer("bob@B"), newPeer("bob@C")
	login(t, b, "bob", onB)
	remote(t, a, "bob")

	// The sender goes on until frames reach C: however fast it is, the
	// move must happen mid-stream.
	const least = 20000
	done := make(chan int)
	go func() {
		w := registry.NewWaiter()
		i := 0
		for ; i < least || onC.count() == 0; i++ {
			if i > 50*least {
				break // C never got one: the checks below say so
			}
			send(a, w, "bob", seqFrame(t, "bob", i))
		}
		done <- i
	}()
	waitFor(t, "some frames at B", func() bool { return onB.count() > 100 })
	login(t, c, "bob", onC)
	total := <-done
	waitFor(t, "frames at C", func() bool { return onC.count() > 0 })
	sb, sc := seqs(t, onB), seqs(t, onC)
	if !increasing(sb) || !increasing(sc) {
		t.Fatal("frames were reordered")
	}
	if sc[0] <= sb[0] {
		t.Fatalf("C's stream starts at %d, before B's at %d", sc[0], sb[0])
	}
	waitFor(t, "the last frame at C", func() bool { s := seqs(t, onC); return s[len(s)-1] == total-1 })
}

func TestNodeKilled(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 3, natsURL(s))
	a, b, c := nodes[0], nodes[1], nodes[2]
	login(t, b, "bob", newPeer("bob"))
	login(t, c, "carol", newPeer("carol"))
	p := remote(t, a, "bob")
	remote(t, a, "carol")

	start := time.Now()
	b.nc.Close() // a crash: no goodbye
	waitFor(t, "A to drop B's clients", func() bool { _, ok := a.Lookup([]byte("bob")); return !ok })
	if d := time.Since(start); d > b.opt.NodeTimeout+200*time.Millisecond {
		t.Fatalf("noticed after %v, node_timeout is %v", d, b.opt.NodeTimeout)
	}
	if r := p.Deliver(frame(t, "alice", "bob", nil), nil); r != registry.Gone {
		t.Fatalf("Deliver to a dead node's client = %v, want gone", r)
	}
	if _, ok := a.Lookup([]byte("carol")); !ok {
		t.Fatal("the other node's client went offline too")
	}
	if n := a.Stats().Nodes; n != 2 {
		t.Fatalf("A counts %d nodes, want 2", n)
	}
}

func TestCloseSaysGoodbye(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	login(t, b, "bob", newPeer("bob"))
	remote(t, a, "bob")
	start := time.Now()
	b.Close()
	waitFor(t, "A to drop B's clients", func() bool { _, ok := a.Lookup([]byte("bob")); return !ok })
	if d := time.Since(start); d > b.opt.NodeTimeout/2 {
		t.Fatalf("a clean leave took %v to notice", d)
	}
}

func TestNATSDownAndBack(t *testing.T) {
	o := natsOpts(0)
	s, err := natsserver.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(5 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	port := s.Addr().(*net.TCPAddr).Port
	url := natsURL(s)
	nodes := newNodes(t, 2, url)
	a, b := nodes[0], nodes[1]
	bobB := newPeer("bob@B")
	login(t, b, "bob", bobB)
	p := remote(t, a, "bob")
	alice := newPeer("alice")
	login(t, a, "alice", alice)

	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, "A to notice", func() bool { return !a.Stats().Connected })
	if r := p.Deliver(frame(t, "x", "bob", nil), nil); r != registry.Down && r != registry.Gone {
		t.Fatalf("Deliver to a remote peer while NATS is down = %v, want down", r)
	}
	// Local pairs are untouched.
	if q, ok := a.Lookup([]byte("alice")); !ok || q.Deliver(frame(t, "x", "alice", nil), nil) != registry.Delivered {
		t.Fatal("a local pair stopped working while NATS is down")
	}
	// A duplicate login made meanwhile: the later one must win on both.
	time.Sleep(2 * time.Millisecond)
	bobA := newPeer("bob@A")
	login(t, a, "bob", bobA)

	s2 := startNATS(t, natsOpts(port))
	_ = s2
	waitFor(t, "both to reconnect and see each other", func() bool {
		return a.Stats().Connected && b.Stats().Connected && a.Stats().Nodes == 2 && b.Stats().Nodes == 2
	})
	waitFor(t, "B to kick its older bob", bobB.isKicked)
	q := remote(t, b, "bob")
	if q.(*remotePeer).node.instance != a.instance {
		t.Fatal("B sees bob elsewhere than on A")
	}
	w := registry.NewWaiter()
	if r := send(b, w, "bob", frame(t, "x", "bob", []byte("again"))); r != registry.Sent {
		t.Fatalf("after the resync: %v", r)
	}
	waitFor(t, "the frame at bob@A", func() bool { return bobA.count() == 1 })
}

func TestRoutedNATSServers(t *testing.T) {
	o1 := natsOpts(0)
	o1.Cluster = natsserver.ClusterOpts{Name: "nats", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT}
	s1 := startNATS(t, o1)
	o2 := natsOpts(0)
	o2.Cluster = natsserver.ClusterOpts{Name: "nats", Host: "127.0.0.1", Port: natsserver.RANDOM_PORT}
	o2.Routes = []*url.URL{routeURL(s1)}
	s2 := startNATS(t, o2)
	waitFor(t, "the route", func() bool { return s1.NumRoutes() > 0 && s2.NumRoutes() > 0 })

	a := newNode(t, "nodeA", []string{natsURL(s1)})
	b := newNode(t, "nodeB", []string{natsURL(s2)})
	waitFor(t, "the nodes to meet", func() bool { return a.Stats().Nodes == 2 && b.Stats().Nodes == 2 })
	bob := newPeer("bob")
	login(t, b, "bob", bob)
	remote(t, a, "bob")
	w := registry.NewWaiter()
	big := frame(t, "alice", "bob", bytes.Repeat([]byte("z"), 3<<20))
	for i := 0; i < 100; i++ {
		if r := send(a, w, "bob", seqFrame(t, "bob", i)); r != registry.Sent {
			t.Fatalf("frame %d: %v", i, r)
		}
	}
	send(a, w, "bob", big)
	waitFor(t, "the frames across the route", func() bool { return bob.count() == 101 })
	if got := bob.got()[100]; !bytes.Equal(got, big) {
		t.Fatal("the large frame differs")
	}
	if !increasing(seqs(t, &fakePeer{frames: bob.got()[:100]})) {
		t.Fatal("frames reordered across the route")
	}
}

// A stalled receiver on B loses frames (counted there), does not hold up
// its sender, and does not hold up a reader next to it on B.
func TestStalledRemoteReceiver(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	stalled, reader := newPeer("stalled"), newPeer("reader")
	stalled.set(registry.QueueFull)
	login(t, b, "stalled", stalled)
	login(t, b, "reader", reader)
	remote(t, a, "stalled")
	remote(t, a, "reader")

	w := registry.NewWaiter()
	payload := make([]byte, 16<<10)
	start := time.Now()
	for i := 0; i < 500; i++ { // 8 MiB: several windows
		if r := send(a, w, "stalled", frame(t, "alice", "stalled", payload)); r != registry.Sent {
			t.Fatalf("frame %d to the stalled receiver: %v", i, r)
		}
		if r := send(a, w, "reader", seqFrame(t, "reader", i)); r != registry.Sent {
			t.Fatalf("frame %d to the reader: %v", i, r)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("the sender took %v", d)
	}
	waitFor(t, "the reader's frames", func() bool { return reader.count() == 500 })
	waitFor(t, "the drops counted", func() bool { return b.Stats().DroppedQueueFull == 500 })
}

// A receiver that reads more slowly than its sender on another node writes
// paces the sender and loses nothing, and a fast reader on the same node
// keeps getting its frames meanwhile.
func TestSlowRemoteReceiverPacesSender(t *testing.T) {
	s := startNATS(t, natsOpts(0))
	nodes := newNodes(t, 2, natsURL(s))
	a, b := nodes[0], nodes[1]
	slow, fast := newPeer("slow"), newPeer("fast")
	slow.cap = 64 << 10
	login(t, b, "slow", slow)
	login(t, b, "fast", fast)
	remote(t, a, "slow")
	remote(t, a, "fast")

	stop := make(chan struct{})
	var readerDone sync.WaitGroup
	readerDone.Add(1)
	go func() { // the slow client reads 64 KiB every 2 ms: ~32 MB/s
		defer readerDone.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				slow.take()
			}
		}
	}()
	defer func() { close(stop); readerDone.Wait() }()

	const frames, size = 1500, 4 << 10 // 6 MiB: six windows
	sent := make(chan struct{})
	waits := 0
	go func() {
		defer close(sent)
		w := registry.NewWaiter()
		f := frame(t, "alice", "slow", make([]byte, size))
		for i := 0; i < frames; i++ {
			p, _ := a.Lookup([]byte("slow"))
			for p.Deliver(f, w) == registry.Wait {
				waits++
				select {
				case <-w.C:
				case <-time.After(w.Max):
				}
			}
		}
	}()
	// The fast reader is served while the slow one holds frames pending.
	waitFor(t, "frames pending for the slow reader", func() bool { return b.nInbound.Load() > 0 })
	w := registry.NewWaiter()
	for i := 0; i < 100; i++ {
		send(a, w, "fast", seqFrame(t, "fast", i))
	}
	waitFor(t, "the fast reader's frames", func() bool { return fast.count() == 100 })
	<-sent
	waitFor(t, "every frame at the slow reader", func() bool { return slow.count() == frames })
	if waits == 0 {
		t.Fatal("the sender never waited: nothing paced it")
	}
	st := b.Stats()
	if st.DroppedQueueFull+st.DroppedOffline+st.DroppedClosed != 0 {
		t.Fatalf("frames dropped for a reading receiver: %+v", st)
	}
}

func TestStartErrors(t *testing.T) {
	old := connectWait
	connectWait = 300 * time.Millisecond
	t.Cleanup(func() { connectWait = old })

	o := natsOpts(0)
	o.Username, o.Password = "relayd", "secret"
	s := startNATS(t, o)

	port := func() string { // a port nobody listens on
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}()
	for _, tc := range []struct {
		name string
		opt  Options
		want string
	}{
		{"unreachable", Options{URLs: []string{"nats://" + port}}, "cluster: cannot reach NATS at nats://" + port},
		{"bad password", Options{URLs: []string{natsURL(s)}, User: "relayd", Password: "wrong"}, "cluster: NATS refused credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Name, tc.opt.NodeID = "test", "n"
			c, err := New(tc.opt, registry.NewLocal())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			err = c.Start(context.Background())
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Start = %v, want one line starting %q", err, tc.want)
			}
		})
	}
	n := newNode(t, "ok", []string{natsURL(s)}, func(o *Options) { o.User, o.Password = "relayd", "secret" })
	if !n.Stats().Connected {
		t.Fatal("not connected with the right password")
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  Options
		want string
	}{
		{"no name", Options{URLs: []string{"nats://x:4222"}}, "name must not be empty"},
		{"dotted name", Options{Name: "a.b", URLs: []string{"nats://x:4222"}}, "subject token"},
		{"no urls", Options{Name: "a"}, "nats_urls"},
		{"two urls in one", Options{Name: "a", URLs: []string{"nats://a:1,nats://b:2"}}, "not one URL"},
		{"both auths", Options{Name: "a", URLs: []string{"nats://x:1"}, Credentials: "/x", User: "u"}, "not both"},
		{"missing creds", Options{Name: "a", URLs: []string{"nats://x:1"}, Credentials: "/nonexistent.creds"}, "nats_credentials"},
		{"missing ca", Options{Name: "a", URLs: []string{"nats://x:1"}, TLSCA: "/nonexistent.pem"}, "nats_tls_ca"},
		{"cert without key", Options{Name: "a", URLs: []string{"nats://x:1"}, TLSCert: "/x.pem"}, "go together"},
		{"short timeout", Options{Name: "a", URLs: []string{"nats://x:1"}, NodeTimeout: time.Millisecond}, "node_timeout"},
		{"long node id", Options{Name: "a", URLs: []string{"nats://x:1"}, NodeID: strings.Repeat("n", 256)}, "node_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opt, registry.NewLocal())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error about %q", err, tc.want)
			}
		})
	}
	c, err := New(Options{Name: "relayd", URLs: []string{"nats://127.0.0.1:1"}}, registry.NewLocal())
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	if c.opt.NodeID == "" {
		t.Fatal("an empty node_id did not default to the host name")
	}
	c.Close()
}
