#!/usr/bin/env bash
# Prepare what Berth's integration tests need, idempotently:
#   - a Docker engine answering on $DOCKER_HOST (default unix:///var/run/docker.sock)
#   - a local base image `berth-test/busybox:latest` (no image can be pulled from Docker Hub here)
#   - a loopback registry on 127.0.0.1:5000 (plain) and 127.0.0.1:5001 (htpasswd auth)
# Safe to run again and again; it only starts what does not already answer.
set -euo pipefail

STATE_DIR="${BERTH_TEST_ENV_DIR:-/tmp/berth-test-env}"
BASE_IMAGE="${BERTH_TEST_IMAGE:-berth-test/busybox:latest}"
REGISTRY_ADDR="${BERTH_TEST_REGISTRY:-127.0.0.1:5000}"
AUTH_REGISTRY_ADDR="${BERTH_TEST_AUTH_REGISTRY:-127.0.0.1:5001}"
AUTH_USER="${BERTH_TEST_REGISTRY_USER:-berth}"
AUTH_PASSWORD="${BERTH_TEST_REGISTRY_PASSWORD:-s3cret-registry-pw}"
mkdir -p "$STATE_DIR"

log() { printf '[test-env] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need_pkgs+=(docker-registry)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
command -v htpasswd >/dev/null 2>&1 || need_pkgs+=(apache2-utils)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# promtool (the metrics test pipes /metrics through `promtool check metrics`): taken out of
# Debian's `prometheus` package without installing it (no daemon, no dependencies).
if ! command -v promtool >/dev/null 2>&1; then
  log "extracting promtool from Debian's prometheus package"
  deb_dir="$(mktemp -d)"
  (cd "$deb_dir" && apt-get download prometheus >/dev/null 2>&1) \
    || { $SUDO apt-get update -qq && (cd "$deb_dir" && apt-get download prometheus >/dev/null); }
  dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/root"
  $SUDO install -m 0755 "$deb_dir/root/usr/bin/promtool" /usr/local/bin/promtool
  rm -rf "$deb_dir"
fi

docker_ok() { timeout 5 docker version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }

if ! docker_ok; then
  log "starting dockerd"
  # one dockerd per machine: a stale pid file from a dead one blocks the start
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    $SUDO rm -f /var/run/docker.pid
    $SUDO sh -c "nohup dockerd >'$STATE_DIR/dockerd.log' 2>&1 &"
  fi
  for _ in $(seq 1 60); do docker_ok && break; sleep 0.5; done
  docker_ok || { log "dockerd did not come up; see $STATE_DIR/dockerd.log"; tail -20 "$STATE_DIR/dockerd.log" >&2 || true; exit 1; }
fi
log "docker engine API $(docker version --format '{{.Server.APIVersion}}')"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "importing $BASE_IMAGE from busybox-static"
  root="$(mktemp -d)"
  mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
  cp /bin/busybox "$root/bin/busybox"
  for app in $("$root/bin/busybox" --list); do
    [ "$app" = busybox ] || ln -sf busybox "$root/bin/$app"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
  echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>"$root/etc/passwd"
  echo 'root:x:0:' >"$root/etc/group"
  echo 'nogroup:x:65534:' >>"$root/etc/group"
  chmod 1777 "$root/tmp"
  tar -C "$root" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["sh"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
fi

port_open() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

start_registry() { # name addr [auth]
  local name="$1" addr="$2" auth="${3:-}" dir="$STATE_DIR/$1"
  if port_open "$addr"; then return; fi
  mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: $addr}"
    if [ -n "$auth" ]; then
      echo "auth: {htpasswd: {realm: berth-test, path: $dir/htpasswd}}"
    fi
  } >"$dir/config.yml"
  if [ -n "$auth" ]; then
    htpasswd -Bbc "$dir/htpasswd" "$AUTH_USER" "$AUTH_PASSWORD" >/dev/null 2>&1
  fi
  log "starting registry $name on $addr"
  nohup docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  for _ in $(seq 1 40); do port_open "$addr" && return; sleep 0.25; done
  log "registry $name did not come up"; tail -20 "$dir/registry.log" >&2; exit 1
}
start_registry registry "$REGISTRY_ADDR"
start_registry registry-auth "$AUTH_REGISTRY_ADDR" auth

log "ready: image $BASE_IMAGE, registries $REGISTRY_ADDR and $AUTH_REGISTRY_ADDR (user $AUTH_USER)"
