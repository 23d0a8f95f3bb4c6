#!/usr/bin/env bash
# Builds the guest SDK and the standard functions for wasm32 and copies the
# modules to functions/dist/<name>.wasm. Fails if a module exceeds the size
# budget. Builds in its own target folder (functions/target, or
# SLUICE_FUNCTIONS_TARGET_DIR), never in the gateway's, so it can run while a
# `cargo test` of the gateway holds that one; RUSTFLAGS from the environment
# would replace .cargo/config.toml's stack size, so they are dropped.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target=wasm32-unknown-unknown
max_bytes=30720
# dist name → crate's library file name
functions=(
    "scale:fn_scale"
    "threshold:fn_threshold"
    "window:fn_window"
    "deadband:fn_deadband"
    "cayenne-lpp:fn_cayenne_lpp"
    "anomaly:fn_anomaly"
)

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
fi

cd "$here"
export CARGO_TARGET_DIR="${SLUICE_FUNCTIONS_TARGET_DIR:-$here/target}"
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
cargo build --release --target "$target"

out="$CARGO_TARGET_DIR/$target/release"
mkdir -p "$here/dist"
too_big=0
for entry in "${functions[@]}"; do
    name="${entry%%:*}"
    file="$out/${entry#*:}.wasm"
    cp "$file" "$here/dist/$name.wasm"
    size=$(wc -c <"$here/dist/$name.wasm")
    printf '%-16s %6d bytes\n' "$name.wasm" "$size"
    if [ "$size" -gt "$max_bytes" ]; then
        echo "error: $name.wasm is over the $max_bytes-byte budget" >&2
        too_big=1
    fi
done
exit "$too_big"
