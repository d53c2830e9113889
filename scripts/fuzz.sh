#!/usr/bin/env bash
# Fuzz the live OpenAPI spec with schemathesis: no 5xx, and every response conforms to
# the spec (status codes, content types, headers, schemas). Runs against the real engine.
#   scripts/fuzz.sh            (after scripts/test-env.sh; builds the debug binary)
set -euo pipefail
cd "$(dirname "$0")/.."
STATE_DIR="${BERTH_TEST_ENV_DIR:-/tmp/berth-test-env}"
VENV="$STATE_DIR/venv"
SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${FUZZ_MAX_EXAMPLES:-25}"
# A fixed seed keeps CI reproducible; FUZZ_SEED=random explores new inputs.
SEED="${FUZZ_SEED:-20261129}"

# Installed from the registry, pinned, into a venv outside the work tree (kept between runs).
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin berth
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_JWT_SECRET="fuzz-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BERTH_LISTEN="127.0.0.1:$port" BERTH_DATA_DIR="$work/data" BERTH_LOG_FORMAT=json RUST_LOG=warn
# Runs may only use an image nobody has: fuzzed run/pull jobs never pull from a registry.
export BERTH_ALLOWED_IMAGES="berth-fuzz-only/*"
# The fuzz tokens carry a team of their own: Berth stamps it (`berth.team`) on every
# container it runs and image it builds, and cleanup removes only those, plus new tags of
# images that were there before (a tag from a schema example). Nothing another process
# made meanwhile on the shared engine is touched.
team="fuzz-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
docker images --format '{{.Repository}}:{{.Tag}}' | sort >"$work/images.before"
docker images -q --no-trunc | sort -u >"$work/image-ids.before"
cleanup() {
  kill "$pid" 2>/dev/null || true
  docker ps -aq --no-trunc --filter "label=berth.team=$team" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker images -q --filter "label=berth.team=$team" | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker network ls -q --filter "label=berth.team=$team" | xargs -r docker network rm >/dev/null 2>&1 || true
  docker volume ls -q --filter "label=berth.team=$team" | xargs -r docker volume rm -f >/dev/null 2>&1 || true
  comm -13 "$work/images.before" <(docker images --format '{{.Repository}}:{{.Tag}}' | sort) | grep -v '<none>' \
    | while read -r ref; do
        id=$(docker image inspect --format '{{.Id}}' "$ref" 2>/dev/null) || continue
        grep -qx "$id" "$work/image-ids.before" && docker rmi "$ref" >/dev/null 2>&1 || true
      done || true
  rm -rf "$work"
}
./target/debug/berth serve >"$work/berth.log" 2>&1 &
pid=$!
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# Streams are excluded (they stay open); the prunes too for admin: on a shared engine a
# fuzzed `prune -a` would remove every unused image, base images included, and a volume
# or network prune every other test's unused volume or network.
streams='events|engine/events|jobs/\{id\}/events|containers/\{id\}/logs|containers/\{id\}/stats'
prunes='images/prune|containers/prune|volumes/prune|networks/prune|build-cache/prune'
fuzz() { # role exclude-regex
  local token
  token=$(./target/debug/berth token --sub "fuzz-$1" --role "$1" --team "$team" --ttl 1h)
  echo "--- fuzzing as $1 ---"
  # schemathesis keeps a cache (`.schemathesis/`, and hypothesis' examples) in its working
  # directory: run it from the scratch directory, so a fuzz run leaves the work tree as it was.
  (cd "$work" && "$VENV/bin/st" run "http://127.0.0.1:$port/openapi.json" \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --exclude-path-regex "$2" \
    --max-examples "$MAX_EXAMPLES" --workers 2 --request-timeout 20 --no-color \
    --phases examples,coverage,fuzzing \
    $([ "$SEED" = random ] || echo "--seed $SEED"))
}

set +e
# An operator: every route but the admin-only prunes and audit (those answer 403, checked too).
fuzz operator "^/v1/($streams)\$"
rc=$?
# An admin: the reserved run options and every other route, less the prunes.
fuzz admin "^/v1/($streams|$prunes)\$"
rc_admin=$?
[ $rc -eq 0 ] && rc=$rc_admin
set -e
if [ $rc -ne 0 ]; then
  echo "--- berth log (errors) ---" >&2
  grep -E '"level":"(ERROR|WARN)"' "$work/berth.log" | tail -20 >&2 || true
fi
exit $rc
