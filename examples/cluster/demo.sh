#!/usr/bin/env bash
# make cluster-demo: one nats-server and three relayd nodes of one cluster on
# loopback, then the relayd-client command lines to chat across them.
# Ctrl-C stops everything. Ports: NATS_PORT (default 14222) and
# BASE_PORT+1..3 (default 33341..33343) for the nodes, BASE_PORT+11..13 for
# their admin endpoints (/metrics shows relayd_cluster_*).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
NATS_PORT=${NATS_PORT:-14222}
BASE_PORT=${BASE_PORT:-33340}

dir=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

echo "building relayd, relayd-client and nats-server (the version go.mod pins) into $dir"
$GO build -o "$dir/relayd" ./cmd/relayd
$GO build -o "$dir/relayd-client" ./cmd/relayd-client
$GO build -o "$dir/nats-server" github.com/nats-io/nats-server/v2

wait_port() { # wait_port PORT WHAT
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "$2 did not start listening on 127.0.0.1:$1; its log: $dir/$2.log" >&2
	exit 1
}

"$dir/nats-server" -a 127.0.0.1 -p "$NATS_PORT" >"$dir/nats.log" 2>&1 &
pids+=($!)
wait_port "$NATS_PORT" nats

for i in 1 2 3; do
	cat >"$dir/node$i.toml" <<TOML
[log]
level = "debug"

[admin]
address = "127.0.0.1:$((BASE_PORT + 10 + i))"

[cluster]
name = "demo"
node_id = "node$i"
nats_urls = ["nats://127.0.0.1:$NATS_PORT"]
node_timeout = "2s"

[[listener]]
name = "plain"
address = "127.0.0.1:$((BASE_PORT + i))"
TOML
	"$dir/relayd" -c "$dir/node$i.toml" >"$dir/node$i.log" 2>&1 &
	pids+=($!)
done
for i in 1 2 3; do wait_port $((BASE_PORT + i)) "node$i"; done

client="$dir/relayd-client --host 127.0.0.1"
cat <<TXT

Three relayd nodes of cluster "demo" share nats-server 127.0.0.1:$NATS_PORT:
  node1 127.0.0.1:$((BASE_PORT + 1))   node2 127.0.0.1:$((BASE_PORT + 2))   node3 127.0.0.1:$((BASE_PORT + 3))
Logs: $dir/node{1,2,3}.log, $dir/nats.log

Chat across nodes: alice on node1, bob on node2 (type lines, /quit to leave)
  $client --port $((BASE_PORT + 1)) --client-id alice --to-client-id bob
  $client --port $((BASE_PORT + 2)) --client-id bob --to-client-id alice

Last login wins across nodes: log alice in on node3 and the node1 client is kicked
  $client --port $((BASE_PORT + 3)) --client-id alice --to-client-id bob

Cluster metrics of node1:
  curl -s http://127.0.0.1:$((BASE_PORT + 11))/metrics | grep relayd_cluster_

Ctrl-C stops the demo.
TXT
wait
