package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/relaytest"
)

// The sd_notify protocol as systemd sees it: READY=1 once every listener is
// bound, RELOADING=1 with MONOTONIC_USEC then READY=1 around each reload
// (failed or not), STOPPING=1 at shutdown, STATUS= with connection counts.
func TestSdNotify(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func() string {
		t.Helper()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4096)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}

	path := filepath.Join(dir, "relayd.toml")
	port := freePort(t)
	relaytest.WriteConfig(t, path, strings.Replace(configText("info", false, "2m"), "127.0.0.1:0", "127.0.0.1:"+port, 1))
	cmd := exec.Command(relaydBin, "-c", path)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock)
	logs := &logBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	ready := next()
	if !strings.Contains(ready, "READY=1") || !strings.Contains(ready, "STATUS=0 connections, 0 clients logged in, 1 listeners") {
		t.Fatalf("first notification = %q", ready)
	}
	// READY=1 means every listener is bound: connecting must work at once.
	if c, err := net.Dial("tcp", "127.0.0.1:"+port); err != nil {
		t.Fatalf("READY=1 sent before the listener was bound: %v", err)
	} else {
		c.Close()
	}

	for _, body := range []string{strings.Replace(configText("info", false, "3m"), "127.0.0.1:0", "127.0.0.1:"+port, 1), "[limits]\nidle_timeout = \"x\"\n"} {
		relaytest.WriteConfig(t, path, body)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		reloading := next()
		var now unix.Timespec
		_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &now)
		if !strings.HasPrefix(reloading, "RELOADING=1\nMONOTONIC_USEC=") {
			t.Fatalf("reload notification = %q", reloading)
		}
		usec, err := strconv.ParseInt(strings.TrimPrefix(reloading, "RELOADING=1\nMONOTONIC_USEC="), 10, 64)
		if age := now.Nano()/1000 - usec; err != nil || age < 0 || age > 10_000_000 {
			t.Fatalf("MONOTONIC_USEC %q is not the monotonic clock now (%v)", reloading, err)
		}
		done := next()
		want := "reload succeeded"
		if strings.Contains(body, `"x"`) {
			want = "reload failed"
		}
		if !strings.HasPrefix(done, "READY=1\nSTATUS="+want) {
			t.Fatalf("after the reload: %q, want READY=1 and %q", done, want)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "STOPPING=1" {
		t.Fatalf("at shutdown: %q", got)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
