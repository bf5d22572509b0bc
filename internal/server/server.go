// Package server is the relay: a set of listeners sharing one registry, the
// per-connection read and write loops, and Apply, which moves a running
// server to a new configuration all-or-nothing.
//
// Where to look: transport.go is the seam between transports and the
// server (Accepted); listener.go accepts and admits connections; conn.go
// holds a connection's state and teardown; readloop.go its read loop,
// read buffers, deadlines and parking (park_linux.go); frames.go what each
// frame does; forward.go how a frame reaches its receiver and how a sender
// waits for room; sendqueue.go and writeloop.go the receiver's side.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/auth"
	"github.com/relayd/relayd/internal/registry"
)

// ErrClosed is returned by Apply after Shutdown.
var ErrClosed = errors.New("server: closed")

// Server relays frames between the clients of all its listeners.
//
// Lock order: applyMu → mu → listener.mu → sendQueue.mu and parker.mu.
type Server struct {
	// Static after construction.
	log       *slog.Logger
	reg       registry.Registry
	done      chan struct{} // closed when Shutdown begins
	forced    chan struct{} // closed when Shutdown's deadline passes: stop flushing queues
	idleAfter time.Duration // how long a connection waits with nothing buffered before it parks

	wg          sync.WaitGroup // accept loops and connections (each connection waits for its writer)
	park        parker         // waits for idle connections without a goroutine each
	stopping    atomic.Bool    // read loops stop reading: Shutdown has begun
	kicks       atomic.Uint64
	disconnects [numReasons]atomic.Uint64 // indexed by Reason
	idleParks   atomic.Uint64             // connections that gave their read buffer back
	upgrades    atomic.Uint64             // moves to a larger read buffer

	tokens atomic.Pointer[tokenKeys] // [auth]: how logins on client_id_from_token listeners are verified; nil without

	applyMu sync.Mutex // serializes Apply; held across binds and certificate reads, unlike mu

	mu        sync.Mutex
	listeners map[string]*listener // guarded by mu; by name
	stopped   []*listener          // guarded by mu; removed listeners whose connections are still closing
	retired   FrameStats           // guarded by mu; frame counts of removed listeners that drained
	closed    bool                 // guarded by mu
}

// New returns a server with no listeners; Apply starts them. A nil registry
// means a process-local one.
func New(log *slog.Logger, reg registry.Registry) *Server {
	if reg == nil {
		reg = registry.NewLocal()
	}
	return &Server{
		log:       log,
		reg:       reg,
		done:      make(chan struct{}),
		forced:    make(chan struct{}),
		idleAfter: defaultIdleAfter,
		listeners: make(map[string]*listener),
	}
}

