#!/usr/bin/env bash
# make bench-compare: relayd, nats-server v2.15.2 and the direct loopback
# ceiling measured side by side in one run, on the same shapes.
#
# In the same run: relayd's websocket listener against its TCP one (1 KiB x
# 64 and idle memory), and a cluster (one nats-server, two relayd nodes):
# frames from senders on node A to receivers on node B, round trips across
# the nodes, local pairs on a clustered node, node B's memory per client
# logged in on node A.
#
# On a 2-core machine the server is pinned to one core and the load
# generator to the other, and every cell gets a fresh server. Senders are
# open loop (flat out, no window) unless LOOP=closed. The direct ceiling is
# measured on the load generator's core alone (the fair ceiling for a
# pinned relay: its generator does there what one-core direct does) and on
# both cores. Results go to $OUT (default docs/benchmarks): results.json,
# table.md and chart.svg.
#
#   LOOP=open DURATION=5s WARMUP=1s IDLE_CONNS=10000 LAT_ROUNDS=3 bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-docs/benchmarks}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
IDLE_CONNS=${IDLE_CONNS:-10000}
LAT_ROUNDS=${LAT_ROUNDS:-3}
LOOP=${LOOP:-open}
SERVER_CPU=${SERVER_CPU:-0}
BENCH_CPU=${BENCH_CPU:-1}
RELAYD_PORT=${RELAYD_PORT:-23333} # below 32768: clear of ephemeral ports
NATS_PORT=${NATS_PORT:-24222}
RELAYD_WS_PORT=${RELAYD_WS_PORT:-23334}
CLUSTER_NATS_PORT=${CLUSTER_NATS_PORT:-24223}
NODE_A_PORT=${NODE_A_PORT:-23341}
NODE_B_PORT=${NODE_B_PORT:-23342}
HOPS_PORT=${HOPS_PORT:-23350} # and the next three
export PATH="/usr/local/go/bin:$PATH"

mkdir -p "$OUT" bin
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "building relayd, relayd-bench, natsbench, hops and nats-server v2.15.2..." >&2
go build -o bin/relayd ./cmd/relayd
go build -o bin/relayd-bench ./cmd/relayd-bench
(cd bench && go build -o ../bin/natsbench ./natsbench && go build -o ../bin/bench-report ./report &&
    go build -o ../bin/hops ./hops)
GOBIN="$PWD/bin" go install github.com/nats-io/nats-server/v2@v2.15.2
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# What every relayd of the comparison runs with, single node and cluster.
limits_toml() {
    cat <<TOML
[log]
level = "warn"
[reload]
watch = false
[limits]
max_payload = "2MiB"
send_queue = "32MiB"
# The load generator runs 64 senders and 64 receivers on one core: a
# receiver goroutine can go longer than the default 250 ms without reading
# while the senders hold the core, and relayd would rightly call it stalled
# (SPEC rule 9). That is the generator's stall, not a slow client's; 2 s
# keeps it out of the numbers. The tests in internal/server run the default.
stall_timeout = "2s"
TOML
}
{
    limits_toml
    cat <<TOML
[[listener]]
name = "bench"
address = "127.0.0.1:$RELAYD_PORT"
[[listener]]
name = "web"
address = "127.0.0.1:$RELAYD_WS_PORT"
transport = "websocket"
ws_path = "/relay"
TOML
} >"$work/relayd.toml"
for node in a b; do
    port=$NODE_A_PORT
    [ "$node" = b ] && port=$NODE_B_PORT
    {
        limits_toml
        cat <<TOML
[cluster]
name = "bench"
node_id = "$node"
nats_urls = ["nats://127.0.0.1:$CLUSTER_NATS_PORT"]
[[listener]]
name = "bench"
address = "127.0.0.1:$port"
TOML
    } >"$work/node-$node.toml"
done
# The cluster's NATS keeps the default max_payload (1 MB): relayd splits
# larger frames itself. max_pending as for the nats-server cells.
cat >"$work/nats-cluster.conf" <<CONF
listen: 127.0.0.1:$CLUSTER_NATS_PORT
max_pending: 64MB
CONF
cat >"$work/nats.conf" <<CONF
listen: 127.0.0.1:$NATS_PORT
max_payload: 2MB
max_pending: 64MB
CONF

