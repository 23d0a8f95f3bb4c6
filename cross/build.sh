#!/usr/bin/env bash
# Cross-build the sluice daemon for a Raspberry Pi class target (no Docker),
# against glibc 2.31 so that it starts on Raspberry Pi OS Bullseye as well as
# Bookworm. See cross/README.md.
#
#   cross/build.sh TARGET [extra cargo build args...]
#
#   TARGET: aarch64-unknown-linux-gnu | armv7-unknown-linux-gnueabihf
#
# Installs what is missing (idempotent): Debian packages (the target's libc
# for qemu-user, binutils to inspect the binary, perl and make for OpenSSL,
# python3-venv), the rustup target, zig from PyPI in a virtualenv
# (SLUICE_ZIG_VENV, default ~/.cache/sluice/zig) and cargo-zigbuild. Then runs
# `cargo zigbuild --release --target TARGET.2.31`, prints the binary's path,
# stripped size, dynamic libraries and the highest GLIBC symbol version it
# needs, and fails if that is above 2.31. Honours CARGO_TARGET_DIR.
# SLUICE_GLIBC=native builds with Debian's gcc cross toolchain instead
# (glibc of the build machine: Bookworm and later only).
set -euo pipefail

usage() {
    echo "usage: $0 aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf [cargo build args...]" >&2
    exit 2
}

[[ $# -ge 1 ]] || usage
target=$1
shift

case "$target" in
    aarch64-unknown-linux-gnu)
        prefix=aarch64-linux-gnu
        qemu="qemu-aarch64"
        packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu qemu-user perl make python3-venv)
        ;;
    armv7-unknown-linux-gnueabihf)
        prefix=arm-linux-gnueabihf
        qemu="qemu-arm"
        packages=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross binutils-arm-linux-gnueabihf qemu-user perl make python3-venv)
        ;;
    -h|--help) usage ;;
    *)
        echo "error: unsupported target '$target'" >&2
        usage
        ;;
esac

bin_name=${SLUICE_BIN:-sluice}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# --- host packages -----------------------------------------------------------
as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "==> installing Debian packages: ${missing[*]}"
        log=$(mktemp)
        if ! { as_root apt-get update -qq &&
               as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            echo "error: apt-get failed" >&2
            exit 1
        fi
        rm -f "$log"
    fi
else
    echo "warning: not a Debian-like host; install a ${prefix} gcc cross toolchain yourself" >&2
fi

for tool in "${prefix}-gcc" "${prefix}-ar" "${prefix}-objdump" "${prefix}-strip"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found" >&2; exit 1; }
done

# --- rust target -------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "==> rustup target add $target"
        rustup target add "$target" >/dev/null
    fi
else
    echo "warning: rustup not found; assuming the $target standard library is installed" >&2
fi

# --- build -------------------------------------------------------------------
glibc_floor=${SLUICE_GLIBC:-2.31}
if [[ $glibc_floor == native ]]; then
    # Linker, runner and CC_/AR_ come from .cargo/config.toml; export them here
    # too so the script also works if it is copied next to a tree without that
    # file. (Not for zig: cargo-zigbuild sets its own, and these would win.)
    upper=$(echo "$target" | tr 'a-z-' 'A-Z_')
    lower=${target//-/_}
    # Values already set in the environment win.
    set_default() { [[ -n ${!1:-} ]] || export "$1=$2"; }
    set_default "CARGO_TARGET_${upper}_LINKER" "${prefix}-gcc"
    set_default "CC_${lower}" "${prefix}-gcc"
    set_default "AR_${lower}" "${prefix}-ar"
else
    # zig as the C compiler and linker, against glibc $glibc_floor's symbols.
    zig_venv=${SLUICE_ZIG_VENV:-$HOME/.cache/sluice/zig}
    if [[ ! -x $zig_venv/bin/python3 ]] || ! "$zig_venv/bin/python3" -m ziglang version >/dev/null 2>&1; then
        echo "==> zig from PyPI into $zig_venv"
        python3 -m venv "$zig_venv"
        "$zig_venv/bin/pip" install -q "ziglang==0.17.1"
    fi
    export PATH="$zig_venv/bin:$PATH"
    if ! command -v cargo-zigbuild >/dev/null 2>&1; then
        echo "==> cargo install cargo-zigbuild"
        cargo install cargo-zigbuild --locked --version 0.24.1 --quiet
    fi
fi

# OpenSSL (CoAP over DTLS) is built from source for the target and linked
# statically: the binary needs no libssl on the gateway. Building it needs
# perl and make on the host. libdbus (BLE) is built from source too.
start=$SECONDS
if [[ $glibc_floor == native ]]; then
    echo "==> cargo build --release --target $target --features vendored-openssl $*"
    cargo build --release --target "$target" --features vendored-openssl "$@"
else
    echo "==> cargo zigbuild --release --target $target.$glibc_floor --features vendored-openssl $*"
    cargo zigbuild --release --target "$target.$glibc_floor" --features vendored-openssl "$@"
fi
elapsed=$((SECONDS - start))

target_dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-${CARGO_TARGET_DIR:-$root/target}}
bin="$target_dir/$target/release/$bin_name"
[[ -f $bin ]] || { echo "error: $bin not found after build" >&2; exit 1; }

# --- report ------------------------------------------------------------------
size=$(stat -c %s "$bin")
stripped_copy=$(mktemp)
trap 'rm -f "$stripped_copy"' EXIT
"${prefix}-strip" -o "$stripped_copy" "$bin"
stripped=$(stat -c %s "$stripped_copy")

glibc=$("${prefix}-objdump" -T "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sort -u -V | tail -n 1)
needed=$("${prefix}-objdump" -p "$bin" | awk '/NEEDED/ {print $2}' | paste -sd ' ' -)

human() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

echo
echo "target:        $target"
echo "binary:        $bin"
echo "size:          $size bytes ($(human "$size"))"
echo "stripped size: $stripped bytes ($(human "$stripped"))"
echo "needs libs:    ${needed:-none (static)}"
echo "glibc floor:   ${glibc:-none}"
if [[ $target == armv7-* ]]; then
    arch=$("${prefix}-readelf" -A "$bin" 2>/dev/null | awk -F: '/Tag_CPU_arch:/ {gsub(/ /, "", $2); print $2; exit}')
    echo "cpu arch:      ${arch:-unknown} (ARMv7+: not for Pi Zero/Zero W/Pi 1)"
fi
echo "build time:    ${elapsed} s"
echo "run (qemu):    $qemu -L /usr/$prefix $bin --version"
if [[ $glibc_floor != native ]] && [[ -n $glibc ]] &&
    [[ $(printf '%s\n' "GLIBC_$glibc_floor" "$glibc" | sort -V | tail -n 1) != "GLIBC_$glibc_floor" ]]; then
    echo "error: $bin needs $glibc, above GLIBC_$glibc_floor" >&2
    exit 1
fi
