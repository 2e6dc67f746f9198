#!/usr/bin/env bash
# Load and soak test of the axum demo over loopback, with bounded request counts.
#
#   scripts/soak.sh                          # 10 000 held long-polls, 1 000 logins/s for 300 s
#   HELD=2000 SECONDS_=30 RATE=200 scripts/soak.sh
#   ALG=es256 SHORT=1 scripts/soak.sh         # cheaper signatures; sessions leave the store 45 s
#                                            # after creation, and the run waits to see it
#   ATTACK=1 HELD=2000 SECONDS_=20 RATE=300 ALG=es256 scripts/soak.sh
#                                            # the load check of the abuse limits: the server
#                                            # runs the default Limits; the logins run twice,
#                                            # alone and beside a client holding ATTACK_STREAMS
#                                            # (1000) long-polls on one session and one posting
#                                            # scan with random credentials ATTACK_PHONE_RATE
#                                            # (1000) times a second; fails unless both are held
#                                            # to their limits and login p99 stays within 1.5x
#
# Every client has its own loopback source address (127.1.x.y; the attackers 127.0.0.2 and .3),
# as browsers on the Internet would.
# Reports server RSS per pending session and per held long-poll connection, status latency
# while the connections are held, login throughput and p99, and checks that live waiters go
# back to zero after clients disconnect (the script fails otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
HELD=${HELD:-10000}
SECONDS_=${SECONDS_:-300}
RATE=${RATE:-1000}
FRAMEWORK=${FRAMEWORK:-axum}
PORT=${PORT:-3990}
ALG=${ALG:-rs256}
SHORT=${SHORT:-0}
ATTACK=${ATTACK:-0}
export ATTACK
if [ "$SHORT" = 1 ]; then export RETAIN_WAIT=${RETAIN_WAIT:-50}; fi

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p http-bench
BIN=target/release/qrauth-bench
limits=unlimited
if [ "$ATTACK" = 1 ]; then limits=default; fi
QRAUTH_BENCH_ALG=$ALG QRAUTH_BENCH_SHORT_LIFETIMES=$SHORT QRAUTH_BENCH_LIMITS=$limits \
  "$BIN" serve "$FRAMEWORK" "127.0.0.1:$PORT" >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/" >/dev/null && break; sleep 0.1; done
"$BIN" soak "http://127.0.0.1:$PORT" "$HELD" "$SECONDS_" "$RATE"
