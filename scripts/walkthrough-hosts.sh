#!/usr/bin/env bash
# The two-host walkthrough of docs/hosts.md, run as it is printed: the ```sh block under
# "## A build on one host, run on another", on a free port instead of 8080 and with a
# data dir of its own, under `set -euo pipefail`; then its output is checked. Needs
# scripts/test-env.sh (engine B, the registry forward into its netns).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[walkthrough-hosts] %s\n' "$*" >&2; }
work="$(mktemp -d /tmp/berth-walkthrough-hosts.XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
awk '/^## A build on one host, run on another/{found=1} found && /^```sh$/{inside=1; next} inside && /^```$/{exit} inside{print}' docs/hosts.md \
  | sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" > "$work/walkthrough.sh"
[ "$(wc -l < "$work/walkthrough.sh")" -gt 20 ] || { log "no walkthrough block found in docs/hosts.md"; exit 1; }
started=$(date +%s)
if ! BERTH_DATA_DIR="$work/data" bash -euo pipefail "$work/walkthrough.sh" > "$work/out" 2> "$work/err"; then
  log "the walkthrough failed; its output:"; cat "$work/out" "$work/err" >&2; exit 1
fi
check() {
  grep -qE "$1" "$work/out" || { log "missing from the output: $2 ($1)"; cat "$work/out" >&2; exit 1; }
}
check '^a healthy=true api=1\.[0-9]+$' "host a, healthy"
check '^b healthy=true api=1\.[0-9]+$' "host b, healthy, over TLS"
check '^data: \{"stream":"stdout","text":"built on a' "the image built on a, run on b"
check '^\{"host":"b","state":"succeeded","exit_code":0\}$' "the run job on b"
check '^b run succeeded$' "b's jobs listed by host"
check '^on b: 1$' "the container on b"
check '^on a: 0$' "no such container on a"
[ "$(grep -cE '^20[04]$' "$work/out")" -eq 3 ] || { log "three removals expected"; cat "$work/out" >&2; exit 1; }
log "ok in $(( $(date +%s) - started ))s ($(wc -l < "$work/out") lines of output)"
