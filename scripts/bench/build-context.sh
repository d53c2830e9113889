#!/usr/bin/env bash
# Benchmark: a large build context through Berth next to `docker build` of the same context.
# Prints the service's idle and peak RSS (VmHWM) and both wall times, and their ratios.
#   SIZE_MIB=1024 scripts/bench/build-context.sh
# Needs the test environment (scripts/test-env.sh) and builds Berth in release mode.
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZE_MIB="${SIZE_MIB:-1024}"
PORT="${PORT:-18571}"
work="$(mktemp -d)"
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"; docker rmi -f berth-bench/ctx:docker berth-bench/ctx:berth >/dev/null 2>&1 || true' EXIT

./scripts/test-env.sh >/dev/null
cargo build --release --quiet --bin berth

mkdir -p "$work/ctx"
printf 'FROM berth-test/busybox:latest\nLABEL berth.bench=context\n' >"$work/ctx/Dockerfile"
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$work/ctx/blob.bin"
tar -C "$work/ctx" -cf "$work/ctx.tar" .
bytes=$(stat -c %s "$work/ctx.tar")

now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# Baseline: the docker CLI sending the same tar to the same engine.
t0=$(now)
docker build -q --no-cache -t berth-bench/ctx:docker - <"$work/ctx.tar" >/dev/null
t1=$(now)
docker_s=$(calc "$t1 - $t0")

export BERTH_JWT_SECRET=bench-secret-0123456789abcdef BERTH_LISTEN=127.0.0.1:$PORT \
  BERTH_DATA_DIR="$work/data" BERTH_LOG_FORMAT=json RUST_LOG=warn
./target/release/berth serve >"$work/berth.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
idle_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
token=$(./target/release/berth token --sub bench --role operator)

t0=$(now)
job=$(curl -fsS -X POST "http://127.0.0.1:$PORT/v1/images/build?tag=berth-bench/ctx:berth&nocache=true" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/x-tar' -T "$work/ctx.tar" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
t_upload=$(now)
# Follow the job's events until `end`.
curl -fsS -N "http://127.0.0.1:$PORT/v1/jobs/$job/events" -H "Authorization: Bearer $token" | grep -m1 '^event: end' >/dev/null
t1=$(now)
state=$(curl -fsS "http://127.0.0.1:$PORT/v1/jobs/$job" -H "Authorization: Bearer $token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
peak_kib=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
berth_s=$(calc "$t1 - $t0")
upload_s=$(calc "$t_upload - $t0")

printf 'context: %d MiB (%d bytes), job state: %s\n' "$SIZE_MIB" "$bytes" "$state"
printf 'docker build (baseline):     %6.2f s\n' "$docker_s"
printf 'berth build (upload+build):  %6.2f s   (upload/spool %.2f s)   ratio %.2fx\n' "$berth_s" "$upload_s" "$(calc "$berth_s / $docker_s")"
printf 'berth RSS idle:              %6.1f MiB\n' "$(calc "$idle_kib / 1024")"
printf 'berth RSS peak (VmHWM):      %6.1f MiB   (%.4f of the context size)\n' "$(calc "$peak_kib / 1024")" "$(calc "$peak_kib * 1024 / $bytes")"
[ "$state" = succeeded ] || { echo "the build job did not succeed" >&2; tail -5 "$work/berth.log" >&2; exit 1; }
