# syntax=docker/dockerfile:1
# Multi-stage build: compile with the Rust toolchain, ship a slim runtime as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY openapi ./openapi
RUN cargo build --release --locked --bin berth

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/berth --shell /usr/sbin/nologin berth \
 && mkdir -p /var/lib/berth && chown berth /var/lib/berth
COPY --from=build /src/target/release/berth /usr/local/bin/berth
# The engine socket is mounted at run time; the user needs the socket's group
# (`--group-add $(stat -c %g /var/run/docker.sock)`), not root.
USER berth
ENV BERTH_LISTEN=0.0.0.0:8080 \
    BERTH_DATA_DIR=/var/lib/berth \
    BERTH_LOG_FORMAT=json
VOLUME ["/var/lib/berth"]
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["berth"]
CMD ["serve"]
