#!/usr/bin/env bash
# The shipping test: build the runtime image with scripts/image.sh (local debootstrap base,
# host-built binary), start it with docker compose against the host engine, wait for its
# health check to report healthy, then make one authenticated call (and one without a
# token). Everything it makes has a name of its own and is removed at the end; the base
# image stays, as a cache.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[compose] %s\n' "$*" >&2; }

# shellcheck source=scripts/lib/compose.sh
. scripts/lib/compose.sh

started=$(date +%s)
suffix="$$-$(date +%s)"
project="berth-compose-$suffix"
tag="berth-compose-test:$suffix"
work="$(mktemp -d /tmp/berth-compose.XXXXXX)"
export BERTH_IMAGE="$tag" BERTH_SECRETS_DIR="$work/secrets"
cleanup() {
  compose -p "$project" -f docker-compose.yml down -v --remove-orphans >/dev/null 2>&1 || true
  docker image rm "$tag" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

./scripts/image.sh "$tag"

export DOCKER_GID="$(stat -c %g /var/run/docker.sock)"
mkdir -p "$BERTH_SECRETS_DIR"
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BERTH_SECRETS_DIR/berth_jwt_secret")
chgrp "$DOCKER_GID" "$BERTH_SECRETS_DIR/berth_jwt_secret" && chmod 0440 "$BERTH_SECRETS_DIR/berth_jwt_secret"
chmod 0755 "$work" "$BERTH_SECRETS_DIR"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export BERTH_PORT="127.0.0.1:$port"

log "compose up (project $project, image $tag, port $port)"
compose -p "$project" -f docker-compose.yml up -d
cid="$(compose -p "$project" -f docker-compose.yml ps -q berth)"
[ -n "$cid" ] || { log "no berth container"; exit 1; }

status=""
for _ in $(seq 1 90); do
  status="$(docker inspect -f '{{.State.Health.Status}}' "$cid")"
  [ "$status" = healthy ] && break
  if [ "$(docker inspect -f '{{.State.Running}}' "$cid")" != true ]; then break; fi
  sleep 1
done
if [ "$status" != healthy ]; then
  log "the container did not become healthy (status: $status)"
  docker logs "$cid" 2>&1 | tail -20 >&2
  exit 1
fi
log "healthy after $(( $(date +%s) - started ))s from the start of the script"

base="http://127.0.0.1:$port"
code="$(curl -s -o /dev/null -w '%{http_code}' "$base/v1/images")"
[ "$code" = 401 ] || { log "without a token: $code, expected 401"; exit 1; }
# The token comes from the shipped binary, with the secret file as the service reads it.
token="$(docker exec "$cid" berth token --sub compose-test --role viewer)"
body="$(curl -fsS -H "Authorization: Bearer $token" "$base/v1/system")"
echo "$body" | python3 -c '
import json, sys
info = json.load(sys.stdin)
assert isinstance(info, dict) and info, info
print("[compose] authenticated call answered:", ", ".join(f"{k}={info[k]}" for k in list(info)[:4]))
' >&2
user="$(docker inspect -f '{{.Config.User}}' "$cid")"
[ "$user" = berth ] || { log "the container runs as '$user', not berth"; exit 1; }
log "ok in $(( $(date +%s) - started ))s"
