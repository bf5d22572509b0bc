#!/bin/sh
# After install or upgrade (deb: "configure" [old-version]; rpm: 1 or 2).
set -e

first_install=yes
case "$1" in
    configure) [ -n "$2" ] && first_install=no ;;
    [0-9]*) [ "$1" -gt 1 ] && first_install=no ;;
    *) exit 0 ;;  # abort-upgrade and the like: nothing to do
esac

# The dedicated user and the log directory.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers /usr/lib/sysusers.d/relayd.conf
else
    getent group relayd >/dev/null || groupadd --system relayd
    getent passwd relayd >/dev/null || useradd --system --gid relayd \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin relayd
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/relayd.conf
else
    mkdir -p /var/log/relayd
    chown relayd:relayd /var/log/relayd
    chmod 0750 /var/log/relayd
fi

if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$first_install" = yes ]; then
        systemctl enable --now relayd.service || echo "relayd: could not start; see journalctl -u relayd" >&2
    else
        # Restart only if it was running; an operator's disable stays.
        systemctl try-restart relayd.service || true
    fi
elif [ "$first_install" = yes ] && command -v systemctl >/dev/null 2>&1; then
    # No running systemd (container image, chroot): enable for the next boot.
    systemctl enable relayd.service >/dev/null 2>&1 || true
fi
exit 0
