# Sourced by scripts/compose.sh and scripts/compose-replicas.sh (after they define `log`):
# defines `compose`, Docker's compose plugin when the engine's CLI has it, else Debian's
# docker-compose, installed when missing.
if docker compose version >/dev/null 2>&1; then
  compose() { docker compose "$@"; }
else
  if ! command -v docker-compose >/dev/null 2>&1; then
    log "installing docker-compose"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null \
      || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null; }
  fi
  compose() { docker-compose "$@"; }
fi
