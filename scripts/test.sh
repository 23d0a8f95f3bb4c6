#!/usr/bin/env bash
# The whole test suite: installs the real peers the tests talk to, then
# format check, lints and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy --all-targets --features demo -- -D warnings

# Guest functions: their own workspace, built for wasm32 (the gateway's tests
# load functions/dist/*.wasm), linted, and their unit tests run natively.
functions/build.sh
host="$(rustc -vV | sed -n 's/^host: //p')"
(
  cd functions
  export CARGO_TARGET_DIR="${SLUICE_FUNCTIONS_TARGET_DIR:-$PWD/target}"
  cargo fmt -- --check
  cargo clippy --release -- -D warnings
  cargo clippy --target "$host" --tests -- -D warnings
  cargo test --target "$host"
)

cargo test --workspace
# `sluice demo` (feature `demo`: the embedded broker stays out of production builds).
cargo test --features demo --test demo
# The event model is shared with wasm guest functions: it must build without std.
cargo build -p sluice-event --target wasm32-unknown-unknown
