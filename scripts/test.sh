#!/usr/bin/env bash
# The whole test suite: prepare the engine, base image and registries, run the unit and
# integration tests, then fuzz the live OpenAPI spec with schemathesis.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-env.sh
cargo test --locked "$@"
./scripts/browser.sh
./scripts/fuzz.sh
