#!/usr/bin/env bash
# make bench-compare: relayd, nats-server v2.15.2 and the direct loopback
# ceiling measured side by side in one run, on the same shapes.
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
export PATH="/usr/local/go/bin:$PATH"

mkdir -p "$OUT" bin
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

echo "building relayd, relayd-bench, natsbench and nats-server v2.15.2..." >&2
go build -o bin/relayd ./cmd/relayd
go build -o bin/relayd-bench ./cmd/relayd-bench
(cd bench && go build -o ../bin/natsbench ./natsbench && go build -o ../bin/bench-report ./report)
GOBIN="$PWD/bin" go install github.com/nats-io/nats-server/v2@v2.15.2
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cat >"$work/relayd.toml" <<TOML
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
[[listener]]
name = "bench"
address = "127.0.0.1:$RELAYD_PORT"
TOML
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

record machine "{\"mode\":\"machine\",\"loop\":\"$LOOP\",\"load_before\":\"$load_before\",\"load_after\":\"$(load_avg)\",\"commit\":\"$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\"}"
bin/bench-report -in "$results" -table "$OUT/table.md" -chart "$OUT/chart.svg"
