// Package daemon runs relayd as a long-lived process: it starts the server
// and its logging from a configuration, reloads them all-or-nothing on SIGHUP
// or when the config file changes, rotates logs on SIGUSR1, drains on
// SIGUSR2 (for rolling restarts) and shuts down gracefully on SIGTERM or
// SIGINT.
package daemon

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/relayd/relayd/config"
	"github.com/relayd/relayd/internal/cluster"
	"github.com/relayd/relayd/internal/logging"
	"github.com/relayd/relayd/internal/metrics"
	"github.com/relayd/relayd/internal/reload"
	"github.com/relayd/relayd/internal/server"
)

// Daemon is a running relayd.
type Daemon struct {
	// Static after construction.
	path    string // config file; "" when running on built-in defaults
	version string
	log     *logging.Logger
	srv     *server.Server
	reg     *registrySwitch // the registry srv uses: local, or a cluster over it
	handler http.Handler    // admin endpoints
	started time.Time
	sigs    chan os.Signal // SIGHUP, SIGTERM, SIGINT, SIGUSR1, SIGUSR2, from Start on

	ready        atomic.Bool // every listener is bound and not shutting down: /readyz
	pprof        atomic.Bool // [admin] pprof: /debug/pprof/ is served
	reloadOK     atomic.Uint64
	reloadFailed atomic.Uint64
	lastReloadOK atomic.Bool
	lastReloadAt atomic.Int64 // unix nanoseconds of the last successful (re)load
	shuttingDown atomic.Bool
	draining     atomic.Bool  // SIGUSR2 came: no reload, no watching, not ready
	drainLeft    atomic.Int64 // connections the drain has still to close, for STATUS=
	stopping     func()       // tests: called as the relay starts to stop

	cluster atomic.Pointer[cluster.Cluster] // nil without [cluster]

	mu      sync.Mutex      // serializes reloads and shutdown
	cfg     *config.Config  // guarded by mu; the configuration in effect
	admin   *metrics.Admin  // guarded by mu; nil when [admin] is absent
	watcher *reload.Watcher // guarded by mu; nil when not watching
}

// Start sets up logging and binds every listener of cfg. An error means
// nothing is left running.
func Start(cfg *config.Config, stderr io.Writer, version string) (*Daemon, error) {
	// Catch signals before anything is announced: a SIGTERM right after
	// "relayd started" must shut down gracefully, not kill the process.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGUSR2)
	log, err := logging.New(cfg.Log, stderr)
	if err != nil {
		signal.Stop(sigs)
		return nil, err
	}
	d := &Daemon{
		sigs:    sigs,
		path:    cfg.File,
		version: version,
		log:     log,
		reg:     newRegistrySwitch(),
		cfg:     cfg,
		started: time.Now(),
	}
	d.srv = server.New(log.Logger, d.reg)
	d.pprof.Store(cfg.Admin != nil && cfg.Admin.Pprof)
	d.handler = metrics.Handler(metrics.NewRegistry(metrics.Sources{
		Server:  d.srv.Stats,
		Cluster: d.clusterStats,
		Reloads: d.Reloads,
		Version: version,
	}), metrics.Endpoints{
		Ready:   d.ready.Load,
		Clients: d.srv.Clients,
		Kick:    d.srv.Kick,
		Pprof:   d.pprof.Load,
	})

	// The admin listener comes up first, so /readyz answers 503 until
	// every relay listener is bound.
	if cfg.Admin != nil {
		if d.admin, err = metrics.Listen(cfg.Admin.Address, cfg.Admin.WebConfigFile, d.handler, log.Logger); err != nil {
			signal.Stop(sigs)
			_ = log.Close()
			return nil, err
		}
	}
	cl, err := d.joinCluster(cfg)
	if err != nil {
		signal.Stop(sigs)
		d.closeAdmin(d.admin)
		_ = log.Close()
		return nil, err
	}
	if cl != nil {
		d.reg.set(cl)
		d.cluster.Store(cl)
	}
	if err := d.srv.Apply(cfg); err != nil {
		signal.Stop(sigs)
		if cl != nil {
			_ = cl.Close()
		}
		d.closeAdmin(d.admin)
		_ = log.Close()
		return nil, err
	}
	// Announced only now that everything is bound: a start that fails
	// logs no "started" line.
	if d.admin != nil {
		log.Info("admin listener started", "address", d.admin.Addr().String())
	}
	d.ready.Store(true)
	d.lastReloadOK.Store(true)
	d.lastReloadAt.Store(time.Now().UnixNano())
	source := d.path
	if source == "" {
		source = "built-in defaults"
	}
	log.Info("relayd started", "version", version, "config", source, "listeners", len(cfg.Listeners))
	return d, nil
}

