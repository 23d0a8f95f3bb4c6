#!/usr/bin/env bash
# Builds the Debian packages from release binaries already built:
# cross/build.sh TARGET for the ARM targets, `cargo build --release` for the
# machine's own architecture (`native`). Needs functions/dist/*.wasm
# (functions/build.sh). Installs cargo-deb if missing.
#
#   packaging/build-debs.sh [--deb-version VERSION] TARGET...
#
#   TARGET: aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf | native
#
# The packages land in $CARGO_TARGET_DIR/debian/TARGET-VERSION/ (default
# target/…; cargo-deb clears other packages from its output folder, hence one
# folder each); their paths are printed one per line on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

version_args=()
version=current
if [[ ${1:-} == --deb-version ]]; then
    version_args=(--deb-version "$2")
    version=$2
    shift 2
fi
[[ $# -ge 1 ]] || { echo "usage: $0 [--deb-version V] TARGET..." >&2; exit 2; }

if ! cargo deb --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-deb" >&2
    cargo install cargo-deb --locked --version 3.8.0 --quiet >&2
fi
ls functions/dist/*.wasm >/dev/null

target_dir=${CARGO_TARGET_DIR:-target}
for target in "$@"; do
    out="$target_dir/debian/$target-$version"
    mkdir -p "$out"
    args=(--no-build --no-strip --output "$out" "${version_args[@]}")
    if [[ $target != native ]]; then
        args+=(--target "$target")
    fi
    # cargo-deb prints the package's path.
    cargo deb "${args[@]}" 2>/dev/null | tail -n 1
done
