#!/usr/bin/env bash
# The whole test suite: prepare the engine, base image and registries, then run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-env.sh
cargo test --locked "$@"
