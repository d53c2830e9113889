#!/usr/bin/env bash
# The replicas' shipping test: docker-compose.replicas.yml (PostgreSQL, two Berth replicas,
# nginx in front) run for real against the host engine, without Docker Hub:
#   - Berth's image from scripts/image.sh (CARGO_PROFILE, as there); local stand-ins for the
#     postgres and nginx images (deploy/postgres, deploy/proxy, on the base image.sh
#     bootstraps), built once and kept as berth-test/postgres:15 and berth-test/proxy:nginx
#     (rebuilt when their files or the base change); POSTGRES_IMAGE / PROXY_IMAGE name others
#     (e.g. the official postgres:15 and nginx:1.27) to use those instead;
#   - then through the proxy: 401 without a token; /readyz answered by both replicas; a run
#     job submitted, followed to `succeeded` and its events streamed; exec sessions created
#     and started over WebSocket (sticky routing: create and socket on one replica; a
#     ticket from either); berth-a stopped: the job still served and a new job run by berth-b; berth-a
#     started again and back in the rotation.
# Everything it makes has a name of its own and is removed at the end; the base image and
# the stand-in images stay, as caches. Each phase prints how long it took.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
log() { printf '[replicas] %s\n' "$*" >&2; }

# shellcheck source=scripts/lib/compose.sh
. scripts/lib/compose.sh

started="$(date +%s%N)"
phase_started="$started"
# "NAME: 12.3s"; the next phase starts now.
phase_done() {
  local now; now="$(date +%s%N)"
  log "$(printf '%s: %d.%01ds' "$1" $(( (now - phase_started) / 1000000000 )) $(( (now - phase_started) / 100000000 % 10 )))"
  phase_started="$now"
}

BASE="${BERTH_BASE_IMAGE:-berth-base/debian:bookworm}"
suffix="$$-$(date +%s)"
project="berth-replicas-$suffix"
tag="berth-replicas-test:$suffix"
marker="replicas-$suffix"   # the test.berth label of the containers the jobs make
work="$(mktemp -d /tmp/berth-replicas.XXXXXX)"
files=(-f docker-compose.replicas.yml)
export BERTH_IMAGE="$tag" BERTH_SECRETS_DIR="$work/secrets"
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    log "failed (exit $rc); the services' last log lines:"
    compose -p "$project" "${files[@]}" logs --no-color --tail 15 >&2 2>&1 || true
  fi
  compose -p "$project" "${files[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  local leftover
  leftover="$(docker ps -aq --filter "label=test.berth=$marker")"
  # shellcheck disable=SC2086 # one id per word
  [ -z "$leftover" ] || docker rm -f $leftover >/dev/null 2>&1 || true
  docker image rm "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- images ---------------------------------------------------------------------------
# image.sh also makes the base (once) that the stand-ins are built on.
./scripts/image.sh "$tag"
phase_done "berth image ($tag, cargo profile ${CARGO_PROFILE:-release})"

# standin IMAGE DIR FILE...: builds DIR/Dockerfile unless IMAGE was built from these same
# files (of DIR, the ones the image is made of) on this same base: the image carries their
# digest as a label. (The proxy's nginx.conf is mounted, not built in.)
standin() {
  local image="$1" dir="$2" digest have
  shift 2
  digest="$( { docker image inspect -f '{{.Id}}' "$BASE"; (cd "$dir" && sha256sum "$@" && stat -c '%n %a' "$@"); } \
    | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f '{{index .Config.Labels "berth.test.context"}}' "$image" 2>/dev/null || true)"
  if [ "$have" = "$digest" ]; then
    log "$image is cached (context $digest)"
    return
  fi
  log "building $image from $dir (base $BASE; apt-get from the Debian mirror)"
  local old; old="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  if ! docker build -q --build-arg BASE_IMAGE="$BASE" --label "berth.test.context=$digest" \
      -t "$image" "$dir" >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    exit 1
  fi
  # The build it replaces, now untagged.
  [ -z "$old" ] || docker image rm "$old" >/dev/null 2>&1 || true
}
if [ -z "${POSTGRES_IMAGE:-}" ]; then
  POSTGRES_IMAGE=berth-test/postgres:15
  standin "$POSTGRES_IMAGE" deploy/postgres Dockerfile docker-entrypoint.sh
fi
if [ -z "${PROXY_IMAGE:-}" ]; then
  PROXY_IMAGE=berth-test/proxy:nginx
  standin "$PROXY_IMAGE" deploy/proxy Dockerfile
fi
export POSTGRES_IMAGE PROXY_IMAGE
phase_done "stand-in images ($POSTGRES_IMAGE, $PROXY_IMAGE)"

