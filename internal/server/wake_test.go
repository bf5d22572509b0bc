package server

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWakeStress(t *testing.T) {
	s, addr := startDefault(t, nil)
	sink := dialClient(t, s, addr, "sink")
	var got atomic.Int64
	go func() {
		for {
			if _, err := sink.Recv(); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	const conns, rounds = 50, 20
	var wg sync.WaitGroup
	for i := range conns {
		c := loginRaw(t, s, addr, fmt.Sprintf("w%d", i))
		wg.Add(1)
		go func(c net.Conn, id string) {
			defer wg.Done()
			for range rounds {
				time.Sleep(time.Duration(90+rand.IntN(25)) * time.Millisecond)
				c.Write(transferFrame(id, "sink", []byte("x")))
			}
		}(c, fmt.Sprintf("w%d", i))
	}
	wg.Wait()
	eventually(t, "all frames", func() bool { return got.Load() == conns*rounds })
}
