#!/usr/bin/env bash
# HTTP load and latency benchmark of both adapters, over loopback, with bounded durations.
#
#   scripts/bench-http.sh            # both frameworks
#   FRAMEWORKS=axum DURATION=5s FLOWS=300 scripts/bench-http.sh
#
# Reports, per framework and from one run:
#   - bound GET /qrcode/status vs a bare handler returning a body of the same size (req/s)
#   - a route with AuthenticatedUser (verify + signed-in session check) vs the same route
#     unprotected (req/s, the mean of ROUNDS alternated runs of each)
#   - renewals per second (POST /qrcode/refresh, rotating), 8 signed-in browsers
#   - confirm → browser-notified latency p50/p99 via long-poll, SSE and 800 ms interval polling
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-32}
FLOWS=${FLOWS:-1000}
CONCURRENCY=${CONCURRENCY:-100}
FRAMEWORKS=${FRAMEWORKS:-"axum actix"}
ROUNDS=${ROUNDS:-3}

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    echo "wrk is missing: sudo apt-get install -y wrk" >&2; exit 1
  fi
fi

cargo build --release -q -p http-bench
BIN=target/release/qrauth-bench

rps() { wrk -t1 -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

port=3900
for fw in $FRAMEWORKS; do
  port=$((port + 1))
  url="http://127.0.0.1:$port"
  "$BIN" serve "$fw" "127.0.0.1:$port" >/dev/null 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' EXIT
  for _ in $(seq 100); do curl -sf "$url/" >/dev/null && break; sleep 0.1; done

  IFS=$'\t' read -r cookie id < <("$BIN" prepare "$url")
  size=$(curl -s -H "Cookie: $cookie" "$url/qrcode/status?qrcodeId=$id" | wc -c)
  status=$(rps -H "Cookie: $cookie" "$url/qrcode/status?qrcodeId=$id")
  bare=$(rps "$url/bench/bare?size=$size")
  token=$("$BIN" token "$url")
  # Same request bytes for both: only the extractor differs. Alternated ROUNDS times and
  # summed, so that a drift of the machine (another process, frequency) hits both alike.
  protected=0 unprotected=0
  for _ in $(seq "$ROUNDS"); do
    p=$(rps -H "Authorization: Bearer $token" "$url/bench/protected")
    u=$(rps -H "Authorization: Bearer $token" "$url/bench/unprotected")
    protected=$(awk -v a="$protected" -v b="$p" -v n="$ROUNDS" 'BEGIN { printf "%.2f", a + b / n }')
    unprotected=$(awk -v a="$unprotected" -v b="$u" -v n="$ROUNDS" 'BEGIN { printf "%.2f", a + b / n }')
  done

  echo "== $fw (wrk -t1 -c$CONNECTIONS -d$DURATION; status body $size bytes)"
  echo "status (bound)      $status req/s   bare handler $bare req/s   ratio $(ratio "$status" "$bare")"
  echo "protected           $protected req/s   unprotected  $unprotected req/s   ratio $(ratio "$protected" "$unprotected")"
  "$BIN" renewals "$url" "${DURATION%s}" 8
  for mode in longpoll sse interval800; do
    "$BIN" latency "$url" "$mode" "$FLOWS" "$CONCURRENCY"
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