# --- secrets and up -------------------------------------------------------------------
DOCKER_GID="$(stat -c %g /var/run/docker.sock)"
export DOCKER_GID
mkdir -p "$BERTH_SECRETS_DIR"
secret() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
(
  umask 077
  cd "$BERTH_SECRETS_DIR"
  secret 32 >berth_jwt_secret
  secret 24 >postgres_password
  printf 'postgres://berth:%s@postgres:5432/berth\n' "$(cat postgres_password)" >berth_database_url
)
# The replicas read theirs as the berth user with the socket's group; PostgreSQL reads its
# password as root before it drops to postgres.
chgrp "$DOCKER_GID" "$BERTH_SECRETS_DIR/berth_jwt_secret" "$BERTH_SECRETS_DIR/berth_database_url"
chmod 0440 "$BERTH_SECRETS_DIR/berth_jwt_secret" "$BERTH_SECRETS_DIR/berth_database_url"
chmod 0755 "$work" "$BERTH_SECRETS_DIR"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export BERTH_PORT="127.0.0.1:$port"

log "compose up (project $project, port $port)"
compose -p "$project" "${files[@]}" up -d 2>&1 | sed 's/^/[replicas] compose: /' >&2
cid() {
  local id; id="$(compose -p "$project" "${files[@]}" ps -q "$1")"
  [ -n "$id" ] || { log "no $1 container"; exit 1; }
  echo "$id"
}
pg="$(cid postgres)"; a="$(cid berth-a)"; b="$(cid berth-b)"; proxy="$(cid proxy)"

wait_healthy() {
  local name="$1" id="$2" status=""
  for _ in $(seq 1 90); do
    status="$(docker inspect -f '{{.State.Health.Status}}' "$id")"
    [ "$status" = healthy ] && return 0
    [ "$(docker inspect -f '{{.State.Running}}' "$id")" = true ] || break
    sleep 1
  done
  log "$name did not become healthy (status: $status)"
  docker logs "$id" 2>&1 | tail -20 >&2
  exit 1
}
wait_healthy postgres "$pg"
wait_healthy berth-a "$a"
wait_healthy berth-b "$b"
base="http://127.0.0.1:$port"
for _ in $(seq 1 30); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] && break
  sleep 1
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$base/healthz")" = 200 ] \
  || { log "the proxy does not answer /healthz"; docker logs "$proxy" 2>&1 | tail -20 >&2; exit 1; }
phase_done "up: postgres, berth-a, berth-b healthy, the proxy answering"

# --- through the proxy ----------------------------------------------------------------
# jq-less JSON: `json EXPR` evaluates EXPR on the document on stdin (as `d`).
json() { python3 -c 'import json, sys; d = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# (a) no token
code="$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/jobs")"
[ "$code" = 401 ] || { log "without a token: $code, expected 401"; exit 1; }
log "without a token: 401"

# (b) both replicas answer, from the one shared store
replicas_seen() {
  local n="$1" seen=""
  for _ in $(seq 1 "$n"); do
    seen+="$(curl -fsS "$base/readyz" \
      | json 'd["checks"]["replica"] if d["checks"]["store_backend"] == "postgres" else sys.exit(f"not postgres: {d}")') "
  done
  echo "$seen"
}
seen="$(replicas_seen 6)"
case " $seen" in *" berth-a "*) ;; *) log "berth-a never answered /readyz: $seen"; exit 1 ;; esac
case " $seen" in *" berth-b "*) ;; *) log "berth-b never answered /readyz: $seen"; exit 1 ;; esac
log "/readyz answered by: $seen(store_backend postgres)"
phase_done "401 and /readyz"

# (c) a run job through the proxy
token="$(docker exec "$a" berth token --sub compose --role operator)"
api() { curl -sS -H "Authorization: Bearer $token" "$@"; }
submit() {
  local body="$1" answer
  answer="$(api -w '\n%{http_code}' -H 'Content-Type: application/json' -d "$body" "$base/v1/containers")"
  [ "$(tail -n1 <<<"$answer")" = 202 ] || { log "submit: $answer"; exit 1; }
  sed '$d' <<<"$answer" | json 'd["id"]'
}
# Polls GET /v1/jobs/ID through the proxy until the job ends; prints "state replica".
wait_job() {
  local id="$1" doc state
  for _ in $(seq 1 120); do
    doc="$(api -f "$base/v1/jobs/$id")"
    state="$(json 'd["state"]' <<<"$doc")"
    case "$state" in
      succeeded) json 'd["state"] + " " + str(d.get("replica"))' <<<"$doc"; return 0 ;;
      queued|running) sleep 0.5 ;;
      *) log "job $id ended $state: $doc"; exit 1 ;;
    esac
  done
  log "job $id did not end: $doc"; exit 1
}
run_body='{"image":"berth-test/busybox:latest","cmd":["sh","-c","echo hello"],"detach":false,"labels":{"test.berth":"'"$marker"'"}}'
job="$(submit "$run_body")"
ended="$(wait_job "$job")"
read -r state ran_on <<<"$ended"
log "run job $job: $state, ran on $ran_on"
events="$(api -N --max-time 20 "$base/v1/jobs/$job/events" || true)"
if ! grep -q hello <<<"$events" || ! grep -q '^event: end' <<<"$events"; then
  log "the job's event stream through the proxy lacks the output or its end: $events"; exit 1