wait_port() {
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}
server_pid=""
start_server() { # start_server relayd|nats
    if [ "$1" = relayd ]; then
        taskset -c "$SERVER_CPU" bin/relayd -c "$work/relayd.toml" 2>>"$work/relayd.log" &
        server_pid=$!
        wait_port "$RELAYD_PORT"
        wait_port "$RELAYD_WS_PORT"
    else
        taskset -c "$SERVER_CPU" bin/nats-server -c "$work/nats.conf" 2>>"$work/nats.log" &
        server_pid=$!
        wait_port "$NATS_PORT"
    fi
}
stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}
# The cluster: nats-server and both nodes on the server's core, as one
# relayd is in the other cells, so the load generator keeps its own core.
cluster_pids=""
cluster_nats_pid=""
node_a_pid=""
node_b_pid=""
start_cluster() {
    taskset -c "$SERVER_CPU" bin/nats-server -c "$work/nats-cluster.conf" 2>>"$work/nats-cluster.log" &
    cluster_pids=$!
    cluster_nats_pid=$!
    wait_port "$CLUSTER_NATS_PORT"
    taskset -c "$SERVER_CPU" bin/relayd -c "$work/node-a.toml" 2>>"$work/node-a.log" &
    node_a_pid=$!
    cluster_pids="$cluster_pids $node_a_pid"
    taskset -c "$SERVER_CPU" bin/relayd -c "$work/node-b.toml" 2>>"$work/node-b.log" &
    node_b_pid=$!
    cluster_pids="$cluster_pids $node_b_pid"
    wait_port "$NODE_A_PORT"
    wait_port "$NODE_B_PORT"
}
stop_cluster() {
    for pid in $cluster_pids; do kill "$pid" 2>/dev/null || true; done
    for pid in $cluster_pids; do wait "$pid" 2>/dev/null || true; done
}
results="$OUT/results.json"
: >"$results"
record() { # record SYSTEM JSON
    printf '{"system":"%s","result":%s}\n' "$1" "$2" >>"$results"
}
common="--warmup $WARMUP --duration $DURATION"
case "$LOOP" in
open) loop="--open-loop" ;;
closed) loop="--closed-loop" ;;
*) echo "LOOP must be open or closed, not $LOOP" >&2; exit 2 ;;
esac
# Numbers taken while others compile are noise: say how busy the machine was.
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }
load_before=$(load_avg)
bench() { taskset -c "$BENCH_CPU" "$@"; }

for size in 64 1024 65536 1048576; do
    for pairs in 1 64; do
        echo "throughput: ${size} B x ${pairs} pairs" >&2
        start_server relayd
        record relayd "$(bench bin/relayd-bench throughput --addr "127.0.0.1:$RELAYD_PORT" --server-pid "$server_pid" \
            --pairs "$pairs" --size "$size" $loop $common --json)"
        stop_server
        start_server nats
        record nats "$(bench bin/natsbench throughput --url "nats://127.0.0.1:$NATS_PORT" --server-pid "$server_pid" \
            --pairs "$pairs" --size "$size" $loop $common)"
        stop_server
        # The ceilings: both ends in one process, on the load generator's
        # core alone, then on both cores.
        record direct1 "$(bench bin/relayd-bench throughput --direct \
            --pairs "$pairs" --size "$size" $loop $common --json)"
        record direct2 "$(taskset -c "$SERVER_CPU,$BENCH_CPU" bin/relayd-bench throughput --direct \
            --pairs "$pairs" --size "$size" $loop $common --json)"
    done
done

ws="ws://127.0.0.1:$RELAYD_WS_PORT/relay"
node_a="127.0.0.1:$NODE_A_PORT"
node_b="127.0.0.1:$NODE_B_PORT"
echo "websocket: 1 KiB x 64 pairs" >&2
start_server relayd
record relayd-ws "$(bench bin/relayd-bench throughput --ws "$ws" --server-pid "$server_pid" \
    --pairs 64 --size 1024 $loop $common --json)"
