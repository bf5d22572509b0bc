package cluster

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/relayd/relayd/internal/registry"
)

// BenchmarkCrossNode1KiB64Pairs: 64 senders on node A, each streaming 1 KiB
// frames open-loop (waiting only when told to) to its own receiver on node B,
// over one embedded nats-server. Reports frames/s delivered.
func BenchmarkCrossNode1KiB64Pairs(b *testing.B) {
	benchCrossNode(b, 64, 1<<10)
}

func benchCrossNode(b *testing.B, pairs, size int) {
	s := startNATSB(b)
	a := newNodeB(b, "A", natsURL(s))
	r := newNodeB(b, "B", natsURL(s))
	for a.Stats().Nodes != 2 || r.Stats().Nodes != 2 {
		time.Sleep(time.Millisecond)
	}
	peers := make([]*countPeer, pairs)
	for i := range peers {
		peers[i] = &countPeer{}
		r.Register(b.Context(), fmt.Sprintf("r%d", i), peers[i])
	}
	for a.Stats().RemoteClients != pairs {
		time.Sleep(time.Millisecond)
	}
	per := b.N/pairs + 1
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("r%d", i)
			f, _ := appendTransferForTest("s", id, make([]byte, size))
			w := registry.NewWaiter()
			p, _ := a.Lookup([]byte(id))
			for n := 0; n < per; {
				switch p.Deliver(f, w) {
				case registry.Sent:
					n++
				case registry.Wait:
					select {
					case <-w.C:
					case <-time.After(w.Max):
					}
				default:
					b.Error("frame refused")
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range peers {
		for peers[i].n.Load() < int64(per) {
			time.Sleep(100 * time.Microsecond)
		}
	}
	el := time.Since(start)
	b.ReportMetric(float64(per*pairs)/el.Seconds(), "frames/s")
	st := r.Stats()
	if st.DroppedQueueFull+st.DroppedOffline != 0 {
		b.Fatalf("drops: %+v", st)
	}
}
