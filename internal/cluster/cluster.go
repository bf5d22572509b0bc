// Package cluster lets several relayd nodes share one registry through
// NATS (SPEC §9). Each node keeps a replica of who is logged in where (the
// directory, directory.go) and sends the frames for clients on another node
// to that node's subject, many per NATS message (link.go); the receiving
// node hands them to its local connections and credits them back, which
// paces senders to what their receivers take (inbound.go). docs/CLUSTER.md
// has the design, the NATS settings and the failure modes.
package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/relayd/relayd/internal/registry"
)

// Options configure a Cluster; they mirror the [cluster] section.
type Options struct {
	Name        string   // cluster name: subjects are relayd.<Name>.…
	NodeID      string   // this node's name; empty: the host name
	URLs        []string // NATS servers of one NATS cluster
	Credentials string   // a NATS .creds file, or:
	User        string
	Password    string
	TLSCA       string // NATS over TLS: the CA, and a client certificate and key for mTLS
	TLSCert     string
	TLSKey      string
	NodeTimeout time.Duration // a node not heard from this long is gone; 0: 5s
	// MaxFrame is the largest frame accepted from another node, which
	// bounds reassembly memory; 0: 8 MiB + 522 (the default max_payload).
	MaxFrame int
	// Window is how many bytes of frames one node sends one remote
	// receiver before the receiver's node credits them back; 0: 1 MiB.
	Window int
	// NodeWindow is how many bytes of frames one node sends another, to
	// all its receivers together, before that node acknowledges them; with
	// one frame more it must stay below the NATS server's max_pending.
	// 0: 8 MiB.
	NodeWindow int
	// OutboundBuffer bounds the frames waiting to be published to one
	// node; 0: 16 MiB.
	OutboundBuffer int
	// CreditDelay is how long credits for a node wait for frames going to
	// it, to go out with them, unless they add up to a quarter of a
	// window first; 0: 1ms.
	CreditDelay time.Duration
	Log         *slog.Logger
}

// Stats are the cluster's counters and gauges.
type Stats struct {
	Connected      bool   // connected to NATS
	Nodes          int    // live nodes, this one included
	RemoteClients  int    // IDs logged in on other nodes
	FramesSent     uint64 // frames published to other nodes
	FramesReceived uint64 // frames received from other nodes
	Kicks          uint64 // local connections kicked by a login elsewhere
	// Frames received from other nodes and not delivered, by reason:
	// no such client here (offline), the receiver is stalled
	// (queue_full), the receiver closed with frames pending for it
	// (closed), malformed.
	DroppedOffline, DroppedQueueFull, DroppedClosed, DroppedMalformed uint64
	// Frames accepted for another node and never published: NATS
	// failed the publish (cluster_down), or the node or this one left
	// first (shutdown).
	DroppedDown, DroppedShutdown uint64
	Resyncs                      uint64 // directory snapshots asked for
	CreditResets                 uint64 // windows started over after their credits were lost
}

// Cluster is a registry.Registry shared with the other nodes of a cluster.
type Cluster struct {
	// Static after New.
	opt        Options
	log        *slog.Logger
	instance   string // random per process; names this node's subjects
	prefix     string // relayd.<name>.
	dir        *directory
	window     int64 // per remote receiver
	nodeWindow int64 // per remote node
	outMax     int
	maxFrame   int
	pendingMax int
	waitMax    time.Duration // Waiter.Max for a sender paced by a remote receiver
	tlsConfig  *tls.Config

	// Set by Start.
	nc        *nats.Conn
	dirKick   chan struct{} // capacity 1: the directory has records to publish
	done      chan struct{} // closed by Close
	dirDone   chan struct{} // closed when the directory publisher has stopped
	started   bool
	maxMsg    atomic.Int64 // largest message published: the server's max_payload, at most maxMessage
	connected atomic.Bool

	startMu   sync.Mutex
	closed    bool // guarded by startMu: no goroutine may start
	wg        sync.WaitGroup
	closeOnce sync.Once

	// Owned by the data subscription's goroutine.
	probe   *registry.Waiter // passed to a local receiver, kept by it when it answers Wait
	cs      []byte           // credit entries for the message being handled
	csLast  int              // offset of the last entry in cs; -1 when none
	csBytes int64            // bytes cs credits

	// testLoseData, set by tests, loses the data messages it returns true
	// for, as the network may.
	testLoseData atomic.Pointer[func(*nats.Msg) bool]

	inMu     sync.Mutex
	inbound  map[string]*inbound // receivers with frames pending, guarded by inMu
	nInbound atomic.Int64        // len(inbound)

	framesSent, framesReceived, kicks                     atomic.Uint64
	dropOffline, dropQueueFull, dropClosed, dropMalformed atomic.Uint64
	dropDown, dropShutdown, creditResets                  atomic.Uint64
}

