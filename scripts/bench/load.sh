#!/usr/bin/env bash
# Load test: the release service under many concurrent clients (lists, run jobs, SSE
# subscribers). Prints errors (must be 0 besides 429), p50/p99 latency per request kind
# against /healthz in the same run, throughput, and the service's peak RSS.
#   CLIENTS=64 SUBSCRIBERS=16 DURATION=30 scripts/bench/load.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT="${PORT:-18572}"
work="$(mktemp -d)"
label="load-$(date +%s)"
cleanup() {
  kill "${pid:-0}" 2>/dev/null || true
  # Creates in flight when the service stopped may land a moment later: sweep twice.
  for _ in 1 2; do
    sleep 1
    docker ps -aq --filter "label=berth.load=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
./scripts/test-env.sh >/dev/null
cargo build --release --quiet --bin berth --example load

export BERTH_JWT_SECRET=load-secret-0123456789abcdef BERTH_LISTEN=127.0.0.1:$PORT \
  BERTH_DATA_DIR="$work/data" BERTH_LOG_FORMAT=json RUST_LOG=warn BERTH_QUEUE_CAPACITY="${QUEUE:-200}"
./target/release/berth serve >"$work/berth.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
idle_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
token=$(./target/release/berth token --sub load --role operator --ttl 1h)
set +e
./target/release/examples/load --url "http://127.0.0.1:$PORT" --token "$token" --label "$label" \
  --clients "${CLIENTS:-64}" --subscribers "${SUBSCRIBERS:-16}" --seconds "${SECONDS_:-${DURATION:-30}}"
rc=$?
set -e
peak_kib=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
printf 'berth RSS idle %.1f MiB, peak %.1f MiB\n' "$(python3 -c "print($idle_kib/1024)")" "$(python3 -c "print($peak_kib/1024)")"
exit $rc
