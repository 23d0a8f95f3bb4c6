#!/usr/bin/env bash
# The whole test suite: installs the real peers the tests talk to, then
# format check, lints and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
# The event model is shared with wasm guest functions: it must build without std.
cargo build -p sluice-event --target wasm32-unknown-unknown