// Apply moves the server to cfg's listeners and limits. It loads every TLS
// file and binds every new address before changing anything; if any step
// fails it returns the error and the running configuration is untouched.
//
// Listeners keep their connections when their name and address are
// unchanged; their limits, certificates and CAs are swapped in place and
// apply to existing connections from their next frame or write. Listeners
// no longer in cfg stop and their connections close.
func (s *Server) Apply(cfg *config.Config) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	running := maps.Clone(s.listeners) // only Apply changes the set, and applyMu is held
	s.mu.Unlock()

	type step struct {
		cfg  config.Listener
		tls  *tls.Config
		keep *listener    // running listener to update in place
		ln   net.Listener // newly bound socket
	}
	var tokens *tokenKeys
	if cfg.Auth != nil && cfg.Auth.JWTKeyFile != "" {
		keys, err := auth.LoadKeys(cfg.Auth.JWTKeyFile)
		if err != nil {
			return fmt.Errorf("[auth] jwt_key_file: %w", err)
		}
		tokens = &tokenKeys{keys: keys, audience: cfg.Auth.JWTAudience}
	}

	steps := make([]step, len(cfg.Listeners))
	var bound []net.Listener
	undo := func() {
		for _, ln := range bound {
			_ = ln.Close()
		}
	}
	for i, lc := range cfg.Listeners {
		tc, err := lc.LoadTLS()
		if err != nil {
			undo()
			return err
		}
		steps[i] = step{cfg: lc, tls: tc}
		if old, ok := running[lc.Name]; ok && old.listensOn(lc.Address) {
			steps[i].keep = old
			delete(running, lc.Name)
			continue
		}
		if old := renamed(running, cfg, lc); old != nil {
			// Only the name changed: the socket and its connections stay.
			steps[i].keep = old
			delete(running, old.name())
			continue
		}
		ln, err := net.Listen(network(lc.Address), lc.Address)
		if err != nil {
			undo()
			if holder := holding(running, lc.Address); holder != nil && errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("listener %q: listen on %s: the port is still bound by listener %q on %s; "+
					"moving a listener to another address on the same port needs a restart of relayd", lc.Name, lc.Address, holder.name(), holder.ln.Addr())
			}
			return fmt.Errorf("listener %q: listen on %s: %w", lc.Name, lc.Address, err)
		}
		bound = append(bound, ln)
		steps[i].ln = ln
	}

	// Nothing can fail from here on.
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		undo()
		return ErrClosed
	}
	s.tokens.Store(tokens)
	next := make(map[string]*listener, len(steps))
	for _, st := range steps {
		if st.keep != nil {
			if was := st.keep.name(); was != st.cfg.Name {
				s.log.Info("listener renamed", "listener", st.cfg.Name, "was", was)
			}
			if changed := describeChange(&st.keep.st.Load().cfg, &st.cfg); changed != "" {
				s.log.Info("listener updated", "listener", st.cfg.Name, "changed", changed)
			}
			st.keep.st.Store(&listenerState{cfg: st.cfg, tls: st.tls})
			next[st.cfg.Name] = st.keep
		}
	}
	kept := map[*listener]bool{}
	for _, l := range next {
		kept[l] = true
	}
	for name, old := range s.listeners {
		if kept[old] {
			continue
		}
		old.stop(ReasonListenerRemoved)
		s.stopped = append(s.stopped, old)
		s.log.Info("listener stopped", "listener", name, "address", old.ln.Addr().String())
	}
	for _, st := range steps {
		if st.ln == nil {
			continue
		}
		l := newListener(s, st.cfg, st.tls, st.ln)
		next[st.cfg.Name] = l
		s.wg.Add(1)
		go l.serve()
		s.log.Info("listener started", "listener", l.name(), "address", st.ln.Addr().String(), "tls", st.tls != nil)
	}
	s.listeners = next
	s.retireDrainedLocked()
	return nil
}

// renamed returns the running listener that lc is under another name: on
// the same address, and whose own name the new configuration no longer has.
func renamed(running map[string]*listener, cfg *config.Config, lc config.Listener) *listener {
	if _, port, _ := net.SplitHostPort(lc.Address); port == "0" {
		return nil // any port: nothing to keep
	}
	for name, l := range running {
		if !l.listensOn(lc.Address) || slices.ContainsFunc(cfg.Listeners, func(o config.Listener) bool { return o.Name == name }) {
			continue
		}
		return l
	}
	return nil
}

// holding returns a running listener bound to addr's port, if any.
func holding(running map[string]*listener, addr string) *listener {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	for _, l := range running {
		if ta, ok := l.ln.Addr().(*net.TCPAddr); ok && strconv.Itoa(ta.Port) == port {
			return l
		}
	}
	return nil
}

// tokenKeys verify signed logins (SPEC §11).
type tokenKeys struct {
	keys     *auth.KeySet
	audience string // the aud a token must name; "" for any
}

// retireDrainedLocked folds the counts of removed listeners whose last
// connection has closed into retired, and forgets them.
func (s *Server) retireDrainedLocked() {
	live := s.stopped[:0]
	for _, l := range s.stopped {
		if l.drained() {
			l.stats(&s.retired)
			continue
		}
		live = append(live, l)
	}
	clear(s.stopped[len(live):])
	s.stopped = live
}

// network picks the address family: an IPv4 address binds IPv4 only (as
// "0.0.0.0" means to operators); an IPv6 wildcard serves both families.
func network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err == nil && ip != nil && ip.To4() != nil {
		return "tcp4"
	}
	return "tcp"
}