// Server returns the relay server.
func (d *Daemon) Server() *server.Server { return d.srv }

// AdminAddr returns the admin listener's address, nil when it is disabled.
func (d *Daemon) AdminAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.admin == nil {
		return nil
	}
	return d.admin.Addr()
}

func (d *Daemon) closeAdmin(a *metrics.Admin) {
	if a == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = a.Close(ctx)
}

// Run handles signals and config-file changes until a shutdown signal
// arrives, a drain (SIGUSR2) completes or ctx is done, then shuts down.
func (d *Daemon) Run(ctx context.Context) error {
	d.syncWatcher()
	// Ready only now: every listener is bound and SIGHUP is handled.
	d.notify("READY=1", d.status(""))
	statusTick := time.NewTicker(statusInterval)
	defer statusTick.Stop()
	trim, trimTick := newMemTrim(), time.NewTicker(time.Second)
	defer trimTick.Stop()
	var dr *drain // nil until SIGUSR2
	for {
		select {
		case <-ctx.Done():
			dr.stop()
			return d.Shutdown("context done")
		case <-statusTick.C:
			d.notify(d.status(""))
		case <-trimTick.C:
			var headroom uint64
			if d.cluster.Load() != nil {
				headroom = clusterHeadroom
			}
			if free := trim.maybe(headroom); free > 0 {
				d.log.Debug("returned free heap to the OS", "bytes", free)
			}
		case <-d.changes():
			_ = d.Reload("file change")
		case err := <-dr.finished():
			dr.ended = true
			dr.stop()
			if err != nil {
				d.log.Warn("drain ended early", "error", err)
			} else {
				d.log.Info("drained: every connection is closed")
			}
			return d.Shutdown("drain complete")
		case sig := <-d.sigs:
			switch sig {
			case syscall.SIGHUP:
				_ = d.Reload("SIGHUP")
			case syscall.SIGUSR1:
				if err := d.log.Rotate(); err != nil {
					d.log.Error("log rotation failed", "error", err)
				} else {
					d.log.Info("log rotated", "trigger", "SIGUSR1")
				}
			case syscall.SIGUSR2:
				if dr != nil {
					d.log.Info("already draining; SIGTERM shuts down at once", "connections_left", d.drainLeft.Load())
					continue
				}
				dr = d.startDrain()
			default:
				// During a drain too: the connections still open are
				// closed now, gracefully, as at any shutdown.
				dr.stop()
				return d.Shutdown(sig.String())
			}
		}
	}
}

// drain is a Server.Drain running in its own goroutine, so that Run still
// answers signals meanwhile.
type drain struct {
	done   chan error // receives Drain's result, once
	cancel context.CancelFunc
	ended  bool // done has been received from; owned by Run
}

// startDrain makes /readyz answer 503, stops reloads, and starts closing
// the connections spread over drain_period.
func (d *Daemon) startDrain() *drain {
	d.ready.Store(false)
	d.draining.Store(true)
	d.syncWatcher()
	d.mu.Lock()
	period := d.cfg.Server.DrainPeriod.D()
	d.mu.Unlock()
	d.drainLeft.Store(int64(connections(d.srv.Stats())))
	d.log.Info("draining", "signal", "SIGUSR2", "connections", d.drainLeft.Load(), "period", period.String())
	d.notify(d.status(""))

	ctx, cancel := context.WithCancel(context.Background())
	dr := &drain{done: make(chan error, 1), cancel: cancel}
	go func() { dr.done <- d.srv.Drain(ctx, period, d.drainProgress()) }()
	return dr
}

// finished is the channel the drain's result arrives on; nil (never ready)
// when there is no drain or its result was taken.
func (dr *drain) finished() <-chan error {
	if dr == nil || dr.ended {
		return nil
	}
	return dr.done
}

// stop cancels the drain and waits for its goroutine; a no-op without one.
func (dr *drain) stop() {
	if dr == nil {
		return
	}
	dr.cancel()
	if !dr.ended {
		<-dr.done
		dr.ended = true
	}
}

