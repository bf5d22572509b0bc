package reload

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const settle = 50 * time.Millisecond

func watch(t *testing.T, path string) *Watcher {
	t.Helper()
	w, err := Watch(path, settle, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		goleak.VerifyNone(t)
	})
	return w
}

func expectChange(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no change reported")
	}
}

func expectQuiet(t *testing.T, w *Watcher) {
	t.Helper()
	select {
	case <-w.Changed():
		t.Fatal("a change was reported")
	case <-time.After(4 * settle):
	}
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestWriteInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relayd.toml")
	write(t, path, "a = 1\n")
	w := watch(t, path)
	write(t, path, "a = 2\n")
	expectChange(t, w)
	write(t, path, "a = 2\n") // same content: not a change
	expectQuiet(t, w)
}

func TestAtomicRenameSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "relayd.toml")
	write(t, path, "a = 1\n")
	w := watch(t, path)
	for _, body := range []string{"a = 2\n", "a = 3\n"} {
		tmp := filepath.Join(dir, ".relayd.toml.swp")
		write(t, tmp, body)
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		expectChange(t, w) // the watch survives the inode being replaced
	}
	write(t, filepath.Join(dir, "unrelated"), "x")
	expectQuiet(t, w)
}

// The Kubernetes ConfigMap layout: relayd.toml -> ..data/relayd.toml, with
// ..data a symlink swapped atomically to a new timestamped directory.
func TestSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	mk := func(name, body string) {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(d, "relayd.toml"), body)
	}
	mk("..v1", "a = 1\n")
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "relayd.toml")
	if err := os.Symlink("..data/relayd.toml", path); err != nil {
		t.Fatal(err)
	}
	w := watch(t, path)

	mk("..v2", "a = 2\n")
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	expectChange(t, w)
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	expectQuiet(t, w)
}

func TestBurstIsCoalesced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relayd.toml")
	write(t, path, "a = 0\n")
	w := watch(t, path)
	for i := 1; i <= 20; i++ {
		write(t, path, fmt.Sprintf("a = %d\n", i))
	}
	expectChange(t, w)
	expectQuiet(t, w)
}
