#!/bin/sh
# After removal (deb: "remove" | "purge" | "upgrade" ...; rpm: 0 = erase, 1 = upgrade).
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
    # Purge removes what relayd wrote; dpkg removes the conffile itself.
    rm -rf /var/log/relayd
    rmdir /etc/relayd 2>/dev/null || true
fi
exit 0