const (
	// maxMessage caps one NATS message even where the server would take
	// more, so that one batch never holds up the next for long.
	maxMessage = 1 << 20
	// connectWait is how long Start keeps trying unreachable servers.
	defaultConnectWait = 3 * time.Second
)

var connectWait = defaultConnectWait // a variable for tests

// New validates opt and returns a Cluster that keeps its local logins in
// local. It does not contact NATS; Start does. local may already hold
// logins (a Cluster replacing another at a reload): Start announces them.
func New(opt Options, local *registry.Local) (*Cluster, error) {
	if opt.Name == "" {
		return nil, errors.New("cluster: name must not be empty")
	}
	for _, r := range opt.Name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return nil, fmt.Errorf("cluster: name %q: use only letters, digits, '-' and '_' (it is a NATS subject token)", opt.Name)
		}
	}
	if opt.NodeID == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("cluster: node_id is empty and the host name is unknown: %v", err)
		}
		opt.NodeID = h
	}
	if len(opt.NodeID) > 255 {
		return nil, fmt.Errorf("cluster: node_id is %d bytes, more than 255", len(opt.NodeID))
	}
	if len(opt.URLs) == 0 {
		return nil, errors.New("cluster: nats_urls must name at least one NATS server")
	}
	for _, u := range opt.URLs {
		if strings.ContainsAny(u, ", \t") || u == "" {
			return nil, fmt.Errorf("cluster: nats_urls: %q is not one URL", u)
		}
	}
	if opt.Credentials != "" && (opt.User != "" || opt.Password != "") {
		return nil, errors.New("cluster: set nats_credentials or nats_user/nats_password, not both")
	}
	if opt.Credentials != "" {
		if _, err := os.ReadFile(opt.Credentials); err != nil {
			return nil, fmt.Errorf("cluster: nats_credentials: %w", err)
		}
	}
	if opt.NodeTimeout == 0 {
		opt.NodeTimeout = 5 * time.Second
	}
	if opt.NodeTimeout < 100*time.Millisecond {
		return nil, fmt.Errorf("cluster: node_timeout %v is below 100ms", opt.NodeTimeout)
	}
	if opt.MaxFrame == 0 {
		opt.MaxFrame = 8<<20 + 522
	}
	if opt.Window == 0 {
		opt.Window = 1 << 20
	}
	if opt.NodeWindow == 0 {
		opt.NodeWindow = 8 << 20
	}
	if opt.OutboundBuffer == 0 {
		opt.OutboundBuffer = 16 << 20
	}
	if opt.CreditDelay == 0 {
		opt.CreditDelay = time.Millisecond
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cluster{
		opt:        opt,
		log:        opt.Log.With("cluster", opt.Name, "node", opt.NodeID),
		instance:   newInstance(),
		prefix:     "relayd." + opt.Name + ".",
		window:     int64(opt.Window),
		nodeWindow: int64(opt.NodeWindow),
		outMax:     opt.OutboundBuffer,
		maxFrame:   opt.MaxFrame,
		pendingMax: 4*opt.Window + opt.MaxFrame,
		waitMax:    opt.NodeTimeout,
		probe:      registry.NewWaiter(),
		csLast:     -1,
		inbound:    make(map[string]*inbound),
		dirKick:    make(chan struct{}, 1),
		done:       make(chan struct{}),
		dirDone:    make(chan struct{}),
	}
	if err := c.loadTLS(); err != nil {
		return nil, err
	}
	c.dir = newDirectory(c.instance, opt.NodeID, local, opt.NodeTimeout*7/8, maxMessage/2, hooks{
		kick:   c.kick,
		nodeUp: c.nodeUp,
		nodeDown: func(n *node) {
			if n.link != nil {
				n.link.close()
			}
		},
		announce: c.announce,
	})
	c.maxMsg.Store(maxMessage)
	return c, nil
}