// describeChange says which settings of a kept listener differ, for the log.
func describeChange(old, new *config.Listener) string {
	return strings.Join(old.Diff(new), ",")
}

// Shutdown stops accepting and reading, lets every connection write out
// the frames already queued for it, then closes it. When ctx is done first,
// the connections still flushing are closed at once and their queued frames
// count as dropped (reason shutdown). It returns once every goroutine of
// the server has ended, or ctx.Err() if that took until ctx was done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	first := !s.closed
	s.closed = true
	var all []*listener
	if first {
		all = append(listenerList(s.listeners), s.stopped...)
	}
	s.mu.Unlock()
	if first {
		for _, l := range all {
			l.stopAccepting()
		}
		s.stopping.Store(true)
		close(s.done)
		past := time.Now()
		for _, l := range all {
			for _, c := range l.connections() {
				_ = c.raw.SetReadDeadline(past) // after stopping is set: see deadlineReader
			}
		}
		s.park.wakeAll()
	}

	finished := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.park.stop() // every connection is gone: none can park any more
		close(finished)
	}()
	// Flushing may take nine tenths of the time left; the last tenth is
	// for closing what is still flushing then, so that Shutdown returns
	// within ctx's deadline.
	var force <-chan time.Time
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		t := time.NewTimer(left - left/10)
		defer t.Stop()
		force = t.C
	}
	select {
	case <-finished:
		s.logShutdown()
		return nil
	case <-ctx.Done():
	case <-force:
	}
	s.mu.Lock()
	select {
	case <-s.forced:
	default:
		close(s.forced)
	}
	s.mu.Unlock()
	for _, l := range all {
		for _, c := range l.connections() {
			c.close(ReasonShutdown, "shutdown_timeout reached")
		}
	}
	// Closing the sockets ends every loop at once; wait for that, within
	// the deadline.
	select {
	case <-finished:
	case <-ctx.Done():
	}
	s.logShutdown()
	return context.DeadlineExceeded
}

func (s *Server) logShutdown() {
	st := s.Stats()
	s.log.Info("connections closed", "frames_forwarded", st.Frames.Forwarded,
		"frames_undelivered_at_shutdown", st.Frames.Dropped[DropShutdown])
}

func listenerList(m map[string]*listener) []*listener {
	ls := make([]*listener, 0, len(m))
	for _, l := range m {
		ls = append(ls, l)
	}
	return ls
}

// flush runs on the read loop of a connection that stopped reading because
// the server is shutting down: it waits until the connection's queue has
// been written out, or until Shutdown's deadline, and closes it.
func (s *Server) flush(c *conn) {
	w := c.waiterFor()
	for !c.closed() && !c.out.awaitEmpty(w) {
		select {
		case <-w.C:
		case <-s.forced:
			c.close(ReasonShutdown, "shutdown_timeout reached")
			return
		}
	}
	c.close(ReasonShutdown, "")
}

// debugging reports whether debug logs are on. Per-connection debug lines
// are built only then: their arguments (addresses formatted as strings,
// values boxed for slog) cost allocations at every login and refusal even
// when the line is dropped.
func (s *Server) debugging() bool { return s.log.Enabled(context.Background(), slog.LevelDebug) }

// Addrs returns the bound address of each listener, by name.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]net.Addr, len(s.listeners))
	for name, l := range s.listeners {
		m[name] = l.ln.Addr()
	}
	return m
}

// Stats returns a snapshot of the server's counters. Every counter in it is
// monotonic across calls, including across listener removal.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	var st Stats
	st.Frames = s.retired
	for _, l := range s.stopped {
		l.stats(&st.Frames)
	}
	for _, l := range s.listeners {
		st.Listeners = append(st.Listeners, l.stats(&st.Frames))
	}
	s.mu.Unlock()

	sort.Slice(st.Listeners, func(i, j int) bool { return st.Listeners[i].Name < st.Listeners[j].Name })
	st.Clients = s.reg.Len()
	st.Kicks = s.kicks.Load()
	for i := range st.Disconnects {
		st.Disconnects[i] = s.disconnects[i].Load()
	}
	st.IdleParks = s.idleParks.Load()
	st.Upgrades = s.upgrades.Load()
	return st
}
