#!/usr/bin/env bash
# Held connections under disconnect churn and at shutdown, per adapter, on the demo binaries
# over loopback (bounded counts and time; pure bash /dev/tcp clients, curl for the set-up).
#
#   scripts/soak-held.sh                       # both demos, 1 000 + 1 000 churn, 500 + 500 held
#   FRAMEWORKS=actix CHURN=200 HELD=100 scripts/soak-held.sh
#   PROFILE=debug scripts/soak-held.sh         # the debug binaries (no release build)
#
# Per demo it reports the server's descriptors, CLOSE_WAIT sockets and live waiters (the
# `qrauth_live_waiters` gauge at /metrics) before and 1 s after CHURN event streams and CHURN
# long-polls were opened and dropped one after the other, then holds HELD long-polls and HELD
# streams, sends SIGTERM and reports the time until the process exited and what the clients
# got. It fails when something is left behind after the churn, a held client got no answer,
# or the exit took longer than STOP_BOUND_MS (default 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
FRAMEWORKS=${FRAMEWORKS:-"axum actix"}
CHURN=${CHURN:-1000}
HELD=${HELD:-500}
PORT=${PORT:-3991}
PROFILE=${PROFILE:-release}
STOP_BOUND_MS=${STOP_BOUND_MS:-1000}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p axum-demo -p actix-demo
else
  cargo build -q -p axum-demo -p actix-demo
fi
tmp=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
base="http://127.0.0.1:$PORT"
port_hex=$(printf '%04X' "$PORT")
failed=0

now_ms() { date +%s%3N; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
# Server-side sockets of the port in CLOSE_WAIT (state 08).
close_wait() {
  awk -v p=":$port_hex" '$2 ~ p"$" && $4 == "08" { n++ } END { print n + 0 }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
waiters() {
  curl -sf "$base/metrics" | awk '/^qrauth_live_waiters/ { s += $NF } END { print s + 0 }'
}
# Opens a connection on a new descriptor (its number in $conn) and sends GET $1.
open_get() {
  exec {conn}<>"/dev/tcp/127.0.0.1/$PORT"
  printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nCookie: %s\r\n\r\n' "$1" "$PORT" "$cookie" >&"$conn"
}
# Reads from descriptor $1 until a line matches $2 (at most $3 seconds); 0 when it did.
read_until() {
  local line deadline=$((SECONDS + $3))
  while [ $SECONDS -le $deadline ] && IFS= read -r -t "$3" line <&"$1"; do
    case "$line" in $2*) return 0 ;; esac
  done
  return 1
}
wait_waiters() { # $1 = count, $2 = seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    [ "$(waiters)" -eq "$1" ] && return 0
    sleep 0.05
  done
  return 1
}

for fw in $FRAMEWORKS; do
  "target/$PROFILE/$fw-demo" --listen "127.0.0.1:$PORT" >"$tmp/$fw.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf "$base/qrcode/widget.js" >/dev/null && break; sleep 0.1; done
  id=$(curl -sf -c "$tmp/jar" -X POST "$base/qrcode" | sed -n 's/.*"qrcodeId":"\([^"]*\)".*/\1/p')
  cookie=$(awk '$6 ~ /qrauth_bind/ { print $6 "=" $7 }' "$tmp/jar")
  [ -n "$id" ] && [ -n "$cookie" ] || { echo "$fw: no QR code"; exit 1; }
  events="/qrcode/events?qrcodeId=$id"
  long_poll="/qrcode/status?qrcodeId=$id&wait=30"
  sleep 0.2
  fd0=$(fds "$pid"); cw0=$(close_wait); w0=$(waiters)

  started=$(now_ms)
  for ((i = 0; i < CHURN; i++)); do
    open_get "$events"
    read_until "$conn" "data:" 5 || { echo "$fw: stream $i got no event"; exit 1; }
    exec {conn}>&-
    open_get "$long_poll"
    sleep 0.002 # the request reaches the server and waits there
    exec {conn}>&-
  done
  churned=$(($(now_ms) - started))
  sleep 1
  fd1=$(fds "$pid"); cw1=$(close_wait); w1=$(waiters)
  echo "$fw churn: $CHURN streams + $CHURN long-polls opened and dropped in ${churned} ms;" \
    "1 s later: descriptors $fd0 -> $fd1, CLOSE_WAIT $cw0 -> $cw1, live waiters $w0 -> $w1"
  if [ "$fd1" -gt "$fd0" ] || [ "$cw1" -ne 0 ] || [ "$w1" -ne 0 ]; then
    echo "$fw churn: something was left behind"; failed=1
  fi

  polls=(); streams=()
  for ((i = 0; i < HELD; i++)); do
    open_get "$long_poll"; polls+=("$conn")
    open_get "$events"; streams+=("$conn")
  done
  if ! wait_waiters $((2 * HELD)) 60; then
    echo "$fw: only $(waiters) of $((2 * HELD)) held"; failed=1
  fi
  fd_held=$(fds "$pid")
  signalled=$(now_ms)
  kill -TERM "$pid"
  wait "$pid" || true
  stopped=$(($(now_ms) - signalled))
  pid=
  answered=0; reconnected=0
  for fd in "${polls[@]}"; do
    if read_until "$fd" "HTTP/1.1 200" 2; then answered=$((answered + 1)); fi
    exec {fd}>&-
  done
  for fd in "${streams[@]}"; do
    if read_until "$fd" "event: reconnect" 2; then reconnected=$((reconnected + 1)); fi
    exec {fd}>&-
  done
  echo "$fw shutdown: SIGTERM with $HELD long-polls + $HELD streams held ($fd_held descriptors):" \
    "exited in ${stopped} ms; $answered/$HELD long-polls answered, $reconnected/$HELD streams told to reconnect"
  if [ "$stopped" -ge "$STOP_BOUND_MS" ] || [ "$answered" -ne "$HELD" ] || [ "$reconnected" -ne "$HELD" ]; then
    echo "$fw shutdown: over the bound or a client without an answer"; failed=1
  fi
done
exit $failed