func newInstance() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *Cluster) loadTLS() error {
	o := c.opt
	if o.TLSCA == "" && o.TLSCert == "" && o.TLSKey == "" {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return fmt.Errorf("cluster: nats_tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("cluster: nats_tls_ca: %s holds no PEM certificate", o.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("cluster: nats_tls_cert and nats_tls_key go together")
	}
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return fmt.Errorf("cluster: nats_tls_cert/nats_tls_key: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	c.tlsConfig = cfg
	return nil
}

func (c *Cluster) natsOptions() []nats.Option {
	o := c.opt
	opts := []nats.Option{
		nats.Name("relayd " + o.Name + " " + o.NodeID),
		nats.NoEcho(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// Publishes fail while reconnecting instead of queueing: frames
		// then count as cluster_down, and the directory resyncs anyway.
		nats.ReconnectBufSize(-1),
		nats.Timeout(2 * time.Second),
		// Notice a dead server (or a cut link to it) about as fast as a
		// dead node.
		nats.PingInterval(max(o.NodeTimeout/2, 100*time.Millisecond)),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(c.onDisconnect),
		nats.ReconnectHandler(c.onReconnect),
		nats.ErrorHandler(c.onAsyncError),
	}
	if o.Credentials != "" {
		opts = append(opts, nats.UserCredentials(o.Credentials))
	}
	if o.User != "" || o.Password != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if c.tlsConfig != nil {
		opts = append(opts, nats.Secure(c.tlsConfig.Clone()))
	}
	return opts
}

// Start connects to NATS, joins the cluster and asks the other nodes for
// their logins. It fails when no server is reachable within a few seconds
// or a server refuses the credentials; the error is one line.
func (c *Cluster) Start(ctx context.Context) error {
	urls := strings.Join(c.opt.URLs, ",")
	deadline := time.Now().Add(connectWait)
	var nc *nats.Conn
	for {
		var err error
		nc, err = nats.Connect(urls, c.natsOptions()...)
		if err == nil {
			break
		}
		if isAuthError(err) {
			return fmt.Errorf("cluster: NATS refused credentials: %v", err)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("cluster: cannot reach NATS at %s: %v", urls, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	c.nc = nc
	c.maxMsg.Store(min(nc.MaxPayload(), maxMessage))
	subs := []struct {
		subj string
		cb   nats.MsgHandler
	}{
		{c.prefix + "dir.*", c.onDir},
		{c.prefix + "data." + c.instance + ".*", c.onData},
		{c.prefix + "credit." + c.instance + ".*", c.onCredit},
	}
	for _, s := range subs {
		sub, err := nc.Subscribe(s.subj, s.cb)
		if err == nil {
			// The handlers never block, so messages queue only while this
			// process is short of CPU; a slow consumer loses messages.
			err = sub.SetPendingLimits(1<<20, 1<<30)
		}
		if err != nil {
			nc.Close()
			return fmt.Errorf("cluster: subscribe to %s: %v", s.subj, err)
		}
	}
	if err := nc.FlushTimeout(connectWait); err != nil {
		nc.Close()
		return fmt.Errorf("cluster: cannot reach NATS at %s: %v", urls, err)
	}
	c.connected.Store(true)
	c.started = true
	for range 2 { // publishDirectory and beat
		if !c.startGoroutine() {
			nc.Close()
			return errors.New("cluster: closed before it started")
		}
	}
	go c.publishDirectory()
	go c.beat()
	c.dir.adoptLocal()
	c.dir.resyncAll()
	c.log.Info("joined cluster", "nats", nc.ConnectedUrlRedacted(), "max_payload", nc.MaxPayload())
	return nil
}

func isAuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || strings.Contains(strings.ToLower(err.Error()), "authorization")
}

// startGoroutine accounts for a goroutine about to start, unless the
// cluster is closing.
func (c *Cluster) startGoroutine() bool {
	c.startMu.Lock()
	defer c.startMu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// Close leaves the cluster: it tells the other nodes, which drop this
// node's clients at once, and stops every goroutine. It leaves the local
// registry as it is.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		close(c.done)
		if c.started {
			<-c.dirDone
			if c.nc.IsConnected() {
				c.publishDir(c.dir.leave())
				_ = c.nc.FlushTimeout(time.Second)
			}
		}
		c.startMu.Lock()
		c.closed = true
		c.startMu.Unlock()
		c.dir.dropAll()
		if c.nc != nil {
			c.nc.Close()
		}
		c.connected.Store(false)
		c.wg.Wait()
	})
	return nil
}

// publishDirectory publishes directory records as they come.
func (c *Cluster) publishDirectory() {
	defer c.wg.Done()
	defer close(c.dirDone)
	var spare []byte
	for {
		select {
		case <-c.dirKick:
		case <-c.done:
			return
		}
		out := c.dir.takeOutbox(spare)
		if c.connected.Load() {
			c.publishDir(out)
		}
		spare = reuse(out)
	}
}

// publishDir publishes directory records in messages that fit.
func (c *Cluster) publishDir(b []byte) {
	subj := c.prefix + "dir." + c.instance
	max := int(c.maxMsg.Load())
	start := 0
	for i := 0; i < len(b); {
		n := dirRecordLen(b[i:])
		if i+n-start > max && i > start {
			_ = c.nc.Publish(subj, b[start:i])
			start = i
		}
		i += n
	}
	if len(b) > start {
		_ = c.nc.Publish(subj, b[start:])
	}
}

// beat announces this node every quarter of node_timeout and drops the
// nodes gone silent.
func (c *Cluster) beat() {
	defer c.wg.Done()
	t := time.NewTicker(c.opt.NodeTimeout / 8)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-t.C:
		case <-c.done:
			return
		}
		c.dir.expire()
		if i%2 == 0 {
			c.dir.beat()
		}
	}
}

func (c *Cluster) announce() {
	select {
	case c.dirKick <- struct{}{}:
	default:
	}
}

func (c *Cluster) kick(p registry.Peer) {
	c.kicks.Add(1)
	p.Kick()
}

// nodeUp gives a newly heard node a link. Called with directory.mu held.
func (c *Cluster) nodeUp(n *node) {
	n.link = newLink(c, n)
	if !c.startGoroutine() {
		n.link.close()
		return
	}
	go n.link.run()
	c.log.Info("node joined", "peer", n.instance)
}

func (c *Cluster) onDir(m *nats.Msg) {
	if !c.dir.receive(lastToken(m.Subject), m.Data) {
		c.dropMalformed.Add(1)
	}
}

func (c *Cluster) onDisconnect(_ *nats.Conn, err error) {
	c.connected.Store(false)
	c.forEachLink((*link).wakeWaiters) // they offer again and get Down
	if err != nil {
		c.log.Warn("lost NATS; frames to other nodes are dropped until it is back", "err", err)
	}
}

func (c *Cluster) onReconnect(nc *nats.Conn) {
	c.maxMsg.Store(min(nc.MaxPayload(), maxMessage))
	// Frames and credits in flight when the connection broke are lost.
	c.dir.forEachRemote(func(p *remotePeer) { p.win.reset() })
	c.forEachLink(func(l *link) { l.resetWindow() })
	c.connected.Store(true)
	c.dir.resyncAll()
	c.log.Info("NATS is back; resyncing the directory", "nats", nc.ConnectedUrlRedacted())
}

func (c *Cluster) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subj := ""
	if sub != nil {
		subj = sub.Subject
	}
	c.log.Warn("NATS error", "subject", subj, "err", err)
}

