#!/bin/bash
# Runs inside a booted systemd-nspawn container (see packaging_test.go), as
# a oneshot unit once the system is up. The packages are bind-mounted at
# /pkgs/v1 and /pkgs/v2. It installs relayd under a running systemd, uses
# it, upgrades, stops and purges it, writes PASS or FAIL to
# /relayd-test.result and powers the container off.
set -u
exec >/relayd-test.log 2>&1

fail() {
    echo "FAIL: $*"
    echo FAIL >/relayd-test.result
    systemctl poweroff
    exit 1
}

wait_for() { # wait_for DESCRIPTION COMMAND...: up to 20 s
    local what=$1
    shift
    for _ in $(seq 100); do
        "$@" && return 0
        sleep 0.2
    done
    fail "timed out waiting for $what"
}

prop() { systemctl show -p "$1" --value relayd.service; }

echo "== first install with systemd running: enabled and started"
dpkg -i /pkgs/v1/*.deb || fail "dpkg -i v1"
systemctl is-enabled --quiet relayd.service || fail "not enabled"
wait_for "relayd to be active" systemctl is-active --quiet relayd.service
# Type=notify: "active" means relayd sent READY=1.
[ "$(prop Type)" = notify ] || fail "Type=$(prop Type)"
[ "$(prop User)" = relayd ] || fail "User=$(prop User)"
verify=$(systemd-analyze verify relayd.service 2>&1)
[ -z "$verify" ] || fail "systemd-analyze verify: $verify"
wait_for "a STATUS= line" sh -c 'systemctl show -p StatusText --value relayd | grep -q "connections"'
echo "status: $(prop StatusText)"
[ "$(stat -c %U /var/log/relayd)" = relayd ] || fail "/var/log/relayd not owned by relayd"

echo "== a relay client exchanges frames through it"
exchange() { # exchange TAG: alice sends a line to bob
    local out=/tmp/bob.$1
    (sleep 3 | relayd-client --port 33333 --client-id bob --to-client-id alice >"$out" 2>/tmp/bob.err) &
    local bob=$!
    # No login ack: resend until bob prints it.
    for _ in $(seq 20); do
        echo "hello $1" | relayd-client --port 33333 --client-id alice --to-client-id bob 2>/dev/null
        grep -q "^alice: hello $1\$" "$out" && break
        sleep 0.1
    done
    wait $bob
    grep -q "^alice: hello $1\$" "$out" || fail "bob did not receive 'hello $1': $(cat "$out" /tmp/bob.err)"
}
exchange first

echo "== systemctl reload"
pid=$(prop MainPID)
systemctl reload relayd.service || fail "systemctl reload"
wait_for "the reload to be logged" grep -q "configuration reloaded" /var/log/relayd/relayd.log
[ "$(prop MainPID)" = "$pid" ] || fail "reload restarted the process"
systemctl is-active --quiet relayd.service || fail "not active after reload"
wait_for "STATUS after reload" sh -c 'systemctl show -p StatusText --value relayd | grep -q "reload succeeded"'
exchange after-reload

echo "== metrics and health on the admin listener (inside the sandbox)"
http_get() { # http_get PATH: the response, headers and body
    exec 3<>/dev/tcp/127.0.0.1/9333 || fail "admin listener"
    printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3
    cat <&3
    exec 3<&-
}
http_get /readyz | head -1 | grep -q " 200 " || fail "/readyz"
metrics=$(http_get /metrics)
echo "$metrics" | head -1 | grep -q " 200 " || fail "/metrics: $(echo "$metrics" | head -5)"
echo "$metrics" | grep -q '^relayd_frames_forwarded_total [1-9]' || fail "no forwarded frames in /metrics"
echo "$metrics" | grep -q '^process_resident_memory_bytes ' || fail "no process metrics in /metrics"

echo "== upgrade with an edited config: edit kept, service restarted"
echo "# edited by the operator" >>/etc/relayd/relayd.toml
dpkg -i /pkgs/v2/*.deb || fail "dpkg -i v2"
grep -q "edited by the operator" /etc/relayd/relayd.toml || fail "upgrade overwrote the config"
wait_for "relayd to be active after the upgrade" systemctl is-active --quiet relayd.service
[ "$(prop MainPID)" != "$pid" ] || fail "upgrade did not restart relayd"
relayd --version | grep -q "relayd 1.0.1" || fail "not upgraded: $(relayd --version)"
exchange after-upgrade

echo "== a disabled service stays disabled and stopped across an upgrade"
systemctl disable --now relayd.service || fail "disable"
dpkg -i /pkgs/v2/*.deb || fail "reinstall v2"
systemctl is-enabled --quiet relayd.service && fail "upgrade re-enabled relayd"
systemctl is-active --quiet relayd.service && fail "upgrade started a stopped relayd"
systemctl enable --now relayd.service || fail "enable"
wait_for "relayd to be active again" systemctl is-active --quiet relayd.service

echo "== systemctl stop is clean"
systemctl stop relayd.service || fail "systemctl stop"
[ "$(prop Result)" = success ] || fail "Result=$(prop Result)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "ExecMainStatus=$(prop ExecMainStatus)"
grep -q "relayd stopped" /var/log/relayd/relayd.log || fail "no clean shutdown in the log"

echo "== purge"
systemctl start relayd.service
dpkg --purge relayd || fail "dpkg --purge"
systemctl is-active --quiet relayd.service && fail "still running after purge"
[ ! -e /var/log/relayd ] || fail "logs left after purge"
[ ! -e /etc/relayd/relayd.toml ] || fail "config left after purge"
[ ! -e /usr/bin/relayd ] || fail "binary left after purge"

echo PASS >/relayd-test.result
systemctl poweroff
