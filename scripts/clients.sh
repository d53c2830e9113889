#!/usr/bin/env bash
# The spec as client generators and linters take it, and the clients they generate used
# unchanged against a live Berth on the real engine:
#   1. Redocly lint of openapi/openapi.json: 0 errors and 0 warnings (exceptions, each
#      justified, in .redocly.lint-ignore.yaml);
#   2. openapi-generator `validate`: no issue;
#   3. a Python client (openapi-python-client) and tests/clients/python with pytest;
#   4. TypeScript types (openapi-typescript) + openapi-fetch, `tsc --noEmit`, then
#      tests/clients/ts compiled and run with node's test runner.
# Each client lists images, pulls an image from the loopback registry (pushed there first
# under a name nobody else uses) and follows the job's events to `end`, and reads a problem
# body as its typed model.
#   scripts/clients.sh          (after scripts/test-env.sh; builds the debug binary)
# Installs what it needs, pinned and idempotently: npm packages from tests/clients/ts's
# package-lock.json into its node_modules, Python packages into target/clients/venv.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started=$(date +%s)
OUT="$root/target/clients"
TS="$root/tests/clients/ts"
SPEC="$root/openapi/openapi.json"
PYTHON_CLIENT_VERSION="0.29.1"
# The PyPI package of openapi-generator ships its jar: nothing is downloaded at run time.
OPENAPI_GENERATOR_VERSION="7.26.0"
PYTEST_VERSION="9.2.0"
REGISTRY="127.0.0.1:5000"
BASE_IMAGE="berth-test/busybox:latest"

need_apt() { # command package
  command -v "$1" >/dev/null 2>&1 && return
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need_apt java openjdk-17-jre-headless
need_apt npm npm

# npm packages, exactly as locked (reinstalled only when the lock file changed).
if ! cmp -s "$TS/package-lock.json" "$TS/node_modules/.berth-lock" 2>/dev/null; then
  (cd "$TS" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$TS/package-lock.json" "$TS/node_modules/.berth-lock"
fi
# Python packages, pinned (reinstalled only when a version changed).
pins="openapi-python-client==$PYTHON_CLIENT_VERSION openapi-generator-cli==$OPENAPI_GENERATOR_VERSION pytest==$PYTEST_VERSION"
if [ "$(cat "$OUT/venv/.berth-pins" 2>/dev/null)" != "$pins" ]; then
  rm -rf "$OUT/venv"
  python3 -m venv "$OUT/venv"
  # shellcheck disable=SC2086
  "$OUT/venv/bin/pip" install -q $pins
  echo "$pins" >"$OUT/venv/.berth-pins"
fi
installed=$(date +%s)

echo "--- Redocly lint ---"
"$TS/node_modules/.bin/redocly" lint "$SPEC" --format=json >"$OUT/redocly.json" 2>"$OUT/redocly.log" || true
read -r errors warnings ignored < <(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["totals"]; print(t["errors"], t["warnings"], t["ignored"])' "$OUT/redocly.json")
echo "redocly: $errors errors, $warnings warnings, $ignored ignored"
if [ "$errors" != 0 ] || [ "$warnings" != 0 ]; then
  "$TS/node_modules/.bin/redocly" lint "$SPEC" || true
  echo "Redocly finds $errors errors and $warnings warnings in openapi/openapi.json" >&2
  exit 1
fi

echo "--- openapi-generator validate ---"
"$OUT/venv/bin/openapi-generator-cli" validate -i "$SPEC" | tee "$OUT/openapi-generator.log"
grep -q "No validation issues detected" "$OUT/openapi-generator.log"

echo "--- generating the clients ---"
rm -rf "$OUT/python" "$TS/generated" "$TS/dist"
mkdir -p "$OUT/python"
"$OUT/venv/bin/openapi-python-client" generate --path "$SPEC" --output-path "$OUT/python/berth_client" --meta none \
  >"$OUT/openapi-python-client.log" 2>&1 || { cat "$OUT/openapi-python-client.log"; exit 1; }
echo "openapi-python-client: $(grep -c '^WARNING' "$OUT/openapi-python-client.log" || true) warnings (media types it does not read: $(grep -oE 'content.type [a-z/+.-]+' "$OUT/openapi-python-client.log" | awk '{print $NF}' | sort -u | tr '\n' ' '))"
(cd "$TS" && node_modules/.bin/openapi-typescript "$SPEC" -o generated/berth.ts --silent)
(cd "$TS" && node_modules/.bin/tsc --noEmit -p . && node_modules/.bin/tsc -p .)
echo "tsc --noEmit: no error"
generated=$(date +%s)

echo "--- starting Berth ---"
cargo build --quiet --bin berth
work="$(mktemp -d)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export BERTH_JWT_SECRET="clients-secret-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export BERTH_LISTEN="127.0.0.1:$port" BERTH_DATA_DIR="$work/data" BERTH_LOG_FORMAT=json RUST_LOG=warn
unique="berth-clients-$(date +%s)-$$"
images=()
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [ "${#images[@]}" -eq 0 ] || docker rmi "${images[@]}" >/dev/null 2>&1 || true
  rm -rf "$work"
}
./target/debug/berth serve >"$work/berth.log" 2>&1 &
pid=$!
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null
export BERTH_URL="http://127.0.0.1:$port"
export BERTH_TOKEN="$(./target/debug/berth token --sub clients --role operator --ttl 1h)"

# One image per client, pushed to the loopback registry and then removed here: the job
# really pulls it (and the cleanup removes what it pulled).
push_unique() { # ref
  docker tag "$BASE_IMAGE" "$1"
  docker push -q "$1" >/dev/null
  docker rmi "$1" >/dev/null
}
images=("$REGISTRY/$unique/busybox:py" "$REGISTRY/$unique/busybox:ts")
push_unique "${images[0]}"
push_unique "${images[1]}"

failed=0
echo "--- Python client (openapi-python-client) ---"
BERTH_PULL_IMAGE="${images[0]}" PYTHONPATH="$OUT/python" \
  "$OUT/venv/bin/pytest" -q -p no:cacheprovider "$root/tests/clients/python" || failed=1
echo "--- TypeScript client (openapi-typescript + openapi-fetch) ---"
BERTH_PULL_IMAGE="${images[1]}" node --test "$TS/dist/test_client.js" || failed=1
finished=$(date +%s)
echo "clients.sh: $((finished - started)) s (installs $((installed - started)) s, lint, validation and generation $((generated - installed)) s, live tests $((finished - generated)) s)"
if [ "$failed" != 0 ]; then
  tail -50 "$work/berth.log" >&2
  exit 1
fi