stop_server
# Both ends on one node of a cluster: what joining a cluster costs pairs
# that never leave their node.
echo "cluster: local pairs on node A, 1 KiB x 64 pairs" >&2
start_cluster
record cluster-local "$(bench bin/relayd-bench throughput --addr "$node_a" \
    --pairs 64 --size 1024 $loop $common --json)"
stop_cluster
echo "cluster: senders on node A, receivers on node B, 1 KiB x 64 pairs" >&2
start_cluster
record cluster-cross "$(bench bin/relayd-bench throughput --addr "$node_a" --recv-addr "$node_b" \
    --cpu-pid "node-a=$node_a_pid" --cpu-pid "nats=$cluster_nats_pid" --cpu-pid "node-b=$node_b_pid" \
    --pairs 64 --size 1024 $loop $common --json)"
stop_cluster
# The copy-only ceiling of those two shapes (bench/hops): forwarders that
# only read and write, pinned where the relays were, the load where
# relayd-bench was. The cluster's three processes each copy every frame
# once more than a single node does; this is what that alone costs.
echo "copy-only forwarders: one hop, and the cluster's three" >&2
hops_run() { # hops_run TOPOLOGY MODE...: one forwarder per mode, first to last
    local port pids="" topology=$1
    shift
    port=$((HOPS_PORT + $#))
    for mode in $(printf '%s\n' "$@" | tac); do # from the last hop back
        taskset -c "$SERVER_CPU" bin/hops forward --mode "$mode" --listen "127.0.0.1:$((port - 1))" \
            --next "127.0.0.1:$port" --conns 64 2>>"$work/hops.log" &
        pids="$pids $!"
        port=$((port - 1))
    done
    record "hops-$topology" "$(bench bin/hops load --topology "$topology" --first "127.0.0.1:$HOPS_PORT" \
        --sink "127.0.0.1:$((HOPS_PORT + $#))" --conns 64 $common)"
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
}
hops_run single pair
hops_run cross mux fwd demux

# Round trips swing by a third between windows on a shared machine: the two
# servers take turns, LAT_ROUNDS times, and the report takes the median.
for round in $(seq "$LAT_ROUNDS"); do
    echo "latency: 64 B round trips, round $round of $LAT_ROUNDS" >&2
    start_server relayd
    record relayd "$(bench bin/relayd-bench latency --addr "127.0.0.1:$RELAYD_PORT" --pairs 1 --size 64 $common --json)"
    stop_server
    start_server nats
    record nats "$(bench bin/natsbench latency --url "nats://127.0.0.1:$NATS_PORT" --pairs 1 --size 64 $common)"
    stop_server
    start_cluster # the pinger on node A, the ponger on node B
    record cluster-cross "$(bench bin/relayd-bench latency --addr "$node_a" --recv-addr "$node_b" --pairs 1 --size 64 $common --json)"
    stop_cluster
done

echo "idle: $IDLE_CONNS connections" >&2
start_server relayd
record relayd "$(bench bin/relayd-bench idle --addr "127.0.0.1:$RELAYD_PORT" --server-pid "$server_pid" \
    --conns "$IDLE_CONNS" --duration 3s --json)"
stop_server
start_server nats
record nats "$(bench bin/natsbench idle --url "nats://127.0.0.1:$NATS_PORT" --server-pid "$server_pid" \
    --conns "$IDLE_CONNS" --duration 3s)"
stop_server
echo "idle: $IDLE_CONNS websocket connections" >&2
start_server relayd
record relayd-ws "$(bench bin/relayd-bench idle --ws "$ws" --server-pid "$server_pid" \
    --conns "$IDLE_CONNS" --duration 3s --json)"
stop_server
# What node B's directory holds for clients of node A: B's memory growth
# while they log in on A.
echo "cluster: $IDLE_CONNS idle connections on node A, node B's memory" >&2
start_cluster
record cluster-directory "$(bench bin/relayd-bench idle --addr "$node_a" --server-pid "$node_b_pid" \
    --conns "$IDLE_CONNS" --duration 3s --json)"
stop_cluster

record machine "{\"mode\":\"machine\",\"loop\":\"$LOOP\",\"load_before\":\"$load_before\",\"load_after\":\"$(load_avg)\",\"commit\":\"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\"}"
bin/bench-report -in "$results" -table "$OUT/table.md" -chart "$OUT/chart.svg"
