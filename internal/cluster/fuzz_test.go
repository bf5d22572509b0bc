package cluster

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relayd/relayd/internal/protocol"
	"github.com/relayd/relayd/internal/registry"
)

// Whoever holds the cluster's NATS credentials can send a node anything:
// no message may crash it, or make it hold more than its bounds.

func FuzzDirectoryMessage(f *testing.F) {
	f.Add(appendChange(nil, dirLogin, 1, 5, "alice"))
	f.Add(appendChange(appendChange(nil, dirLogin, 1, 5, "a"), dirLogout, 2, 5, "a"))
	f.Add(appendBeat(nil, 3, "node"))
	f.Add(appendSync(nil, ""))
	w := snapWriter{seq: 2, nodeID: "n", limit: 16, start: -1}
	w.add(7, "bob")
	w.add(8, "carol")
	f.Add(w.finish())
	f.Add([]byte{dirLeave})
	f.Fuzz(func(t *testing.T, msg []byte) {
		d := newDirectory("self", "self", registry.NewLocal(), time.Hour, 64, hooks{kick: func(p registry.Peer) { p.Kick() }})
		d.login("alice", newPeer("alice"))
		d.receive("other", msg)
		d.receive("other", msg) // again: a replay
		for i := range d.shards {
			for id, head := range d.shards[i].peers {
				if len(id) == 0 || len(id) > 255 {
					t.Fatalf("an ID of %d bytes was accepted", len(id))
				}
				for e := head; e != nil && e.next != nil; e = e.next {
					if !e.gen().newer(e.next.gen()) {
						t.Fatal("a chain is out of order")
					}
				}
			}
		}
		// Every record this node writes parses back.
		out := d.takeOutbox(nil)
		for len(out) > 0 {
			_, rest, err := nextDir(out)
			if err != nil {
				t.Fatalf("own record does not parse: %v", err)
			}
			out = rest
		}
	})
}

func FuzzDataMessage(f *testing.F) {
	fr := func(to string, n int) []byte {
		b, _ := appendTransferForTest("x", to, bytes.Repeat([]byte{1}, n))
		return b
	}
	one := appendRecordHeader(nil, kindFrame, len(fr("bob", 3)))
	one = append(one, fr("bob", 3)...)
	f.Add(one)
	big := fr("bob", 40)
	parts := appendRecordHeader(nil, kindBegin, 4+20)
	parts = binary.BigEndian.AppendUint32(parts, uint32(len(big)))
	parts = append(parts, big[:20]...)
	parts = appendRecordHeader(parts, kindMore, len(big)-20)
	parts = append(parts, big[20:]...)
	f.Add(parts)
	f.Add(binary.BigEndian.AppendUint64(appendRecordHeader(nil, kindPos, 8), 1<<40))
	f.Add(appendCredit(binary.BigEndian.AppendUint64(nil, 77), []byte("bob"), 9))
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := New(Options{Name: "f", NodeID: "n", URLs: []string{"nats://127.0.0.1:1"}, MaxFrame: 1 << 10}, registry.NewLocal())
		if err != nil {
			t.Fatal(err)
		}
		c.Close() // no goroutines: a frame that would need one is dropped
		bob := newPeer("bob")
		c.dir.local.Swap("bob", bob)
		c.onData(&nats.Msg{Subject: c.prefix + "data." + c.instance + ".peer", Data: msg})
		c.onCredit(&nats.Msg{Subject: c.prefix + "credit." + c.instance + ".peer", Data: msg})
		for _, got := range bob.got() {
			to, ok := protocol.TransferTo(got)
			if !ok || string(to) != "bob" {
				t.Fatalf("delivered %q, which is not a transfer frame to bob", got)
			}
		}
		if a := c.dir.node([]byte("peer")); a != nil && a.asm.buf != nil && a.asm.total > c.maxFrame {
			t.Fatal("reassembly beyond MaxFrame")
		}
	})
}
