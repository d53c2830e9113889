#!/usr/bin/env bash
# The benchmark suite of issue 15: figures, not pass/fail. It sets up what it needs (200
# containers, 100 images, on the local engine, under a unique label, removed at the end),
# measures Berth and the baseline a user would otherwise use (the engine over its own
# socket; `docker build` for the build context) alternately in the same run, and prints
# one markdown table: figure | Berth | baseline | ratio | goal | met?
#
# Reproduce (on a machine where scripts/test-env.sh can run; quietest when nothing else
# runs: check `ps aux | grep -E 'berth serve|bench'` first):
#   scripts/bench/suite.sh                     # default: about 2 minutes after the build
#   SUBSCRIBERS=5000 scripts/bench/suite.sh    # the SSE fan-out at the issue's 5,000 (about 5 minutes)
#   FULL=1 scripts/bench/suite.sh              # + 1 GiB build context, 100,000-job store rows (~30 min more)
# Measured here: 2026-12-08, Linux 6.18.44-fc-v1300 (`uname -r`), 2 x "Intel(R) Xeon(R)
# Processor" (a VM), 24 GiB, docker 20.10.24 (API 1.41), SQLite and PostgreSQL 15 of
# scripts/test-env.sh; the default run took 126 s wall, SUBSCRIBERS=5000 304 s, FULL=1
# SKIP_JOBS=1 102 s. The printed table repeats date, kernel and CPU.
# Knobs: PORT (18580), N (300) requests of each list/inspect per side after WARMUP (30),
# CONTAINERS (200), IMAGES (100), RUNS (10) starts for the ready time, CLIENTS (64) and
# REQUESTS (2000) of the mixed load, SUBSCRIBERS (1000) and LINES (10000) of the SSE
# fan-out, FOLLOWERS (200) log follows, JOBS (5000; 100000 with FULL=1) and READS (300;
# 2000 with FULL=1) for scripts/bench/jobs.sh (SKIP_JOBS=1 leaves those rows to it),
# SIZE_MIB (1024) for scripts/bench/build-context.sh (FULL=1 only), SKIP_BUILD=1 uses
# the binaries in target/release as they are.
#
# What each row is, and how (the measurer is examples/bench_suite.rs, one HTTP/1.1 stack,
# hyper, for Berth over TCP and the engine over its unix socket, keep-alive, no
# Accept-Encoding, so neither side compresses):
# - release binary: `stat` of target/release/berth and of a `strip -o` copy; the console
#   (/ui/) and Swagger UI (/swagger-ui/) are checked to be served from it.
# - idle RSS: a fresh Berth (empty data dir; the release binary, then its stripped copy),
#   1 s after its port listens, before any request: VmRSS (RssAnon + RssFile + RssShmem)
#   of /proc/PID/status.
# - ready: exec to the first 200 of /readyz (polled every 0.5 ms), median of RUNS starts
#   on the same data dir; the engine's /_ping on a fresh connection in the notes.
# - lists and inspect: Berth (admin token) and the engine, alternately request by request
#   (which goes first alternates), N each after the warm-up; p50 and p90; ratio of p50s.
# - mixed load: REQUESTS requests (lists of containers and images, inspects, job lists,
#   job gets: a fifth each) from CLIENTS clients, on a fresh Berth (20 run jobs made
#   first, to have jobs to get); VmRSS 2 s after, VmHWM during.
# - SSE fan-out: a fresh Berth with BERTH_CONCURRENCY_RUN=1; a blocker run holds the slot,
#   so the chatty run (LINES lines) stays queued until every subscriber is connected (each
#   has its replayed `queued`), then the blocker is cancelled. Lag = receive time minus
#   the time the first subscriber received the same event id (2 % histogram buckets).
#   BERTH_MAX_STREAMS_PER_SUBJECT and BERTH_JOB_LOG_EVENTS_MAX are raised for the run.
# - log follows: FOLLOWERS `logs?follow=true&tail=1` on one container printing 5 lines/s,
#   each live (2 log events read); Berth's sockets connected to the engine socket are its
#   /proc/PID/fd socket inodes that are the peers of ESTAB sockets bound to docker.sock in
#   `ss -xan`; RSS then.
# - job store rows: scripts/bench/jobs.sh (SQLite and PostgreSQL, floor = /healthz on the
#   same servers), parsed; build context rows: scripts/bench/build-context.sh, parsed.
set -euo pipefail
cd "$(dirname "$0")/../.."
t_start=$(date +%s)
FULL="${FULL:-0}"
PORT="${PORT:-18580}"
N="${N:-300}"
WARMUP="${WARMUP:-30}"
CONTAINERS="${CONTAINERS:-200}"
IMAGES="${IMAGES:-100}"
RUNS="${RUNS:-10}"
CLIENTS="${CLIENTS:-64}"
REQUESTS="${REQUESTS:-2000}"
SUBSCRIBERS="${SUBSCRIBERS:-1000}"
LINES="${LINES:-10000}"
FOLLOWERS="${FOLLOWERS:-200}"
SIZE_MIB="${SIZE_MIB:-1024}"
if [ "$FULL" = 1 ]; then JOBS="${JOBS:-100000}" READS="${READS:-2000}"; else JOBS="${JOBS:-5000}" READS="${READS:-300}"; fi
ENGINE_SOCK="${DOCKER_HOST:-unix:///var/run/docker.sock}"
ENGINE_SOCK="${ENGINE_SOCK#unix://}"
BASE_IMAGE=berth-test/busybox:latest
work="$(mktemp -d)"
label="suite-$(date +%s)-$$"
repo="berth-bench-$label/img"
pid=""

