#!/usr/bin/env bash
# Install the sluice daemon as a systemd service on a gateway (run as root).
#
#   systemd/install.sh [--now] [BINARY]
#
#   BINARY  the sluice binary for this machine; default: the first of
#           target/release/sluice, target/aarch64-unknown-linux-gnu/release/sluice,
#           target/armv7-unknown-linux-gnueabihf/release/sluice that exists
#           (under $CARGO_TARGET_DIR instead of target/ if that is set).
#   --now   also (re)start the service. Without it the service is only
#           enabled, so it starts on the next boot.
#
# DESTDIR=/path/to/rootfs installs into a mounted image instead of this
# machine: no user is created and no systemd is contacted (the unit is enabled
# with `systemctl --root`); create the `sluice` user in the image yourself.
#
# What it does:
#   * creates the `sluice` system user/group if missing
#   * installs BINARY to /usr/local/bin/sluice and the unit to
#     /etc/systemd/system/sluice.service
#   * if /etc/sluice/sluice.toml is missing, installs configs/field-tls.toml
#     there as a starting point (edit it and add the TLS files it names)
#   * systemctl daemon-reload, systemctl enable sluice
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
destdir=${DESTDIR:-}

start_now=0
bin=
for arg in "$@"; do
    case "$arg" in
        --now) start_now=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        -*) echo "error: unknown option $arg" >&2; exit 2 ;;
        *) bin=$arg ;;
    esac
done

if [[ -z $bin ]]; then
    tdir=${CARGO_TARGET_DIR:-$root/target}
    for candidate in "$tdir/release/sluice" \
                     "$tdir/aarch64-unknown-linux-gnu/release/sluice" \
                     "$tdir/armv7-unknown-linux-gnueabihf/release/sluice"; do
        if [[ -f $candidate ]]; then bin=$candidate; break; fi
    done
fi
if [[ -z $bin || ! -f $bin ]]; then
    echo "error: no sluice binary found; build one (cargo build --release, or cross/build.sh TARGET) or pass its path" >&2
    exit 1
fi

if [[ -z $destdir && $(id -u) -ne 0 ]]; then
    echo "error: run as root (or set DESTDIR to install into an image)" >&2
    exit 1
fi

unit_src="$here/sluice.service"
config_example="$root/configs/field-tls.toml"
bindir="$destdir/usr/local/bin"
unitdir="$destdir/etc/systemd/system"
confdir="$destdir/etc/sluice"
config="$confdir/sluice.toml"

# --- user ------------------------------------------------------------------
if [[ -z $destdir ]]; then
    if ! getent passwd sluice >/dev/null; then
        echo "==> creating system user sluice"
        useradd --system --user-group --home-dir /var/lib/sluice --no-create-home \
            --shell /usr/sbin/nologin --comment "Sluice edge gateway" sluice
    fi
    # Serial ports (Modbus RTU) and BlueZ over D-Bus (BLE).
    for group in dialout bluetooth; do
        getent group "$group" >/dev/null || groupadd --system "$group"
        usermod --append --groups "$group" sluice
    done
else
    echo "note: DESTDIR set; in the image, create the 'sluice' system user"
    echo "      (useradd --system --user-group --home-dir /var/lib/sluice --no-create-home --shell /usr/sbin/nologin sluice)"
    echo "      in the groups dialout and bluetooth (usermod --append --groups dialout,bluetooth sluice)"
    echo "      and chgrp sluice /etc/sluice/sluice.toml"
fi

# --- files -------------------------------------------------------------------
echo "==> installing $bin -> $bindir/sluice"
install -D -m 0755 "$bin" "$bindir/sluice"

echo "==> installing unit -> $unitdir/sluice.service"
install -d -m 0755 "$unitdir"
sed 's|/usr/bin/sluice|/usr/local/bin/sluice|g' "$unit_src" >"$unitdir/sluice.service"
chmod 0644 "$unitdir/sluice.service"

install -d -m 0755 "$confdir"
new_config=0
if [[ ! -e $config ]]; then
    echo "==> no $config yet: installing $config_example as a starting point"
    install -m 0640 "$config_example" "$config"
    [[ -n $destdir ]] || chgrp sluice "$config"
    new_config=1
else
    echo "==> keeping existing $config"
fi

# --- systemd -------------------------------------------------------------------
if [[ -n $destdir ]]; then
    systemctl --root="$destdir" enable sluice.service
elif [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    systemctl enable sluice.service
else
    echo "warning: systemd is not running here; enabling offline"
    systemctl enable sluice.service
fi

# --- config check as the service user (the same check ExecStartPre runs) ----------
config_ok=0
if [[ -z $destdir ]]; then
    echo "==> sluice check --config /etc/sluice/sluice.toml (as user sluice)"
    if runuser -u sluice -- /usr/local/bin/sluice check --config /etc/sluice/sluice.toml; then
        config_ok=1
    fi
fi

if [[ $new_config -eq 1 ]]; then
    cat <<EOF

Next steps:
  1. Edit /etc/sluice/sluice.toml (gateway id, broker url).
  2. Put the TLS files it names in /etc/sluice and let the service read the key:
       chgrp sluice /etc/sluice/gateway.key && chmod 0640 /etc/sluice/gateway.key
  3. sluice check --config /etc/sluice/sluice.toml
  4. systemctl start sluice && journalctl -u sluice -f
EOF
fi

if [[ $start_now -eq 1 ]]; then
    if [[ -n $destdir || ! -d /run/systemd/system ]]; then
        echo "note: --now ignored (no running systemd)"
    elif [[ $config_ok -eq 1 ]]; then
        systemctl restart sluice.service
        systemctl --no-pager status sluice.service || true
    else
        echo "error: not starting: the config check failed (see above)" >&2
        exit 1
    fi
fi
