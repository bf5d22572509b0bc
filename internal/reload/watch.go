// Package reload watches the configuration file so that edits reach the
// running daemon without a SIGHUP.
package reload

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultSettle is how long the file must stay quiet before a change is
// reported: editors and config managers write in bursts.
const DefaultSettle = 150 * time.Millisecond

// Watcher reports changes to one file's content.
//
// It watches directories, not the file: editors that save by writing a new
// file and renaming it over the old one, and symlink swaps such as the
// Kubernetes ConfigMap "..data" link, replace the file's inode, which a
// watch on the file itself would lose. Any event in the file's directory (or
// in its symlink target's) is followed, once things settle, by a comparison
// of the file's content with what was last seen.
type Watcher struct {
	path    string
	settle  time.Duration
	log     *slog.Logger
	fs      *fsnotify.Watcher
	changed chan struct{}
	done    chan struct{}

	// Owned by the run goroutine.
	sum     [sha256.Size]byte // content last seen
	watched map[string]bool   // directories under watch
}

// Watch starts watching path. Changes arrive on Changed; Close stops.
func Watch(path string, settle time.Duration, log *slog.Logger) (*Watcher, error) {
	fs, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		_ = fs.Close()
		return nil, err
	}
	w := &Watcher{
		path:    abs,
		settle:  settle,
		log:     log,
		fs:      fs,
		changed: make(chan struct{}, 1),
		done:    make(chan struct{}),
		watched: map[string]bool{},
	}
	w.sum, _ = w.read()
	if err := w.watchDirs(); err != nil {
		_ = fs.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// Changed receives a value each time the file's content changed. Changes
// that happen while a value is pending are coalesced into it.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// Close stops watching and waits for the watcher's goroutine to end.
func (w *Watcher) Close() error {
	err := w.fs.Close()
	<-w.done
	return err
}

func (w *Watcher) read() ([sha256.Size]byte, error) {
	b, err := os.ReadFile(w.path)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// watchDirs watches the file's directory and, when the file is a symlink,
// the directory of what it resolves to now.
func (w *Watcher) watchDirs() error {
	dirs := []string{filepath.Dir(w.path)}
	if real, err := filepath.EvalSymlinks(w.path); err == nil {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if w.watched[d] {
			continue
		}
		if err := w.fs.Add(d); err != nil {
			return fmt.Errorf("watch %s: %w", d, err)
		}
		w.watched[d] = true
	}
	return nil
}

func (w *Watcher) run() {
	defer close(w.done)
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		select {
		case _, ok := <-w.fs.Events:
			if !ok {
				return
			}
			settle.Reset(w.settle) // wait for the burst to end
		case err, ok := <-w.fs.Errors:
			if !ok {
				return
			}
			w.log.Warn("config watch error", "error", err)
		case <-settle.C:
			if err := w.watchDirs(); err != nil { // a symlink may point elsewhere now
				w.log.Warn("config watch", "error", err)
			}
			sum, err := w.read()
			if err != nil || bytes.Equal(sum[:], w.sum[:]) {
				continue // mid-replacement or unchanged: a later event will tell
			}
			w.sum = sum
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
}
