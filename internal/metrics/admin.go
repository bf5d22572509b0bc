package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/exporter-toolkit/web"
)

// Handler serves /metrics from reg, /healthz (200 while the process runs),
// /readyz (200 while e.Ready reports true, else 503) and the admin API of
// SPEC §12 from e: GET /clients, POST /clients/kick and /debug/pprof/.
func Handler(reg *prometheus.Registry, e Endpoints) http.Handler {
	mux := http.NewServeMux()
	// A collector that fails (a sandbox hiding part of /proc) must not blank
	// the whole page: serve what could be gathered.
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if e.Ready == nil || !e.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if e.Clients != nil {
		mux.HandleFunc("GET /clients", e.clients)
	}
	if e.Kick != nil {
		mux.HandleFunc("POST /clients/kick", e.kick)
	}
	mux.Handle("/debug/pprof/", pprofHandler(e.Pprof))
	return mux
}

// Admin is the admin HTTP listener.
type Admin struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when Serve has returned
}

// ValidateWebConfig checks a web_config_file (the Prometheus exporter
// web-config format: TLS, client certificates, bcrypt basic_auth_users) the
// way Listen will use it, certificates and keys included. "" is valid: plain
// HTTP.
func ValidateWebConfig(path string) error {
	if err := web.Validate(path); err != nil {
		return fmt.Errorf("admin: web_config_file %s: %w", path, err)
	}
	return nil
}

// Listen binds addr and starts serving h on it: plain HTTP when
// webConfigFile is "", else TLS and/or basic auth as that file says, through
// exporter-toolkit's web package. The file is validated first and the socket
// bound here, so a bad file or a taken address is an error now, not a log
// line later.
//
// exporter-toolkit re-reads the file while serving (web/tls_config.go,
// web/handler.go at v0.20.0): basic_auth_users and headers on every request
// (an unreadable file then answers 500, never lets a request through), the
// TLS settings and certificate on every handshake. Whether TLS is on at all,
// http2 and rate_limit are fixed at Listen: changing those needs a new
// Listen, which the caller does when the path changes.
func Listen(addr, webConfigFile string, h http.Handler, log *slog.Logger) (*Admin, error) {
	if err := ValidateWebConfig(webConfigFile); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen on %s: %w", addr, err)
	}
	a := &Admin{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		done: make(chan struct{}),
	}
	go func() {
		defer close(a.done)
		var err error
		if webConfigFile == "" {
			err = a.srv.Serve(ln)
		} else {
			// Its "Listening on"/"TLS is enabled" lines would repeat ours at
			// every start and reload: debug level; its errors stay errors.
			quiet := slog.New(infoAsDebug{log.Handler()})
			err = web.Serve(ln, a.srv, &web.FlagConfig{WebConfigFile: &webConfigFile}, quiet)
		}
		// web.Serve can fail before serving (the file broke since Listen
		// checked it), leaving the socket open: close it in every case.
		_ = ln.Close()
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin listener failed", "address", ln.Addr().String(), "error", err)
		}
	}()
	return a, nil
}

// infoAsDebug lowers Info records to Debug.
type infoAsDebug struct{ slog.Handler }

func (h infoAsDebug) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, demote(l))
}

func (h infoAsDebug) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return h.Handler.Handle(ctx, r)
}

func (h infoAsDebug) WithAttrs(as []slog.Attr) slog.Handler {
	return infoAsDebug{h.Handler.WithAttrs(as)}
}

func (h infoAsDebug) WithGroup(name string) slog.Handler {
	return infoAsDebug{h.Handler.WithGroup(name)}
}

func demote(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

// Addr returns the bound address.
func (a *Admin) Addr() net.Addr { return a.ln.Addr() }

// Close stops the listener, lets in-flight requests finish until ctx is
// done, and waits for the server goroutine.
func (a *Admin) Close(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		_ = a.srv.Close()
	}
	<-a.done
	return err
}
