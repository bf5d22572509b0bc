package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayd/relayd/client"
)

// IdleConfig describes an idle-connections run.
type IdleConfig struct {
	Common
	Conns     int           // logged-in connections to hold
	Heartbeat time.Duration // how often each one heartbeats
	Parallel  int           // concurrent dials
}

// IdleResult reports the server's memory per idle logged-in connection.
type IdleResult struct {
	Mode           string  `json:"mode"`
	Transport      string  `json:"transport"`
	Conns          int     `json:"conns"`
	DialSeconds    float64 `json:"dial_seconds"`
	ServerRSSStart int64   `json:"server_rss_start_bytes"`
	ServerRSSEnd   int64   `json:"server_rss_end_bytes"`
	BytesPerConn   float64 `json:"server_rss_bytes_per_conn"`
}

// Idle logs in Conns clients from 127.0.0.x source addresses, keeps them
// heart-beating for Duration, and reports how much the server's resident
// memory grew per connection. It needs ServerPID.
func Idle(ctx context.Context, cfg IdleConfig) (*IdleResult, error) {
	if cfg.ServerPID == 0 {
		return nil, errors.New("idle mode needs the server's PID to read its memory")
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 64
	}
	before, err := processRSS(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	id := runID()
	clients := make([]*client.Client, cfg.Conns)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()

	start := time.Now()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Parallel)
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-t.C:
				cfg.report(fmt.Sprintf("%5.1fs  %d connections logged in", time.Since(start).Seconds(), done.Load()))
			}
		}
	}()
	for w := 0; w < cfg.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns || ctx.Err() != nil {
					return
				}
				c, err := idleClient(ctx, cfg, fmt.Sprintf("bench-%s-i%d", id, i), localAddr(i))
				if err != nil {
					errc <- fmt.Errorf("connection %d: %w", i, err)
					return
				}
				clients[i] = c
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	dialed := time.Since(start)

	// Hold them for the window; the heartbeats keep them alive.
	if err := sleep(ctx, cfg.Duration, nil); err != nil {
		return nil, err
	}
	after, err := processRSS(cfg.ServerPID)
	if err != nil {
		return nil, err
	}
	runtime.KeepAlive(clients)
	return &IdleResult{
		Mode: "idle", Transport: cfg.sendEnd().transport(), Conns: cfg.Conns, DialSeconds: dialed.Seconds(),
		ServerRSSStart: before, ServerRSSEnd: after,
		BytesPerConn: float64(after-before) / float64(cfg.Conns),
	}, nil
}

// idleClient dials from src, logs in as id and proves the login by sending
// itself a frame, so that the server has registered it before we count.
func idleClient(ctx context.Context, cfg IdleConfig, id string, src *net.TCPAddr) (*client.Client, error) {
	c, err := dial(ctx, cfg.sendEnd(), id, &client.Options{
		Heartbeat: cfg.Heartbeat, ReadBufferSize: 1024, WriteBufferSize: 64, MaxPayload: 64,
	}, src)
	if err != nil {
		return nil, err
	}
	if err := c.Send(id, []byte("here")); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Recv(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login not confirmed: %w", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}