start_berth() { # [VAR=value ...]
  env "$@" "${RUN_BIN:-$BIN}" serve >>"$work/berth.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 500); do
    [ -n "$(ss -ltnH "sport = :$PORT" 2>/dev/null)" ] && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.01
  done
  echo "berth did not listen on $PORT" >&2
  exit 1
}
wait_ready() {
  for _ in $(seq 1 200); do curl -fsS "$B/readyz" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "berth not ready" >&2
  exit 1
}
stop_berth() {
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
cleanup() {
  rc=$?
  stop_berth
  # Run jobs in flight when a Berth stopped may land a moment later: sweep twice.
  for _ in 1 2; do
    docker ps -aq --filter "label=bench.suite=$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
    sleep 1
  done
  docker images -q --filter "label=bench.suite=$label" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ -s "$work/berth.log" ]; then
    echo "--- berth log, last lines:" >&2
    tail -n 20 "$work/berth.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { printf '[suite %3ds] %s\n' "$(($(date +%s) - t_start))" "$*" >&2; }
kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }

# Every subscriber and follower is a socket on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((SUBSCRIBERS + FOLLOWERS + 512)) ] || say "warning: ulimit -n $(ulimit -n) is low for $SUBSCRIBERS subscribers"

say "preparing the engine (scripts/test-env.sh)"
./scripts/test-env.sh >"$work/test-env.log" 2>&1 || { cat "$work/test-env.log" >&2; exit 1; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  say "building release berth and examples/bench_suite"
  cargo build --release --quiet --bin berth --example bench_suite
fi
BIN=./target/release/berth
SUITE=./target/release/examples/bench_suite

export BERTH_JWT_SECRET="suite-$(openssl rand -hex 16)" BERTH_LISTEN=127.0.0.1:$PORT \
  BERTH_DATA_DIR="$work/data" BERTH_LOG_FORMAT=json RUST_LOG=warn
TOKEN=$($BIN token --sub bench-suite --role admin --ttl 2h)
export BENCH_TOKEN="$TOKEN"
B="http://127.0.0.1:$PORT"

common=(--addr "127.0.0.1:$PORT" --engine-sock "$ENGINE_SOCK" --label "$label")

# ---- setup: containers and images under the run's label ---------------------------------
say "creating $CONTAINERS containers and $IMAGES images (label bench.suite=$label)"
seq "$CONTAINERS" | xargs -P 4 -I{} docker create --label "bench.suite=$label" "$BASE_IMAGE" true >/dev/null
# IMAGES distinct images (each its own config, label and id) over the base image's one
# layer, loaded at once: `docker save` of the base, configs multiplied, `docker load`.
mkdir "$work/img"
docker save "$BASE_IMAGE" | tar -C "$work/img" -x
python3 - "$work/img" "$IMAGES" "$label" "$repo" <<'PY'
import hashlib, json, os, sys
d, n, label, repo = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = json.load(open(f"{d}/manifest.json"))[0]
cfg = json.load(open(f"{d}/{m['Config']}"))
out = []
for i in range(1, n + 1):
    c = json.loads(json.dumps(cfg))
    c.setdefault("config", {})["Labels"] = {"bench.suite": label, "bench.suite.n": str(i)}
    b = json.dumps(c, separators=(",", ":")).encode()
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/{h}.json", "wb").write(b)
    out.append({"Config": f"{h}.json", "RepoTags": [f"{repo}:{i}"], "Layers": m["Layers"]})
json.dump(out, open(f"{d}/manifest.json", "w"))
if os.path.exists(f"{d}/repositories"):
    os.remove(f"{d}/repositories")
PY
tar -C "$work/img" -c . | docker load -q >/dev/null
rm -rf "$work/img"
made_images=$(docker images -q --filter "label=bench.suite=$label" | sort -u | wc -l)
all_containers=$(docker ps -aq | wc -l)
all_images=$(docker images -q | sort -u | wc -l)

# ---- 1. binary size, idle RSS, ready time ---------------------------------------------
bin_bytes=$(stat -c %s "$BIN")
strip -o "$work/berth.stripped" "$BIN"
stripped_bytes=$(stat -c %s "$work/berth.stripped")

say "idle RSS: a fresh Berth (release binary, then its stripped copy), 1 s after it listens, no request"
start_berth BERTH_DATA_DIR="$work/data-idle"
sleep 1
idle_rss=$(kib "$pid" VmRSS) idle_anon=$(kib "$pid" RssAnon) idle_file=$(kib "$pid" RssFile) idle_shmem=$(kib "$pid" RssShmem)
idle_threads=$(awk '$1 == "Threads:" {print $2}' "/proc/$pid/status")
stop_berth
RUN_BIN="$work/berth.stripped" start_berth BERTH_DATA_DIR="$work/data-idle-stripped"
sleep 1
idle_stripped_rss=$(kib "$pid" VmRSS) idle_stripped_file=$(kib "$pid" RssFile)
stop_berth
rm -rf "$work/berth.stripped" "$work/data-idle" "$work/data-idle-stripped"

say "ready: $RUNS starts, exec to the first 200 of /readyz"
$SUITE ready --bin "$BIN" --addr "127.0.0.1:$PORT" --runs "$RUNS" --log "$work/berth.log" --engine-sock "$ENGINE_SOCK" >"$work/ready.json"

# ---- 2-3. lists and inspect, alternately with the engine -------------------------------
say "lists and inspect: $N of each through Berth and on the engine socket, alternately"
start_berth
wait_ready
ui=$(curl -sL -o /dev/null -w '%{http_code}' "$B/ui/")
swagger=$(curl -sL -o /dev/null -w '%{http_code}' "$B/swagger-ui/")
$SUITE lists "${common[@]}" --pid "$pid" --n "$N" --warmup "$WARMUP" >"$work/lists.json"
stop_berth

# ---- 4. RSS under the mixed load -------------------------------------------------------
say "mixed load: $REQUESTS requests from $CLIENTS clients on a fresh process"
start_berth
wait_ready
$SUITE mixed "${common[@]}" --pid "$pid" --clients "$CLIENTS" --requests "$REQUESTS" >"$work/mixed.json"
stop_berth

# ---- 5. SSE fan-out --------------------------------------------------------------------
say "SSE: $SUBSCRIBERS subscribers to one run job printing $LINES lines"
start_berth BERTH_CONCURRENCY_RUN=1 BERTH_MAX_STREAMS_PER_SUBJECT=$((SUBSCRIBERS + 100)) \
  BERTH_JOB_LOG_EVENTS_MAX=$((LINES + 1000))
wait_ready
$SUITE sse "${common[@]}" --pid "$pid" --subscribers "$SUBSCRIBERS" --lines "$LINES" >"$work/sse.json"
stop_berth

# ---- 6. log follows --------------------------------------------------------------------
say "log follows: $FOLLOWERS on one running container"
ticker=$(docker run -d --label "bench.suite=$label" "$BASE_IMAGE" sh -c 'i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done')
start_berth BERTH_MAX_STREAMS_PER_SUBJECT=$((FOLLOWERS + 100))
wait_ready
$SUITE follow "${common[@]}" --pid "$pid" --container "$ticker" --followers "$FOLLOWERS" >"$work/follow.json"
stop_berth
docker rm -f "$ticker" >/dev/null

# ---- job store rows: scripts/bench/jobs.sh -----------------------------------------------
if [ "${SKIP_JOBS:-0}" != 1 ]; then
  say "job store: scripts/bench/jobs.sh with JOBS=$JOBS READS=$READS"
  JOBS="$JOBS" READS="$READS" CHUNK="$((JOBS < 5000 ? JOBS : 5000))" PORT=$((PORT + 10)) EXPLAIN=0 \
    ./scripts/bench/jobs.sh >"$work/jobs.out" 2>"$work/jobs.err" || say "scripts/bench/jobs.sh failed (rows left out): $(tail -n 3 "$work/jobs.err" | tr '\n' ' ')"
fi

# ---- 7. 1 GiB build context: scripts/bench/build-context.sh ----------------------------
if [ "$FULL" = 1 ]; then
  say "build context: scripts/bench/build-context.sh with SIZE_MIB=$SIZE_MIB"
  SIZE_MIB="$SIZE_MIB" PORT=$((PORT + 20)) ./scripts/bench/build-context.sh >"$work/build.out" 2>"$work/build.err" \
    || say "scripts/bench/build-context.sh failed (row left out): $(tail -n 3 "$work/build.err" | tr '\n' ' ')"
fi

# ---- the table --------------------------------------------------------------------------
wall=$(($(date +%s) - t_start))
export bin_bytes stripped_bytes idle_stripped_rss idle_stripped_file idle_rss idle_anon idle_file idle_shmem idle_threads ui swagger made_images all_containers \
  all_images wall FULL JOBS SIZE_MIB CONTAINERS IMAGES SUBSCRIBERS LINES FOLLOWERS REQUESTS CLIENTS RUNS N
python3 - "$work" <<'PY'
import json, os, re, subprocess, sys, datetime
w = sys.argv[1]
E = os.environ
def load(name):
    try:
        with open(f"{w}/{name}") as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception:
        return None
def text(name):
    try:
        return open(f"{w}/{name}").read()
    except Exception:
        return ""
rows = []
def row(figure, berth, baseline="—", ratio="—", goal="", met="—"):
    rows.append((figure, berth, baseline, ratio, goal, met))
yn = lambda ok: "yes" if ok else "**no**"
MiB = lambda kib: float(kib) / 1024

# 1. size, idle RSS, ready
stripped, unstripped = int(E["stripped_bytes"]), int(E["bin_bytes"])
ui_ok = E["ui"] == "200" and E["swagger"] == "200"
row("release binary, stripped (console and Swagger UI inside: " + ("served" if ui_ok else f"/ui/ {E['ui']}, /swagger-ui/ {E['swagger']}") + ")",
    f"{stripped/1e6:.1f} MB ({unstripped/1e6:.1f} MB unstripped)", goal="< 20 MB", met=yn(stripped < 20e6 and ui_ok))
row("idle RSS after start, before any request",
    f"{MiB(E['idle_rss']):.1f} MiB (anon {MiB(E['idle_anon']):.1f}, file {MiB(E['idle_file']):.1f}, shmem {MiB(E['idle_shmem']):.1f}; "
    f"{E['idle_threads']} threads); stripped copy {MiB(E['idle_stripped_rss']):.1f} MiB (file {MiB(E['idle_stripped_file']):.1f})",
    goal="<= 12 MiB", met=yn(MiB(E["idle_rss"]) <= 12))
r = load("ready.json")
if r:
    row(f"exec to first 200 of /readyz, median of {r['runs']} starts",
        f"{r['median_ms']:.1f} ms ({r['min_ms']:.1f}-{r['max_ms']:.1f}; listening at {r['listen_median_ms']:.1f})",
        goal="< 100 ms", met=yn(r["median_ms"] < 100))

# 2-3. lists and inspect
l = load("lists.json")
if l:
    info = l["info"]
    names = {
        "list_containers": f"list containers, p50 (p90): `GET /v1/containers?all=true` vs `/containers/json?all=1` ({info.get('list_containers.engine.count')} containers)",
        "list_images": f"list images, p50 (p90): `GET /v1/images` vs `/images/json` ({info.get('list_images.engine.count')} images)",
        "inspect_container": "inspect container, p50 (p90): `GET /v1/containers/{id}` vs `/containers/{id}/json`",
    }
    for k, name in names.items():
        v = l[k]
        row(name + f", {v['n']} each alternately", f"{v['berth_p50']:.2f} ms ({v['berth_p90']:.2f})",
            f"{v['engine_p50']:.2f} ms ({v['engine_p90']:.2f}) engine socket", f"{v['ratio_p50']:.2f}x", "<= 1.05x", yn(v["ratio_p50"] <= 1.05))

# 4. mixed
m = load("mixed.json")
if m:
    row(f"RSS after {m['requests']} mixed requests from {m['clients']} clients ({m['ok']} ok, {m['errors']} errors, {m['per_s']:.0f} req/s)",
        f"{m['rss_after_mib']:.1f} MiB after, {m['peak_mib']:.1f} MiB peak (before {m['rss_before_mib']:.1f})",
        goal="<= 40 MiB", met=yn(m["rss_after_mib"] <= 40 and m["errors"] == 0))

# 7. build context (FULL=1)
b = text("build.out")
mb = re.search(r"docker build \(baseline\):\s+([\d.]+) s", b)
mberth = re.search(r"berth build \(upload\+build\):\s+([\d.]+) s\s+\(upload/spool ([\d.]+) s\)", b)
midle = re.search(r"berth RSS idle:\s+([\d.]+) MiB", b)
mpeak = re.search(r"berth RSS peak \(VmHWM\):\s+([\d.]+) MiB", b)
if mb and mberth and midle and mpeak:
    d, bb = float(mb.group(1)), float(mberth.group(1))
    row(f"{E['SIZE_MIB']} MiB build context, wall (upload + build)", f"{bb:.2f} s (upload {float(mberth.group(2)):.2f} s)",
        f"{d:.2f} s `docker build` of the same tar", f"{bb/d:.2f}x", "<= 1.03x", yn(bb / d <= 1.03))
    g = float(mpeak.group(1)) - float(midle.group(1))
    row(f"{E['SIZE_MIB']} MiB build context, peak RSS growth", f"{g:.1f} MiB ({midle.group(1)} idle, {mpeak.group(1)} peak)",
        goal="< 16 MiB", met=yn(g < 16))
else:
    why = "skipped (FULL=1 runs scripts/bench/build-context.sh)" if E["FULL"] != "1" else "failed: see scripts/bench/build-context.sh"
    row(f"{E['SIZE_MIB']} MiB build context, wall and peak RSS growth", why, goal="<= 1.03x; < 16 MiB")

# 5. SSE
s = load("sse.json")
if s:
    n = s["subscribers"]
    at = "" if n >= 5000 else f" (at {n}, goal at 5000)"
    ok_all = s["complete"] == n and s["all_lines"] == n
    row(f"SSE: {n} subscribers to one run job of {s['lines']} lines: got every event (ids 1..{s['end_id']}, {s['log_events_per_subscriber']} log) and `end`",
        f"{s['complete']}/{n} (connected in {s['connect_s']:.1f} s; all done {s['first_log_to_all_done_s']:.1f} s after the first line)",
        goal="all, at 5000", met=yn(ok_all) + at)
    row(f"SSE: Berth peak RSS, {n} subscribers", f"{s['peak_mib']:.1f} MiB ({s['rss_connected_mib']:.1f} connected, before the job ran)",
        goal="< 200 MiB", met=yn(s["peak_mib"] < 200) + at)
    row(f"SSE: delivery lag vs the first subscriber, p50 / p99 ({n} subscribers)",
        f"{s['lag_p50_ms']:.1f} / {s['lag_p99_ms']:.1f} ms (max {s['lag_max_ms']:.0f})",
        goal="p99 < 100 ms", met=yn(s["lag_p99_ms"] < 100) + at)

# job store (scripts/bench/jobs.sh)
j = text("jobs.out")
def jrow(prefix):
    for line in j.splitlines():
        if line.startswith(prefix):
            parts = line[44:].split()
            if len(parts) >= 4:
                return float(parts[0]), float(parts[1]), " ".join(parts[3:])
    return None
jl, jg, js = jrow("GET /v1/jobs?limit=100 p50"), jrow("GET /v1/jobs/{id} p50"), jrow("submit jobs/s, whole fill")
jobs_n = int(E["JOBS"])
at = "" if jobs_n >= 100000 else f" (at {jobs_n:,}, goal at 100,000)"
if jl and jg and js:
    for i, store in enumerate(["SQLite", "PostgreSQL"]):
        floor = float(jl[2].split()[0])
        row(f"{jobs_n:,} stored jobs, `GET /v1/jobs?limit=100` p50, {store}", f"{jl[i]:.2f} ms", f"{jl[2]} `/healthz` p50",
            f"{jl[i]/floor:.1f}x", "< 5 ms", yn(jl[i] < 5) + at)
    for i, store in enumerate(["SQLite", "PostgreSQL"]):
        floor = float(jg[2].split()[0])
        row(f"{jobs_n:,} stored jobs, `GET /v1/jobs/{{id}}` p50, {store}", f"{jg[i]:.2f} ms", f"{jg[2]} `/healthz` p50",
            f"{jg[i]/floor:.1f}x", "< 1 ms", yn(jg[i] < 1) + at)
    floor = float(js[2].rstrip("/s"))
    row(f"job submits accepted per second, SQLite ({jobs_n:,}, 16 clients)", f"{js[0]:.0f}/s (PostgreSQL {js[1]:.0f}/s)",
        f"{js[2]} `/healthz`", f"{js[0]/floor:.2f}x", ">= 1000/s", yn(js[0] >= 1000) + at)
else:
    row("100,000 stored jobs: list and get p50 on SQLite and PostgreSQL; submits/s", "see scripts/bench/jobs.sh" +
        ("" if os.environ.get("SKIP_JOBS") == "1" else " (its run failed here)"), goal="< 5 ms; < 1 ms; >= 1000/s")

# 6. follows
f = load("follow.json")
if f:
    n = f["followers"]
    conns = f["engine_conns_during"]
    row(f"{n} concurrent `logs?follow=true` on one container ({f['live']} live): Berth's engine connections",
        f"{conns} (idle {f['engine_conns_before']}, {f['engine_conns_after']} 3 s after they left)",
        f"{n}: one per follower (`docker logs -f`)", f"{conns/n:.2f}x", f"<= {n}", yn(conns <= n and f["live"] == n))
    row(f"{n} concurrent log follows: Berth RSS", f"{f['rss_mib']:.1f} MiB (peak {f['peak_mib']:.1f})", goal="< 100 MiB",
        met=yn(f["rss_mib"] < 100))

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
docker_v = subprocess.run(["docker", "version", "-f", "{{.Server.Version}} (API {{.Server.APIVersion}})"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
print(f"Berth benchmark suite, {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; kernel {os.uname().release}; "
      f"{os.cpu_count()} x {cpu}; docker {docker_v}; commit {commit} (work tree as is); release build; "
      f"engine holds {E['all_containers']} containers, {E['all_images']} images; wall {E['wall']} s")
print()
print("| figure | Berth | baseline | ratio | goal | met? |")
print("|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(c) for c in r) + " |")
print()
notes = []
if r := load("ready.json"):
    notes.append(f"ready: all starts (ms) {', '.join(f'{x:.0f}' for x in r['ready_ms'])}; the engine's /_ping on a fresh connection answers in {r['engine_ping_median_ms']:.2f} ms (median)")
if l:
    i = l["info"]
    notes.append("answer sizes (bytes, Berth / engine): " + ", ".join(
        f"{k} {i.get(k + '.berth.bytes')} / {i.get(k + '.engine.bytes')}" for k in ["list_containers", "list_images", "inspect_container"]) +
        f"; Content-Encoding from Berth: {i.get('list_containers.berth.content_encoding')}; engine {l['engine_api']}")
    fl, fr = l["floor"], l["inspect_engine_fresh_conn"]
    notes.append(f"per-request floor, same run, alternately: Berth `/healthz` p50 {fl['berth_p50']:.2f} ms, engine `/_ping` p50 {fl['engine_p50']:.2f} ms; "
                 f"the engine's inspect on a new connection per request (bollard's unix transport keeps none) p50 {fr['p50']:.2f} ms (p90 {fr['p90']:.2f})")
if m:
    notes.append("mixed load p50/p99 ms: " + ", ".join(f"{k} {v['p50']:.1f}/{v['p99']:.1f}" for k, v in m["per_kind"].items()) +
                 f"; {m['wall_s']:.1f} s; RSS anon {m['rss_anon_after_mib']:.1f} MiB, file {m['rss_file_after_mib']:.1f} MiB after")
if s:
    dur = "?"
    try:
        p_ = lambda t: datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
        dur = f"{(p_(s['job_finished_at']) - p_(s['job_started_at'])).total_seconds():.1f} s"
    except Exception:
        pass
    notes.append(f"SSE: job {s['job_state']} in {dur} (started to finished), result {s['job_result']}, {s['events_delivered']:,} events delivered in all, first line "
                 f"{s['released_to_first_log_s']:.1f} s after the release; lag p90 {s['lag_p90_ms']:.1f} ms; errors {s['errors'] or 'none'}; "
                 f"CPU during the fan-out: Berth {s['berth_cpu_s']:.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in s["berth_threads_cpu_s"]) +
                 f"), the measurer {s['measurer_cpu_s']:.1f} s")
if f and f["errors"]:
    notes.append(f"follows: errors {f['errors']}")
for n_ in notes:
    print(f"- {n_}")
PY
