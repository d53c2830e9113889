#!/usr/bin/env bash
# Build Berth's runtime image without Docker Hub:
#   1. a Debian bookworm base bootstrapped locally (debootstrap --variant=minbase, with
#      ca-certificates and curl) and `docker import`ed as $BERTH_BASE_IMAGE, once;
#   2. the binary built on the host (`cargo build --release --locked --bin berth`);
#   3. `docker build --build-arg BASE_IMAGE=...` of the Dockerfile in a context holding
#      only the Dockerfile and the binary.
# Usage: scripts/image.sh [TAG]            (default berth:latest)
# Environment: BERTH_BASE_IMAGE (default berth-base/debian:bookworm; set it to an image
# you already have, e.g. debian:bookworm-slim, to skip the bootstrap), DEBIAN_MIRROR,
# CARGO_PROFILE (release).
set -euo pipefail
cd "$(dirname "$0")/.."
TAG="${1:-berth:latest}"
BASE="${BERTH_BASE_IMAGE:-berth-base/debian:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PROFILE="${CARGO_PROFILE:-release}"
log() { printf '[image] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  if [ "$BASE" != "berth-base/debian:bookworm" ]; then
    echo "base image $BASE is not on the engine" >&2
    exit 1
  fi
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null \
      || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq debootstrap >/dev/null; }
  fi
  rootfs="$(mktemp -d /tmp/berth-rootfs.XXXXXX)"
  trap '$SUDO rm -rf "$rootfs"' EXIT
  log "bootstrapping Debian bookworm into $rootfs from $MIRROR"
  $SUDO debootstrap --variant=minbase --include=ca-certificates,curl bookworm "$rootfs" "$MIRROR" >/dev/null
  # What a container image does not need: apt's lists and caches, docs.
  $SUDO rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/var/log/*.log
  log "importing it as $BASE"
  $SUDO tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$BASE" >/dev/null
  $SUDO rm -rf "$rootfs"
  trap - EXIT
fi

log "building the binary (cargo --profile $PROFILE)"
cargo build -q --locked --profile "$PROFILE" --bin berth
dir="$PROFILE"; [ "$PROFILE" = dev ] && dir=debug

context="$(mktemp -d /tmp/berth-image.XXXXXX)"
trap 'rm -rf "$context"' EXIT
cp Dockerfile "$context/"
cp "target/$dir/berth" "$context/berth"
log "docker build -t $TAG (base $BASE)"
docker build -q --build-arg BASE_IMAGE="$BASE" -t "$TAG" "$context" >/dev/null
log "built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG") bytes)"