fi
log "its event stream through the proxy: $(grep -c '^event:' <<<"$events") events, the output, end"
phase_done "run job"

# (d) exec sessions: create (POST), then the WebSocket, by bearer token and by ticket. Each
# pair must land on the replica that made the instance (the other one answers 404).
cat >"$work/ws.py" <<'PY'
# ws.py URL [TOKEN]: a WebSocket handshake, then the frames until the exec's `exit`
# message; prints "STATUS exit_code=N output=TEXT" (only STATUS when it is not 101).
import base64, json, os, socket, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
auth = f"Authorization: Bearer {sys.argv[2]}\r\n" if len(sys.argv) > 2 else ""
s = socket.create_connection((url.hostname, url.port), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET {url.path}?{url.query} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: Upgrade\r\n"
           f"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n{auth}\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    chunk = s.recv(4096)
    if not chunk:
        break
    buf += chunk
head, _, buf = buf.partition(b"\r\n\r\n")
status = head.split(b" ", 2)[1].decode() if head else "EOF"
if status != "101":
    print(status); sys.exit(0)
def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit(f"101 closed before the exit message; output={out!r}")
        buf += chunk
    data, buf = buf[:n], buf[n:]
    return data
out = b""
while True:
    b0, b1 = need(2)
    n = b1 & 0x7F
    if n == 126: n = int.from_bytes(need(2), "big")
    elif n == 127: n = int.from_bytes(need(8), "big")
    payload = need(n)
    op = b0 & 0x0F
    if op == 2: out += payload[1:]            # stream byte, then output
    elif op == 1:
        msg = json.loads(payload)
        if msg.get("type") == "exit":
            print(f"101 exit_code={msg['exit_code']} output={out.decode().strip()}"); break
    elif op == 8:
        print(f"101 closed output={out.decode().strip()}"); break
PY
sleeper="$(submit '{"image":"berth-test/busybox:latest","cmd":["sleep","300"],"labels":{"test.berth":"'"$marker"'"}}')"
wait_job "$sleeper" >/dev/null
container="$(api -f "$base/v1/jobs/$sleeper" | json 'd["result"]["container_id"]')"
ws_base="ws://127.0.0.1:$port"
for i in 1 2 3 4; do
  exec_id="$(api -f -H 'Content-Type: application/json' -d '{"cmd":["echo","exec-'"$i"'"]}' \
    "$base/v1/containers/$container/exec" | json 'd["id"]')"
  if [ $((i % 2)) -eq 1 ]; then
    how="bearer token"
    result="$(python3 "$work/ws.py" "$ws_base/v1/exec/$exec_id/ws?cols=80&rows=24" "$token")"
  else
    how="ticket"
    ticket="$(api -f -H 'Content-Type: application/json' -d '{"path":"/v1/exec/'"$exec_id"'/ws"}' \
      "$base/v1/tickets" | json 'd["ticket"]')"
    result="$(python3 "$work/ws.py" "$ws_base/v1/exec/$exec_id/ws?ticket=$ticket")"
  fi
  [ "$result" = "101 exit_code=0 output=exec-$i" ] \
    || { log "exec $i ($how) through the proxy: '$result', expected 101 with exit 0 and exec-$i"; exit 1; }
done
log "4 exec sessions through the proxy (2 by bearer token, 2 by ticket): 101, output, exit 0"
phase_done "exec over WebSocket (sticky)"

# (e) one replica down: berth-a stopped (SIGTERM, as compose stop does)
docker stop "$a" >/dev/null
log "berth-a stopped"
for _ in 1 2 3 4; do
  api -f -o /dev/null "$base/v1/jobs/$job" || { log "GET /v1/jobs/$job failed with berth-a down"; exit 1; }
done
seen="$(replicas_seen 4)"
[ "$seen" = "berth-b berth-b berth-b berth-b " ] || { log "with berth-a down, /readyz: $seen"; exit 1; }
log "with berth-a down: GET /v1/jobs/$job 4/4 ok, /readyz by: $seen"
job2="$(submit "$run_body")"
ended="$(wait_job "$job2")"
read -r state ran_on <<<"$ended"
[ "$ran_on" = berth-b ] || { log "job $job2 ran on $ran_on with berth-a down"; exit 1; }
log "run job $job2 with berth-a down: $state, ran on $ran_on"
phase_done "berth-a down"

docker start "$a" >/dev/null
wait_healthy berth-a "$a"
# nginx tries it again once fail_timeout (10 s) has passed since its last failure.
back=""
for _ in $(seq 1 30); do
  seen="$(replicas_seen 2)"
  case " $seen" in *" berth-a "*) back=yes; break ;; esac
  sleep 1
done
[ -n "$back" ] || { log "berth-a did not come back into the rotation: $seen"; exit 1; }
log "berth-a started again and answering through the proxy"
phase_done "berth-a back"

log "ok in $(( ($(date +%s%N) - started) / 1000000000 ))s"