// drainStatusEvery bounds how often a drain updates STATUS=: closes may
// come much faster than anyone reads systemctl status.
const drainStatusEvery = 250 * time.Millisecond

// drainProgress returns Drain's progress function: it records how many
// connections are left and tells systemd, at most every drainStatusEvery
// (the first STATUS= went out as the drain started), and always when none
// is left.
func (d *Daemon) drainProgress() func(left int) {
	var mu sync.Mutex
	last := time.Now()
	return func(left int) {
		d.drainLeft.Store(int64(left))
		mu.Lock()
		defer mu.Unlock()
		if left > 0 && time.Since(last) < drainStatusEvery {
			return
		}
		last = time.Now()
		d.notify(d.status(""))
	}
}

// changes returns the channel of config-file changes, nil when not watching.
func (d *Daemon) changes() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watcher == nil {
		return nil
	}
	return d.watcher.Changed()
}

// syncWatcher starts or stops watching the config file to match [reload] watch.
func (d *Daemon) syncWatcher() {
	d.mu.Lock()
	defer d.mu.Unlock()
	want := d.path != "" && d.cfg.Reload.Watch && !d.shuttingDown.Load() && !d.draining.Load()
	switch {
	case want && d.watcher == nil:
		w, err := reload.Watch(d.path, reload.DefaultSettle, d.log.Logger)
		if err != nil {
			d.log.Error("cannot watch the config file; reload with SIGHUP", "error", err)
			return
		}
		d.watcher = w
	case !want && d.watcher != nil:
		_ = d.watcher.Close()
		d.watcher = nil
	}
}

// statusInterval is how often the systemd STATUS= line is refreshed.
const statusInterval = 10 * time.Second

// ErrDraining is Reload's answer during a drain: a reload could start
// listeners the drain has stopped, and the process is about to exit anyway.
var ErrDraining = errors.New("draining: reload refused; the next process reads the new configuration")

