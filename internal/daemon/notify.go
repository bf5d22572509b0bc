package daemon

import (
	"fmt"
	"strconv"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"

	"github.com/relayd/relayd/internal/server"
)

// notify sends an sd_notify message made of the given assignments when relayd
// runs under systemd (NOTIFY_SOCKET set); it is a no-op otherwise.
func (d *Daemon) notify(assignments ...string) {
	if _, err := sd.SdNotify(false, strings.Join(assignments, "\n")); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}
}

// monotonicUsec is the MONOTONIC_USEC assignment systemd requires with
// RELOADING=1 (the CLOCK_MONOTONIC time in microseconds); go-systemd does
// not add it.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return ""
	}
	return "MONOTONIC_USEC=" + strconv.FormatInt(ts.Nano()/1000, 10)
}

// status is the STATUS= assignment: what systemctl status shows. During a
// drain it says only how far the drain is.
func (d *Daemon) status(prefix string) string {
	if d.draining.Load() {
		return fmt.Sprintf("STATUS=draining: %d connections left", d.drainLeft.Load())
	}
	st := d.srv.Stats()
	s := fmt.Sprintf("STATUS=%d connections, %d clients logged in, %d listeners", connections(st), st.Clients, len(st.Listeners))
	if prefix != "" {
		s = "STATUS=" + prefix + "; " + strings.TrimPrefix(s, "STATUS=")
	}
	return s
}

// connections is the number of open connections on every listener.
func connections(st server.Stats) int {
	n := 0
	for _, l := range st.Listeners {
		n += l.Connections
	}
	return n
}
