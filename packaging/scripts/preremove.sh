#!/bin/sh
# Before removal or upgrade (deb: "remove" | "upgrade" ...; rpm: 0 = erase, 1 = upgrade).
set -e
case "$1" in
    remove|0) ;;
    *) exit 0 ;;  # an upgrade: postinstall restarts it
esac
if [ -d /run/systemd/system ]; then
    systemctl stop relayd.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
    systemctl disable relayd.service >/dev/null 2>&1 || true
fi
exit 0
