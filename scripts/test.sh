#!/usr/bin/env bash
# The whole test suite: prepare the engine, base image and registries, run the unit and
# integration tests, lint the OpenAPI spec and run the clients generated from it against a
# live Berth (scripts/clients.sh), drive the console in Chromium (browser.sh), ship the image
# with docker compose (compose.sh), run the README's walkthrough (walkthrough.sh), then fuzz
# the live spec with schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-env.sh
cargo test --locked "$@"
./scripts/clients.sh
./scripts/browser.sh
# The compose test checks the image, the compose file and the health check, so it ships a
# dev build (it reuses the tests' dependencies; a cold release build is ~9 minutes here).
# scripts/image.sh on its own builds release.
CARGO_PROFILE="${CARGO_PROFILE:-dev}" ./scripts/compose.sh
# The same with PostgreSQL and two replicas behind nginx (docker-compose.replicas.yml).
CARGO_PROFILE="${CARGO_PROFILE:-dev}" ./scripts/compose-replicas.sh
./scripts/walkthrough.sh
./scripts/walkthrough-hosts.sh
./scripts/fuzz.sh
