#!/usr/bin/env bash
# The end-to-end benchmark (BENCHMARKS.md, "End to end"): builds the
# functions and the release binaries, then runs `sluice-loadgen e2e`, which
# starts mosquitto, `sluice run`, the subscriber and the load generators as
# separate processes and prints markdown tables. Arguments go to `e2e`
# (e.g. --seconds 10, --scenario con:closed:64). Needs mosquitto.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
functions/build.sh >/dev/null
cargo build --release -p sluice -p sluice-loadgen
"$CARGO_TARGET_DIR/release/sluice-loadgen" e2e \
    --sluice "$CARGO_TARGET_DIR/release/sluice" \
    --scale functions/dist/scale.wasm "$@"
