// Package logging gives relayd one *slog.Logger whose level, format and
// destination (stderr, or a file rotated by size through lumberjack) can be
// changed at run time by a reload, and rotated on demand (SIGUSR1).
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/relayd/relayd/config"
)

// Logger owns the process's log output.
type Logger struct {
	*slog.Logger // what the rest of relayd logs through; valid for the process's life

	level   slog.LevelVar
	handler atomic.Pointer[slog.Handler] // text or JSON over out
	out     *swapWriter

	mu  sync.Mutex // serializes Prepare/commit, Rotate and Close
	cfg config.Log // guarded by mu; what is in effect
}

// New returns a Logger configured by cfg; stderr is used when cfg.File is empty.
func New(cfg config.Log, stderr io.Writer) (*Logger, error) {
	l := &Logger{out: &swapWriter{stderr: stderr}}
	l.Logger = slog.New(&dispatch{l: l})
	commit, err := l.Prepare(cfg)
	if err != nil {
		return nil, err
	}
	commit()
	return l, nil
}

// Prepare checks that cfg can be applied (the log file can be opened) and
// returns the function that applies it. Nothing changes until commit is
// called, so a reload can prepare every component before committing any.
func (l *Logger) Prepare(cfg config.Log) (commit func(), err error) {
	var next io.Writer // nil: stderr
	var rot *lumberjack.Logger
	if cfg.File != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.File), 0o750); err != nil {
			return nil, fmt.Errorf("log file %s: %w", cfg.File, err)
		}
		f, err := os.OpenFile(cfg.File, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, fmt.Errorf("log file: %w", err)
		}
		_ = f.Close()
		rot = &lumberjack.Logger{
			Filename:   cfg.File,
			MaxSize:    cfg.MaxSizeMB,
			MaxBackups: cfg.MaxBackups,
			MaxAge:     cfg.MaxAgeDays,
			Compress:   cfg.Compress,
		}
		next = rot
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.out.swap(next, rot)
		opts := &slog.HandlerOptions{Level: &l.level}
		var h slog.Handler
		if cfg.Format == "json" {
			h = slog.NewJSONHandler(l.out, opts)
		} else {
			h = slog.NewTextHandler(l.out, opts)
		}
		l.handler.Store(&h)
		l.level.Set(level)
		l.cfg = cfg
	}, nil
}

// Rotate starts a new log file now; a no-op when logging to stderr.
func (l *Logger) Rotate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.rotate()
}

// Close flushes and closes the log file, if any; later logs go to stderr.
func (l *Logger) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.swap(nil, nil)
}

// dispatch forwards to the current handler, so loggers derived with With
// or WithGroup keep following reloads: it replays their derivations on the
// handler in effect.
type dispatch struct {
	l   *Logger
	ops []withOp
}

type withOp struct {
	group string      // WithGroup(group) when set
	attrs []slog.Attr // else WithAttrs(attrs)
}

func (d *dispatch) Enabled(_ context.Context, lv slog.Level) bool { return lv >= d.l.level.Level() }

func (d *dispatch) Handle(ctx context.Context, r slog.Record) error {
	h := *d.l.handler.Load()
	for _, op := range d.ops {
		if op.group != "" {
			h = h.WithGroup(op.group)
		} else {
			h = h.WithAttrs(op.attrs)
		}
	}
	return h.Handle(ctx, r)
}

func (d *dispatch) with(op withOp) *dispatch {
	return &dispatch{l: d.l, ops: append(d.ops[:len(d.ops):len(d.ops)], op)}
}

func (d *dispatch) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return d
	}
	return d.with(withOp{attrs: as})
}

func (d *dispatch) WithGroup(name string) slog.Handler {
	if name == "" {
		return d
	}
	return d.with(withOp{group: name})
}

// swapWriter is the stable io.Writer handlers write to; the destination
// behind it changes on reload without racing in-flight writes.
type swapWriter struct {
	mu     sync.Mutex
	stderr io.Writer
	w      io.Writer          // guarded by mu; nil: stderr
	rot    *lumberjack.Logger // guarded by mu; the file, when logging to one
}

func (s *swapWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return s.stderr.Write(p)
	}
	return s.w.Write(p)
}

func (s *swapWriter) swap(w io.Writer, rot *lumberjack.Logger) error {
	s.mu.Lock()
	old := s.rot
	s.w, s.rot = w, rot
	s.mu.Unlock()
	if old != nil && old != rot {
		return old.Close()
	}
	return nil
}

func (s *swapWriter) rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rot == nil {
		return nil
	}
	return s.rot.Rotate()
}
