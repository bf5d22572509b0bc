// Package daemon runs relayd as a long-lived process: it starts the server
// and its logging from a configuration, reloads them all-or-nothing on SIGHUP
// or when the config file changes, rotates logs on SIGUSR1 and shuts down
// gracefully on SIGTERM or SIGINT.
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
	handler http.Handler // admin endpoints
	started time.Time
	sigs    chan os.Signal // SIGHUP, SIGTERM, SIGINT, SIGUSR1, from Start on

	ready        atomic.Bool // every listener is bound and not shutting down: /readyz
	reloadOK     atomic.Uint64
	reloadFailed atomic.Uint64
	lastReloadOK atomic.Bool
	lastReloadAt atomic.Int64 // unix nanoseconds of the last successful (re)load
	shuttingDown atomic.Bool
	stopping     func() // tests: called as the relay starts to stop

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
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
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
		srv:     server.New(log.Logger, nil),
		cfg:     cfg,
		started: time.Now(),
	}
	d.handler = metrics.Handler(metrics.NewRegistry(metrics.Sources{
		Server:  d.srv.Stats,
		Reloads: d.Reloads,
		Version: version,
	}), d.ready.Load)

	// The admin listener comes up first, so /readyz answers 503 until
	// every relay listener is bound.
	if cfg.Admin != nil {
		if d.admin, err = metrics.Listen(cfg.Admin.Address, cfg.Admin.WebConfigFile, d.handler, log.Logger); err != nil {
			signal.Stop(sigs)
			_ = log.Close()
			return nil, err
		}
		log.Info("admin listener started", "address", d.admin.Addr().String())
	}
	if err := d.srv.Apply(cfg); err != nil {
		signal.Stop(sigs)
		d.closeAdmin(d.admin)
		_ = log.Close()
		return nil, err
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
// arrives or ctx is done, then shuts down.
func (d *Daemon) Run(ctx context.Context) error {
	d.syncWatcher()
	// Ready only now: every listener is bound and SIGHUP is handled.
	d.notify("READY=1", d.status(""))
	statusTick := time.NewTicker(statusInterval)
	defer statusTick.Stop()
	for {
		select {
		case <-ctx.Done():
			return d.Shutdown("context done")
		case <-statusTick.C:
			d.notify(d.status(""))
		case <-d.changes():
			_ = d.Reload("file change")
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
			default:
				return d.Shutdown(sig.String())
			}
		}
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
	want := d.path != "" && d.cfg.Reload.Watch && !d.shuttingDown.Load()
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

// Reload loads the config file again and applies it all-or-nothing: if any
// step fails, the running configuration stays exactly as it was.
func (d *Daemon) Reload(trigger string) error {
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
	if err := d.srv.Apply(cfg); err != nil {
		if admin != d.admin {
			d.closeAdmin(admin)
		}
		return err
	}
	commitLog()
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
