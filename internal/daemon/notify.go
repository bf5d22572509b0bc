package daemon

import (
	"fmt"
	"strconv"
	"strings"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
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

// status is the STATUS= assignment: what systemctl status shows.
func (d *Daemon) status(prefix string) string {
	st := d.srv.Stats()
	conns := 0
	for _, l := range st.Listeners {
		conns += l.Connections
	}
	s := fmt.Sprintf("STATUS=%d connections, %d clients logged in, %d listeners", conns, st.Clients, len(st.Listeners))
	if prefix != "" {
		s = "STATUS=" + prefix + "; " + strings.TrimPrefix(s, "STATUS=")
	}
	return s
}