func (c *Cluster) forEachLink(f func(*link)) {
	c.dir.mu.Lock()
	links := make([]*link, 0, len(c.dir.nodes))
	for _, n := range c.dir.nodes {
		if n.link != nil {
			links = append(links, n.link)
		}
	}
	c.dir.mu.Unlock()
	for _, l := range links {
		f(l)
	}
}

// Register implements registry.Registry: last login wins, here and on
// every other node.
func (c *Cluster) Register(ctx context.Context, id string, p registry.Peer) (registry.Peer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.dir.login(id, p), nil
}

// AdoptLocal announces the local logins this cluster has not recorded:
// those made through another registry over the same local one until the
// caller switched to this cluster. Start adopts what is there then; call it
// again once logins can no longer reach the previous registry.
func (c *Cluster) AdoptLocal() { c.dir.adoptLocal() }

// Unregister implements registry.Registry.
func (c *Cluster) Unregister(id string, p registry.Peer) { c.dir.logout(id, p) }

// Lookup implements registry.Registry. A local login is found first, with
// no more cost than on a single node.
func (c *Cluster) Lookup(id []byte) (registry.Peer, bool) {
	if p, ok := c.dir.local.Lookup(id); ok {
		return p, true
	}
	if p, ok := c.dir.lookupRemote(id); ok {
		return p, true
	}
	return nil, false
}

// Len implements registry.Registry: the IDs logged in on this node.
func (c *Cluster) Len() int { return c.dir.local.Len() }

// Stats returns the cluster's counters.
func (c *Cluster) Stats() Stats {
	return Stats{
		Connected:        c.connected.Load(),
		Nodes:            int(c.dir.live.Load()) + 1,
		RemoteClients:    int(c.dir.remote.Load()),
		FramesSent:       c.framesSent.Load(),
		FramesReceived:   c.framesReceived.Load(),
		Kicks:            c.kicks.Load(),
		DroppedOffline:   c.dropOffline.Load(),
		DroppedQueueFull: c.dropQueueFull.Load(),
		DroppedClosed:    c.dropClosed.Load(),
		DroppedMalformed: c.dropMalformed.Load(),
		DroppedDown:      c.dropDown.Load(),
		DroppedShutdown:  c.dropShutdown.Load(),
		Resyncs:          c.dir.resyncs.Load(),
		CreditResets:     c.creditResets.Load(),
	}
}

var _ registry.Registry = (*Cluster)(nil)
