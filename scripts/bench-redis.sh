#!/usr/bin/env bash
# MemoryStore vs RedisStore, and two replicas on one Redis, over loopback with bounded time.
#
#   scripts/bench-redis.sh
#   SECONDS_=5 FLOWS=200 scripts/bench-redis.sh
#
# Reports, from one run:
#   - full logins per second on one axum replica, MemoryStore vs RedisStore (ratio)
#   - confirm → browser latency p50/p99 across replicas: the phone confirms on replica A
#     (axum), the browser follows on replica B (actix) by long-poll and by SSE
#   - Redis MEMORY USAGE per pending session (mean over 200 sessions)
#   - Redis MEMORY USAGE per signed-in session (mean over the logins of 2 s), and its index
#   - on a 3-primary Redis Cluster (ports CLUSTER_PORT..+2, bus ports +10000 via
#     --cluster-port): logins per second vs the one Redis, and confirm on A → browser on B
#     p50/p99 (long-poll, SSE)
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_=${SECONDS_:-10}
CONCURRENCY=${CONCURRENCY:-16}
FLOWS=${FLOWS:-500}
REDIS_PORT=${REDIS_PORT:-6399}
CLUSTER_PORT=${CLUSTER_PORT:-6410}

command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }

cargo build --release -q -p http-bench
BIN=${CARGO_TARGET_DIR:-target}/release/qrauth-bench
REDIS="redis://127.0.0.1:$REDIS_PORT/"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  for port in $(cluster_ports); do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "${CLUSTER_DIR:-/nonexistent}"
}
cluster_ports() { echo "$CLUSTER_PORT" $((CLUSTER_PORT + 1)) $((CLUSTER_PORT + 2)); }
trap cleanup EXIT

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
  --loglevel warning >/dev/null &
pids+=($!)
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

start() { # framework port [redis-url]
  "$BIN" serve "$1" "127.0.0.1:$2" ${3:-} >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$2/" >/dev/null && break; sleep 0.1; done
}
stop_last() { kill "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

rate() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /\/s,$/) { sub(/\/s,/, "", $i); print $i } }'; }

echo "== full logins, one axum replica, $CONCURRENCY clients, ${SECONDS_}s each"
start axum 3921
mem=$("$BIN" flows http://127.0.0.1:3921 "$SECONDS_" "$CONCURRENCY"); echo "memory: $mem"
stop_last
start axum 3922 "$REDIS"
red=$("$BIN" flows http://127.0.0.1:3922 "$SECONDS_" "$CONCURRENCY"); echo "redis:  $red"
stop_last
awk -v a="$(echo "$red" | rate)" -v b="$(echo "$mem" | rate)" 'BEGIN { printf "RedisStore / MemoryStore logins per second: %.2f\n", a / b }'

echo "== the same on a 3-primary Redis Cluster"
CLUSTER_DIR=$(mktemp -d)
for port in $(cluster_ports); do
  mkdir -p "$CLUSTER_DIR/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --loglevel warning --cluster-enabled yes --cluster-config-file nodes.conf \
    --cluster-port $((port + 10000)) --dir "$CLUSTER_DIR/$port" >/dev/null &
  pids+=($!)
done
for port in $(cluster_ports); do
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create $(for p in $(cluster_ports); do printf '127.0.0.1:%s ' "$p"; done) \
  --cluster-replicas 0 --cluster-yes >/dev/null
for _ in $(seq 100); do
  redis-cli -p "$CLUSTER_PORT" cluster info | grep -q cluster_state:ok && break; sleep 0.1
done
CLUSTER=$(for p in $(cluster_ports); do printf 'redis://127.0.0.1:%s/,' "$p"; done); CLUSTER=${CLUSTER%,}
start axum 3925 "$CLUSTER"
clu=$("$BIN" flows http://127.0.0.1:3925 "$SECONDS_" "$CONCURRENCY"); echo "cluster: $clu"
stop_last
awk -v a="$(echo "$clu" | rate)" -v b="$(echo "$red" | rate)" 'BEGIN { printf "Cluster / one Redis logins per second: %.2f\n", a / b }'
for port in $(cluster_ports); do
  printf 'primary %s holds %s keys\n' "$port" "$(redis-cli -p "$port" dbsize)"
done
echo "== cluster: confirm on replica A (axum) → browser on replica B (actix), $FLOWS flows"
start axum 3926 "$CLUSTER"
start actix 3927 "$CLUSTER"
for mode in longpoll sse; do
  "$BIN" latency http://127.0.0.1:3927 "$mode" "$FLOWS" 50 http://127.0.0.1:3926
done
stop_last
stop_last

echo "== confirm on replica A (axum) → browser on replica B (actix), $FLOWS flows"
start axum 3923 "$REDIS"
start actix 3924 "$REDIS"
for mode in longpoll sse; do
  "$BIN" latency http://127.0.0.1:3924 "$mode" "$FLOWS" 50 http://127.0.0.1:3923
done

echo "== Redis memory per pending session"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
for _ in $(seq 200); do "$BIN" prepare http://127.0.0.1:3923 >/dev/null; done
keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'qrauth-bench:s:*')
total=0; n=0
for k in $keys; do total=$((total + $(redis-cli -p "$REDIS_PORT" memory usage "$k"))); n=$((n + 1)); done
echo "pending sessions: $n, MEMORY USAGE mean $((total / n)) bytes"

echo "== Redis memory per signed-in session"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
"$BIN" flows http://127.0.0.1:3923 2 1 >/dev/null
keys=$(redis-cli -p "$REDIS_PORT" --scan --pattern 'qrauth-bench:si:*')
total=0; n=0
for k in $keys; do total=$((total + $(redis-cli -p "$REDIS_PORT" memory usage "$k"))); n=$((n + 1)); done
index=0
for k in $(redis-cli -p "$REDIS_PORT" --scan --pattern 'qrauth-bench:su:*'); do index=$((index + $(redis-cli -p "$REDIS_PORT" memory usage "$k"))); done
members=$(for k in $(redis-cli -p "$REDIS_PORT" --scan --pattern 'qrauth-bench:su:*'); do redis-cli -p "$REDIS_PORT" zcard "$k"; done | awk '{ s += $1 } END { print s + 0 }')
echo "signed-in sessions: $n, MEMORY USAGE mean $((total / n)) bytes per session hash; subject index $index bytes for $members entries"