// Reload loads the config file again and applies it all-or-nothing: if any
// step fails, the running configuration stays exactly as it was.
func (d *Daemon) Reload(trigger string) error {
	if d.draining.Load() {
		d.log.Warn("reload ignored while draining", "trigger", trigger)
		return ErrDraining
	}
	d.notify("RELOADING=1", monotonicUsec())
	err := d.reload(trigger)
	d.syncWatcher()
	if err != nil {
		d.notify("READY=1", d.status("reload failed: "+oneLine(err.Error())))
	} else {
		d.notify("READY=1", d.status("reload succeeded"))
	}
	return err
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

func (d *Daemon) reload(trigger string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.path == "" {
		d.log.Info("reload requested but relayd runs on built-in defaults: nothing to reload", "trigger", trigger)
		return nil
	}
	d.log.Info("reloading configuration", "trigger", trigger, "file", d.path)
	cfg, err := config.Load(d.path)
	if err == nil {
		err = d.apply(cfg)
	}
	if err != nil {
		d.reloadFailed.Add(1)
		d.lastReloadOK.Store(false)
		d.log.Error("reload failed; the running configuration is unchanged", "trigger", trigger, "error", err)
		return err
	}
	changed := describe(d.cfg, cfg)
	d.cfg = cfg
	d.reloadOK.Add(1)
	d.lastReloadOK.Store(true)
	d.lastReloadAt.Store(time.Now().UnixNano())
	d.log.Info("configuration reloaded", "trigger", trigger, "changed", changed)
	return nil
}

// apply prepares every component for cfg, then commits them together.
func (d *Daemon) apply(cfg *config.Config) error {
	commitLog, err := d.log.Prepare(cfg.Log)
	if err != nil {
		return err
	}
	// A new admin address is bound before anything changes; the old
	// listener is closed only once everything else has been applied.
	admin, stale := d.admin, (*metrics.Admin)(nil)
	if !d.adminUnchanged(cfg.Admin) {
		stale, admin = d.admin, nil
		if cfg.Admin != nil {
			if admin, err = metrics.Listen(cfg.Admin.Address, cfg.Admin.WebConfigFile, d.handler, d.log.Logger); err != nil {
				return err
			}
		}
	}
	var joined *cluster.Cluster
	swapCluster := clusterChanged(d.cfg, cfg)
	if swapCluster {
		if joined, err = d.joinCluster(cfg); err != nil {
			if admin != d.admin {
				d.closeAdmin(admin)
			}
			return err
		}
	}
	if err := d.srv.Apply(cfg); err != nil {
		if admin != d.admin {
			d.closeAdmin(admin)
		}
		if joined != nil {
			_ = joined.Close()
		}
		return err
	}
	if swapCluster {
		if joined != nil {
			d.reg.set(joined)
			joined.AdoptLocal() // logins that reached the previous registry after Start
		} else {
			d.reg.set(d.reg.local)
		}
		if old := d.cluster.Swap(joined); old != nil {
			_ = old.Close()
		}
	}
	commitLog()
	d.pprof.Store(cfg.Admin != nil && cfg.Admin.Pprof)
	if admin != d.admin {
		d.closeAdmin(stale)
		d.admin = admin
		if admin != nil {
			d.log.Info("admin listener started", "address", admin.Addr().String())
		} else {
			d.log.Info("admin listener stopped")
		}
	}
	return nil
}

// adminUnchanged reports whether the running admin listener already serves next.
func (d *Daemon) adminUnchanged(next *config.Admin) bool {
	if d.admin == nil || next == nil {
		return d.admin == nil && next == nil
	}
	return server.SameAddress(d.cfg.Admin.Address, d.admin.Addr(), next.Address) &&
		d.cfg.Admin.WebConfigFile == next.WebConfigFile
}

func sameAdmin(a, b *config.Admin) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// describe lists what differs, for the reload log line: global sections,
// and listeners added or removed by name (the server logs what changed in
// the listeners it kept).
func describe(old, new *config.Config) string {
	var c []string
	if old.Log != new.Log {
		c = append(c, "log")
	}
	if !sameAdmin(old.Admin, new.Admin) {
		c = append(c, "admin")
	}
	if old.Reload != new.Reload {
		c = append(c, "reload")
	}
	if old.Server != new.Server {
		c = append(c, "server")
	}
	if !reflect.DeepEqual(old.Auth, new.Auth) {
		c = append(c, "auth")
	}
	if !reflect.DeepEqual(old.Cluster, new.Cluster) {
		c = append(c, "cluster")
	}
	was := map[string]*config.Listener{}
	for i := range old.Listeners {
		was[old.Listeners[i].Name] = &old.Listeners[i]
	}
	for i := range new.Listeners {
		l := &new.Listeners[i]
		prev, ok := was[l.Name]
		switch {
		case !ok:
			c = append(c, "listener "+strconv.Quote(l.Name)+" added")
		case len(prev.Diff(l)) > 0:
			c = append(c, "listener "+strconv.Quote(l.Name))
		}
		delete(was, l.Name)
	}
	for i := range old.Listeners {
		if _, gone := was[old.Listeners[i].Name]; gone {
			c = append(c, "listener "+strconv.Quote(old.Listeners[i].Name)+" removed")
		}
	}
	if len(c) == 0 {
		return "none"
	}
	return strings.Join(c, ",")
}

// Shutdown stops accepting, closes every connection, waits up to
// shutdown_timeout for them to finish, and closes the log.
func (d *Daemon) Shutdown(why string) error {
	d.shuttingDown.Store(true)
	defer signal.Stop(d.sigs)
	d.notify("STOPPING=1")
	d.syncWatcher()
	d.mu.Lock()
	timeout := d.cfg.Server.ShutdownTimeout.D()
	d.mu.Unlock()

	d.ready.Store(false)
	d.log.Info("shutting down", "signal", why, "timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if d.stopping != nil {
		d.stopping()
	}
	err := d.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		d.log.Warn("shutdown timeout reached with connections still closing")
	}
	if cl := d.cluster.Swap(nil); cl != nil {
		_ = cl.Close() // after the server: its clients' logouts go out with the leave
	}
	d.mu.Lock()
	admin := d.admin
	d.admin = nil
	d.mu.Unlock()
	if admin != nil {
		_ = admin.Close(ctx)
	}
	d.log.Info("relayd stopped", "uptime", time.Since(d.started).Round(time.Second).String())
	return d.log.Close()
}

// Reloads returns the reload counters.
func (d *Daemon) Reloads() metrics.ReloadStats {
	return metrics.ReloadStats{
		Succeeded:   d.reloadOK.Load(),
		Failed:      d.reloadFailed.Load(),
		LastOK:      d.lastReloadOK.Load(),
		LastSuccess: time.Unix(0, d.lastReloadAt.Load()),
	}
}
