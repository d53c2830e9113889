# The runtime image: a host-built `berth` binary on a Debian bookworm base, run as a
# non-root user. Build it with scripts/image.sh, which compiles the binary on the host
# (`cargo build --release --locked`), puts it beside this file in a build context of its
# own, and passes BASE_IMAGE: with a base bootstrapped locally (debootstrap ->
# `docker import`, the script's default) no line here needs Docker Hub or the network.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# curl is the health check; ca-certificates for TLS to registries and engines. A base that
# already has both (the script's) installs nothing.
RUN set -eu; \
    if ! command -v curl >/dev/null || [ ! -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
      && rm -rf /var/lib/apt/lists/*; \
    fi; \
    useradd --system --uid 10001 --home-dir /var/lib/berth --shell /usr/sbin/nologin berth; \
    mkdir -p /var/lib/berth; chown berth /var/lib/berth
COPY berth /usr/local/bin/berth
# The engine socket is mounted at run time; the user needs the socket's group
# (`--group-add $(stat -c %g /var/run/docker.sock)`), not root.
USER berth
ENV BERTH_LISTEN=0.0.0.0:8080 \
    BERTH_DATA_DIR=/var/lib/berth \
    BERTH_LOG_FORMAT=json
VOLUME ["/var/lib/berth"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["berth"]
CMD ["serve"]
