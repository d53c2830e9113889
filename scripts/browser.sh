#!/usr/bin/env bash
# The browser test: Debian's Chromium (Playwright, tests/browser/) against a live Berth
# from a portal origin, an unlisted origin and the built-in console. Needs the engine and
# the loopback registry (scripts/test-env.sh) and target/debug/berth (cargo test builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
if [ ! -x /usr/bin/chromium ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
fi
(cd tests/browser && npm ci --no-audit --no-fund --silent)
[ -x target/debug/berth ] || cargo build --locked -q

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BERTH_PORT=$(free_port); PORTAL_PORT=$(free_port); OTHER_PORT=$(free_port)
data=$(mktemp -d)
export BERTH_JWT_SECRET="browser-test-$(date +%s%N)"
IMAGE="127.0.0.1:5000/berth-browser/busybox-$$-$(date +%s):latest"
# A layer of its own, so that pulling it downloads something (and shows layer bars).
printf 'FROM berth-test/busybox:latest\nRUN echo %s > /unique\n' "$IMAGE" | docker build -q -t "$IMAGE" - >/dev/null
docker push -q "$IMAGE" >/dev/null
docker rmi -f "$IMAGE" >/dev/null
# A build context for the console's upload form.
BUILD_TAG="berth-browser/built-$$-$(date +%s):latest"
mkdir -p "$data/ctx"
printf 'FROM berth-test/busybox:latest\nCOPY a /a\nRUN cat /a\n' > "$data/ctx/Dockerfile"
echo "browser-$$" > "$data/ctx/a"
tar -C "$data/ctx" -cf "$data/context.tar" .

BERTH_LISTEN="127.0.0.1:$BERTH_PORT" BERTH_DATA_DIR="$data" BERTH_LOG_FORMAT=json \
  BERTH_CORS_ORIGINS="http://127.0.0.1:$PORTAL_PORT,http://localhost:$BERTH_PORT" target/debug/berth serve >"$data/berth.log" 2>&1 &
berth=$!
cleanup() {
  kill "$berth" 2>/dev/null || true; wait "$berth" 2>/dev/null || true
  docker rmi -f "$IMAGE" "$BUILD_TAG" >/dev/null 2>&1 || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$BERTH_PORT/healthz" >/dev/null && break; sleep 0.1; done

mkdir -p target
BERTH_URL="http://127.0.0.1:$BERTH_PORT" PORTAL_PORT=$PORTAL_PORT OTHER_PORT=$OTHER_PORT IMAGE=$IMAGE \
  CONTEXT="$data/context.tar" BUILD_TAG="$BUILD_TAG" TOKEN=$(target/debug/berth token --sub browser-test --role operator) SHOT="$PWD/target/console.png" \
  node tests/browser/console.test.mjs || { echo "berth log:"; tail -30 "$data/berth.log"; exit 1; }
echo "browser test: $(( $(date +%s) - start )) s"
