#!/usr/bin/env bash
# The README's curl walkthrough, run as it is printed: the first ```sh block under
# "## Walkthrough with curl", on a free port instead of 8080 and with a data dir of its
# own, under `set -euo pipefail`; then its output is checked for what each step shows.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[walkthrough] %s\n' "$*" >&2; }
work="$(mktemp -d /tmp/berth-walkthrough.XXXXXX)"
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
awk '/^## Walkthrough with curl/{found=1} found && /^```sh$/{inside=1; next} inside && /^```$/{exit} inside{print}' README.md \
  | sed "s/127\.0\.0\.1:8080/127.0.0.1:$port/g" > "$work/walkthrough.sh"
[ "$(wc -l < "$work/walkthrough.sh")" -gt 20 ] || { log "no walkthrough block found in README.md"; exit 1; }
started=$(date +%s)
if ! BERTH_DATA_DIR="$work/data" bash -euo pipefail "$work/walkthrough.sh" > "$work/out" 2> "$work/err"; then
  log "the walkthrough failed; its output:"; cat "$work/out" "$work/err" >&2; exit 1
fi
check() {
  grep -qE "$1" "$work/out" || { log "missing from the output: $2 ($1)"; cat "$work/out" >&2; exit 1; }
}
check '"negotiated_api_version": "1\.[0-9]+"' "the negotiated API version"
check '^berth-test/busybox:latest$' "the base image in the list"
check '^data: \{"stream":"stdout","text":"hello' "the run's log line in its events"
check '^event: end$' "the end of a job's events"
check '"state": "succeeded"' "the run job succeeded"
check '^id: 4$' "the resumed stream starting after event 3"
check '"RepoTags": \[' "the inspect of the built image"
check '^(running|canceled)$' "the cancel answer"
check '^exit 1 \(not succeeded\)$' "berth watch exit code of the canceled job"
check '"steps": 3,' "the build's three steps in its result"
check '^data: .*"instruction":"FROM berth-test' "the build's step events"
check 'RUN echo built' "the RUN layer in the image history"
check '"dry_run": true' "the dry-run prune's result"
check '^409$' "the volume in use"
check '"running": false' "a stopped container's stats"
check '"reclaimable": [0-9]+' "disk use"
check '^engine events: [1-9][0-9]*$' "the engine events of the walkthrough's containers"
[ "$(grep -c '^204$' "$work/out")" -eq 6 ] || { log "start, stop, remove and three removals: six 204s expected"; cat "$work/out" >&2; exit 1; }
log "ok in $(( $(date +%s) - started ))s ($(wc -l < "$work/out") lines of output)"
