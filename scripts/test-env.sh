#!/usr/bin/env bash
# Prepare what Berth's integration tests need, idempotently:
#   - a Docker engine answering on $DOCKER_HOST (default unix:///var/run/docker.sock)
#   - a local base image `berth-test/busybox:latest` (no image can be pulled from Docker Hub here)
#   - a loopback registry on 127.0.0.1:5000 (plain) and 127.0.0.1:5001 (htpasswd auth)
#   - a second engine ("engine B") in its own network namespace, on a unix socket and on
#     tcp://10.213.0.2:2376 with mutual TLS (its CA, server and client certificates in
#     $STATE_DIR/engine-b/tls), holding the base image too
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
command -v socat >/dev/null 2>&1 || need_pkgs+=(socat)
[ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_pkgs+=(postgresql)
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
  # (by its pid file: the second engine below is a dockerd too)
  if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
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

# ---- engine B: a second dockerd in its own network namespace ------------------------------
# Its own netns gives it its own docker0 (never --bridge=none: that dockerd deletes the
# host's docker0), entered with nsenter (ip netns exec remounts /sys: "Devices cgroup isn't
# mounted"); its own containerd namespace keeps its containers apart from the first engine's.
B="$STATE_DIR/engine-b" NS=berth-b B_ADDR=10.213.0.2 HOST_ADDR=10.213.0.1
B_SOCK="$B/docker.sock"
b_ok() { timeout 5 docker -H "unix://$B_SOCK" version --format '{{.Server.APIVersion}}' >/dev/null 2>&1; }
b_alive() { [ -f "$B/pid" ] && kill -0 "$(cat "$B/pid" 2>/dev/null)" 2>/dev/null; }
# A dockerd B that is still starting or stopping holds its pid file: wait for it to answer
# or to exit (a second one would refuse to start while the file is there).
for _ in $(seq 1 60); do b_ok || ! b_alive && break; sleep 0.5; done
if ! b_ok; then
  log "starting engine B (netns $NS, unix://$B_SOCK, tcp://$B_ADDR:2376 with TLS)"
  mkdir -p "$B/tls" "$B/data" "$B/exec"
  [ -e "/var/run/netns/$NS" ] || $SUDO ip netns add "$NS"
  if ! ip link show berth-b0 >/dev/null 2>&1; then
    $SUDO ip link add berth-b0 type veth peer name berth-b1
    $SUDO ip link set berth-b1 netns "$NS"
    $SUDO ip addr add "$HOST_ADDR/30" dev berth-b0
    $SUDO ip link set berth-b0 up
    $SUDO nsenter --net="/var/run/netns/$NS" ip addr add "$B_ADDR/30" dev berth-b1
    $SUDO nsenter --net="/var/run/netns/$NS" ip link set berth-b1 up
    $SUDO nsenter --net="/var/run/netns/$NS" ip link set lo up
  fi
  if [ ! -f "$B/tls/client-key.pem" ]; then
    t="$B/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=berth-test-ca" \
      -keyout "$t/ca-key.pem" -out "$t/ca.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$B_ADDR" -keyout "$t/server-key.pem" -out "$t/server.csr" >/dev/null 2>&1
    printf 'subjectAltName = IP:%s\nextendedKeyUsage = serverAuth\n' "$B_ADDR" >"$t/server.ext"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial -days 3650 \
      -extfile "$t/server.ext" -out "$t/server.pem" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -subj "/CN=berth-test-client" -keyout "$t/client-key.pem" -out "$t/client.csr" >/dev/null 2>&1
    printf 'extendedKeyUsage = clientAuth\n' >"$t/client.ext"
    openssl x509 -req -in "$t/client.csr" -CA "$t/ca.pem" -CAkey "$t/ca-key.pem" -CAcreateserial -days 3650 \
      -extfile "$t/client.ext" -out "$t/client.pem" >/dev/null 2>&1
    chmod 600 "$t"/*-key.pem
  fi
  [ -f "$B/pid" ] && ! kill -0 "$(cat "$B/pid")" 2>/dev/null && rm -f "$B/pid"
  $SUDO sh -c "nohup nsenter --net=/var/run/netns/$NS dockerd --data-root '$B/data' --exec-root '$B/exec' \
    --pidfile '$B/pid' --containerd-namespace berth-b --containerd-plugins-namespace berth-b-plugins \
    -H 'unix://$B_SOCK' -H tcp://$B_ADDR:2376 --tlsverify --tlscacert '$B/tls/ca.pem' \
    --tlscert '$B/tls/server.pem' --tlskey '$B/tls/server-key.pem' >'$B/dockerd.log' 2>&1 &"
  for _ in $(seq 1 60); do b_ok && break; sleep 0.5; done
  b_ok || { log "engine B did not come up; see $B/dockerd.log"; tail -20 "$B/dockerd.log" >&2 || true; exit 1; }
fi
if ! docker -H "unix://$B_SOCK" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "copying $BASE_IMAGE to engine B"
  docker save "$BASE_IMAGE" | docker -H "unix://$B_SOCK" load >/dev/null
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

# Engine B reaches the open registry as 127.0.0.1:5000 too, on its own loopback (so it
# treats it as the plain-HTTP local registry it is, as engine A does): socat in B's netns
# forwards to the host end of the veth pair, where a second socat forwards to the registry.
in_b() { $SUDO nsenter --net="/var/run/netns/$NS" "$@"; }
if ! port_open "$HOST_ADDR:5000"; then
  nohup socat "TCP-LISTEN:5000,bind=$HOST_ADDR,fork,reuseaddr" "TCP:$REGISTRY_ADDR" >"$STATE_DIR/socat-host.log" 2>&1 &
fi
b_registry_ok() { in_b bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000' 2>/dev/null; }
if ! b_registry_ok; then
  log "forwarding 127.0.0.1:5000 in netns $NS to the registry"
  $SUDO sh -c "nohup nsenter --net=/var/run/netns/$NS socat TCP-LISTEN:5000,bind=127.0.0.1,fork,reuseaddr \
    TCP:$HOST_ADDR:5000 >'$STATE_DIR/socat-b.log' 2>&1 &"
  for _ in $(seq 1 40); do b_registry_ok && break; sleep 0.25; done
  b_registry_ok || { log "the registry forward into netns $NS did not come up"; exit 1; }
fi

# ---- PostgreSQL: a throwaway cluster for the store tests (the server refuses root) -------
PG="$STATE_DIR/postgres" PG_PORT="${BERTH_TEST_PG_PORT:-55432}" PG_BIN=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
pg_ok() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; }
if ! pg_ok; then
  log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  $SUDO mkdir -p "$PG" && $SUDO chown postgres: "$PG"
  if [ ! -f "$PG/data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$PG/data" -A trust -U berth >"$PG/initdb.log" 2>&1 \
      || { log "initdb failed"; cat "$PG/initdb.log" >&2; exit 1; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$PG/data" -l "$PG/log" -w \
    -o "-p $PG_PORT -k $PG -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null \
    || { log "PostgreSQL did not start"; tail -20 "$PG/log" >&2; exit 1; }
fi

log "ready: image $BASE_IMAGE, registries $REGISTRY_ADDR and $AUTH_REGISTRY_ADDR (user $AUTH_USER), engine B at unix://$B_SOCK and tcp://$B_ADDR:2376 (TLS in $B/tls; it reaches the open registry as $REGISTRY_ADDR too), PostgreSQL at postgres://berth@127.0.0.1:$PG_PORT/postgres"
