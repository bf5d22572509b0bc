#!/usr/bin/env bash
# make tls-audit: what testssl.sh says about relayd's TLS listener.
#
# Builds relayd, makes throwaway certificates (examples/gencerts), starts
# relayd with one TLS listener on 127.0.0.1 (tls_min_version "1.2" when
# this build knows the key), runs Debian's testssl.sh against it and prints
# its verdict: protocols, cipher categories, forward secrecy, server
# preferences and the vulnerability checks (LUCKY13, BEAST, SWEET32, ...).
# Not part of `make test`: it takes a few minutes and needs the testssl.sh
# package (`apt-get install -y testssl.sh`).
#
# Exit status: 0 when testssl.sh rated nothing LOW or worse, 1 otherwise
# (the findings are listed: CBC suites, for one, are LOW with LUCKY13 next
# to them), 2 when the audit could not run.
#
# OUT=DIR keeps testssl.sh's full report (testssl.txt, findings.csv) there.
#
#   TLS_MIN_VERSION=1.3 PORT=23443 OUT=/tmp/audit packaging/tls-audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-23443} # below 32768: clear of ephemeral ports
TLS_MIN_VERSION=${TLS_MIN_VERSION:-1.2}
OUT=${OUT:-}
export PATH="/usr/local/go/bin:$PATH"

testssl=$(command -v testssl || command -v testssl.sh || true)
if [ -z "$testssl" ]; then
	echo "tls-audit: testssl.sh not found: apt-get install -y testssl.sh" >&2
	exit 2
fi

work=$(mktemp -d)
relayd_pid=
cleanup() {
	if [ -n "$relayd_pid" ]; then kill "$relayd_pid" 2>/dev/null || true; wait "$relayd_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "building relayd and throwaway certificates..." >&2
go build -o "$work/relayd" ./cmd/relayd
go run ./examples/gencerts -dir "$work/certs" >/dev/null

write_config() { # $1: the tls_min_version line, or nothing
	cat >"$work/relayd.toml" <<EOF
[[listener]]
name = "tls"
address = "127.0.0.1:$PORT"
tls_cert = "$work/certs/server.pem"
tls_key = "$work/certs/server-key.pem"
$1
EOF
}
write_config "tls_min_version = \"$TLS_MIN_VERSION\""
policy="tls_min_version = $TLS_MIN_VERSION"
if ! check=$("$work/relayd" -c "$work/relayd.toml" -t 2>&1); then
	if grep -q tls_min_version <<<"$check"; then
		# Until the key lands, audit the policy that is built in.
		echo "tls-audit: this relayd does not know tls_min_version ($check); auditing its built-in TLS policy" >&2
		write_config ""
		policy="its built-in TLS policy (no tls_min_version)"
	else
		echo "tls-audit: relayd -t: $check" >&2
		exit 2
	fi
fi

"$work/relayd" -c "$work/relayd.toml" 2>"$work/relayd.log" &
relayd_pid=$!
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
	if ! kill -0 "$relayd_pid" 2>/dev/null; then
		echo "tls-audit: relayd exited:" >&2
		cat "$work/relayd.log" >&2
		exit 2
	fi
	sleep 0.1
done

echo "running $testssl against 127.0.0.1:$PORT ($policy); this takes a few minutes..." >&2
# -p protocols, -s cipher categories, -f forward secrecy, -P server
# preferences, -U vulnerabilities. relayd is not HTTP, so no header checks.
set +e
"$testssl" --quiet --color 0 --warnings off --ip one \
	--csvfile "$work/findings.csv" -p -s -f -P -U "127.0.0.1:$PORT" >"$work/testssl.txt" 2>&1
rc=$?
set -e
if [ -n "$OUT" ]; then
	mkdir -p "$OUT"
	cp "$work/testssl.txt" "$work/findings.csv" "$OUT/"
fi
if [ ! -s "$work/findings.csv" ]; then
	echo "tls-audit: testssl.sh produced no findings (exit $rc):" >&2
	cat "$work/testssl.txt" >&2
	exit 2
fi

# The report from its first section on: the banner says nothing about us.
sed -n '/Testing protocols/,$p' "$work/testssl.txt" | sed '/^ *Done /,$d'

# Every finding rated LOW or worse fails the audit: a TLS policy for the
# public internet should leave testssl.sh nothing to remark on.
# CSV columns: id, fqdn/ip, port, severity, finding, cve, cwe.
bad=$(awk -F'","' 'NR > 1 && $4 ~ /^(LOW|MEDIUM|HIGH|CRITICAL)$/ { gsub(/^"/, "", $1); print "  " $4 "  " $1 ": " $5 }' "$work/findings.csv")
version=$("$testssl" --version 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g' | sed -n 's/^ *testssl *\([0-9][0-9.]*\) from.*/\1/p' | head -1)
echo
echo "tls-audit: relayd with $policy on 127.0.0.1:$PORT, testssl.sh ${version:-unknown version}"
if [ -n "$bad" ]; then
	echo "tls-audit: FAIL: findings rated LOW or worse:"
	echo "$bad"
	exit 1
fi
echo "tls-audit: OK: nothing rated LOW or worse"
