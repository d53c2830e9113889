#!/usr/bin/env bash
# Benchmark of the job store: SQLite next to PostgreSQL, in one run, side by side, with the
# HTTP floor (`GET /healthz` on the same servers) measured in the same run. Figures, not
# pass/fail. Prints a table: figure, SQLite, PostgreSQL, ratio PostgreSQL/SQLite, floor.
#   scripts/bench/jobs.sh                      # 100,000 jobs per store (about 20 minutes here)
#   JOBS=5000 READS=300 scripts/bench/jobs.sh  # a quick check (about 1 minute after the build)
# Needs the test environment (scripts/test-env.sh, run first: its PostgreSQL 15 cluster on
# 127.0.0.1:55432) and psql; builds Berth and examples/jobs_bench.rs in release mode.
# Knobs: JOBS (100000) jobs per store, CHUNK (5000) jobs per store per round, CLIENTS (16)
# concurrent submitters, READS (2000) requests of each read route per store, PORT (18574;
# PORT+1 for the PostgreSQL one), PG_URL (postgres://berth@127.0.0.1:55432, no database),
# PG_SYNCHRONOUS_COMMIT (unset: the cluster's own, `on`; `off` gives PostgreSQL the
# durability of SQLite's WAL + synchronous=NORMAL, which does not fsync each commit),
# EXPLAIN (1) prints PostgreSQL's plans of the list and claim queries on the filled table,
# DRAIN_TIMEOUT (900) seconds a store's queue may take to drain after a round (a claim
# that reads every finished job, as before PostgreSQL's migration 4, drains 5000 jobs in
# minutes at 50k jobs: this bench notices it).
#
# How: two release Berths, one on SQLite (its own data dir) and one on a throwaway
# PostgreSQL database (created here, dropped at the end), both pointed at an engine that is
# not there (DOCKER_HOST names a socket that does not exist), so each pull job answers 202,
# is stored, and fails at once (docker_unavailable) on the worker: what is measured is the
# submit path and the store, never the engine. Both servers run for the whole run, but the
# load goes to one at a time (the machine has 2 cores, and the generator and PostgreSQL
# need them too): the fill goes in rounds, CHUNK jobs to one store (after 1 s of healthz/s
# on it: the throughput floor) and its queue drained, then CHUNK to the other, the first
# store alternating, until both hold JOBS; so both see the machine's conditions of the
# whole run alike (others' builds on a shared machine) and the idle one costs nothing.
# That fill IS the throughput figure (jobs accepted per second over each store's own
# submit time: whole fill, first 10k, last 10k). Then the reads go to both alternately,
# request by request, one at a time (healthz, list, get by id), after a warm-up.
# The generator is examples/jobs_bench.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS="${JOBS:-100000}"
CLIENTS="${CLIENTS:-16}"
CHUNK="${CHUNK:-5000}"
READS="${READS:-2000}"
PORT="${PORT:-18574}"
PG_PORT_HTTP=$((PORT + 1))
PG_URL="${PG_URL:-postgres://berth@127.0.0.1:55432}"
EXPLAIN="${EXPLAIN:-1}"
DRAIN_TIMEOUT="${DRAIN_TIMEOUT:-900}"
work="$(mktemp -d)"
db="berth_bench_$(date +%s)_$$"
psql_() { psql "$PG_URL/${1}" -X -q -v ON_ERROR_STOP=1 "${@:2}"; }
cleanup() {
  rc=$?
  for p in "${sqlite_pid:-}" "${pg_pid:-}"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "${sqlite_pid:-}" "${pg_pid:-}"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  if [ "$rc" -ne 0 ]; then
    for f in sqlite postgres; do
      [ -s "$work/berth-$f.log" ] && { echo "--- berth ($f) log, last lines:"; tail -n 20 "$work/berth-$f.log"; } >&2
    done
  fi
  [ -n "${db_made:-}" ] && psql_ postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$(date +%s)
./scripts/test-env.sh >/dev/null
cargo build --release --quiet --bin berth --example jobs_bench

psql_ postgres -c "CREATE DATABASE $db"
db_made=1
if [ -n "${PG_SYNCHRONOUS_COMMIT:-}" ]; then
  psql_ postgres -c "ALTER DATABASE $db SET synchronous_commit = '$PG_SYNCHRONOUS_COMMIT'"
fi

export BERTH_JWT_SECRET=jobs-bench-secret-0123456789abcdef BERTH_LOG_FORMAT=json RUST_LOG=warn \
  BERTH_QUEUE_CAPACITY=200000 DOCKER_HOST="unix://$work/no-engine.sock"
BERTH_LISTEN=127.0.0.1:$PORT BERTH_DATA_DIR="$work/data-sqlite" \
  ./target/release/berth serve >"$work/berth-sqlite.log" 2>&1 &
sqlite_pid=$!
BERTH_LISTEN=127.0.0.1:$PG_PORT_HTTP BERTH_DATA_DIR="$work/data-postgres" BERTH_DATABASE_URL="$PG_URL/$db" \
  ./target/release/berth serve >"$work/berth-postgres.log" 2>&1 &
pg_pid=$!
for port in "$PORT" "$PG_PORT_HTTP"; do
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { echo "berth on port $port did not start" >&2; exit 1; }
done
token=$(./target/release/berth token --sub bench --role admin --ttl 24h)

echo "jobs bench: $(nproc) cores; SQLite WAL synchronous=NORMAL; PostgreSQL $(psql_ "$db" -Atc 'SHOW server_version') synchronous_commit=$(psql_ "$db" -Atc 'SHOW synchronous_commit') fsync=$(psql_ "$db" -Atc 'SHOW fsync')"
./target/release/examples/jobs_bench --sqlite "http://127.0.0.1:$PORT" --postgres "http://127.0.0.1:$PG_PORT_HTTP" \
  --token "$token" --jobs "$JOBS" --chunk "$CHUNK" --clients "$CLIENTS" --reads "$READS" --drain-timeout "$DRAIN_TIMEOUT"

mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
sqlite_bytes=$(du -sb "$work/data-sqlite" | cut -f1)
pg_bytes=$(psql_ "$db" -Atc "SELECT pg_total_relation_size('jobs') + pg_total_relation_size('job_events')")
printf 'berth peak RSS: SQLite %s MiB, PostgreSQL %s MiB; store size (jobs + events): SQLite %.1f MiB (data dir), PostgreSQL %.1f MiB (tables)\n' \
  "$(mib "$sqlite_pid")" "$(mib "$pg_pid")" "$(echo "$sqlite_bytes / 1048576" | bc -l)" "$(echo "$pg_bytes / 1048576" | bc -l)"
if [ "$EXPLAIN" = 1 ]; then
  # The query PostgresStore::list issues for an admin's `GET /v1/jobs?limit=100` (limit + 1).
  cols="id, kind, state, owner, created_at, started_at, finished_at, request, progress, result, error, idempotency_key, authority, seal, spool, team, host, replica"
  echo "PostgreSQL plan of the list query:"
  psql_ "$db" -Atc "EXPLAIN (ANALYZE, BUFFERS) SELECT $cols FROM jobs WHERE true ORDER BY id DESC LIMIT 101" | sed 's/^/  /'
  # The lookup of PostgresStore::claim_next (on an empty queue now: its plan, and what
  # finding nothing costs; it must read the queued rows only, never every finished job).
  echo "PostgreSQL plan of the claim's lookup (empty queue):"
  psql_ "$db" -Atc "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM jobs WHERE state = 'queued' AND kind = 'pull'
    AND host = 'local' AND (pinned IS NULL OR pinned = 'x') ORDER BY id LIMIT 1" | sed 's/^/  /'
fi
echo "wall time: $(( $(date +%s) - start )) s"
