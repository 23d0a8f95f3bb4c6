#!/usr/bin/env bash
# Checks a Sluice package: its contents and control fields, and, given a
# newer build of it, its maintainer scripts through a whole life in a
# throwaway root: install, upgrade with a queue and an edited config in
# place, remove, purge. dpkg runs with --root and the scripts run without
# chroot (DPKG_ROOT set), so no container and no foreign-architecture
# binary is needed. Run as root (dpkg needs it).
#
#   packaging/test-deb.sh PACKAGE.deb [NEWER.deb]
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: $0 PACKAGE.deb [NEWER.deb]" >&2; exit 2; }
deb=$1
newer=${2:-}
fail() { echo "FAIL ($deb): $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# --- contents ----------------------------------------------------------------
listing=$(dpkg-deb -c "$deb")
for path in ./usr/bin/sluice ./lib/systemd/system/sluice.service ./etc/sluice/sluice.toml \
    ./usr/lib/sluice/functions/scale.wasm ./usr/lib/sluice/functions/threshold.wasm \
    ./usr/lib/sluice/functions/deadband.wasm ./usr/lib/sluice/functions/window.wasm \
    ./usr/lib/sluice/functions/cayenne-lpp.wasm ./usr/lib/sluice/functions/anomaly.wasm \
    ./usr/share/doc/sluice/copyright \
    ./usr/share/doc/sluice/examples/low-ports.conf; do
    awk '{print $NF}' <<<"$listing" | grep -qxF "$path" || fail "no $path in the package"
done
grep -E ' \./usr/bin/sluice$' <<<"$listing" | grep -qE '^-rwxr-xr-x (root/root|0/0) ' || fail "usr/bin/sluice is not root-owned 0755"
grep -E ' \./etc/sluice/sluice\.toml$' <<<"$listing" | grep -q '^-rw-r-----' || fail "the config is not 0640"
ok "contents: binary, unit, config, the six standard functions, docs"

[[ $(dpkg-deb -f "$deb" Package) == sluice ]] || fail "package name"
dpkg-deb -f "$deb" Depends | grep -qF 'libc6 (>= 2.31)' || fail "Depends lacks libc6 (>= 2.31)"
arch=$(dpkg-deb -f "$deb" Architecture)
control=$(mktemp -d)
trap 'rm -rf "$control" "${root:-}"' EXIT
dpkg-deb -e "$deb" "$control"
grep -qxF /etc/sluice/sluice.toml "$control/conffiles" || fail "the config is not a conffile"
for script in postinst prerm postrm; do
    [[ -x $control/$script ]] || fail "no $script"
    sh -n "$control/$script" || fail "$script does not parse"
done
ok "control: $arch, Depends libc6 (>= 2.31), conffile, maintainer scripts"

[[ -n $newer ]] || exit 0

# --- a life in a throwaway root --------------------------------------------------
root=$(mktemp -d)
mkdir -p "$root/etc" "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/tmp"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
# A fresh system's user database: root and the dialout group; no bluetooth
# group (BlueZ not installed), so the package must make it.
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\ndialout:x:20:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\ndialout:*::\n' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"
in_root() {
    dpkg --root="$root" --force-script-chrootless --force-depends --force-architecture \
        --force-not-root --log=/dev/null "$@" >"$root/tmp/dpkg.log" 2>&1 ||
        { cat "$root/tmp/dpkg.log" >&2; fail "dpkg $*"; }
}
status_of() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status} ${Version}' sluice 2>/dev/null || true; }
members() { awk -F: -v g="$1" '$1 == g { print $4 }' "$root/etc/group"; }

in_root --install "$deb"
[[ $(status_of) == "install ok installed $(dpkg-deb -f "$deb" Version)" ]] || fail "not installed: $(status_of)"
[[ -x $root/usr/bin/sluice ]] || fail "no binary after install"
uid=$(awk -F: '$1 == "sluice" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "sluice" { print $3 }' "$root/etc/group")
[[ -n $uid && -n $gid ]] || fail "no sluice user and group"
awk -F: '$1 == "sluice" { exit !($7 == "/usr/sbin/nologin" && $6 == "/var/lib/sluice") }' "$root/etc/passwd" ||
    fail "the sluice user has a login shell or the wrong home"
[[ ,$(members dialout), == *,sluice,* ]] || fail "sluice is not in dialout"
[[ ,$(members bluetooth), == *,sluice,* ]] || fail "sluice is not in bluetooth"
[[ $(stat -c '%u:%g %a' "$root/var/lib/sluice") == "$uid:$gid 750" ]] || fail "state directory: $(stat -c '%u:%g %a' "$root/var/lib/sluice")"
[[ $(stat -c '%g %a' "$root/etc/sluice/sluice.toml") == "$gid 640" ]] || fail "config: $(stat -c '%g %a' "$root/etc/sluice/sluice.toml")"
ok "install: user sluice (nologin) in dialout and bluetooth, /var/lib/sluice 0750, config 0640 group sluice"

# A queue and an edited config, as a gateway in the field has them.
head -c 65536 /dev/urandom >"$root/var/lib/sluice/queue.db"
chown "$uid:$gid" "$root/var/lib/sluice/queue.db"
echo '# edited on this gateway' >>"$root/etc/sluice/sluice.toml"
queue_sum=$(sha256sum <"$root/var/lib/sluice/queue.db")
config_sum=$(sha256sum <"$root/etc/sluice/sluice.toml")

in_root --install "$newer"
[[ $(status_of) == "install ok installed $(dpkg-deb -f "$newer" Version)" ]] || fail "not upgraded: $(status_of)"
[[ $(sha256sum <"$root/var/lib/sluice/queue.db") == "$queue_sum" ]] || fail "the upgrade changed the queue"
[[ $(sha256sum <"$root/etc/sluice/sluice.toml") == "$config_sum" ]] || fail "the upgrade changed the edited config"
[[ $(grep -c '^sluice:' "$root/etc/passwd") == 1 ]] || fail "the upgrade made a second user"
ok "upgrade to $(dpkg-deb -f "$newer" Version): queue and edited config kept"

in_root --remove sluice
[[ ! -e $root/usr/bin/sluice ]] || fail "the binary outlived remove"
[[ $(sha256sum <"$root/var/lib/sluice/queue.db") == "$queue_sum" ]] || fail "remove touched the queue"
[[ -f $root/etc/sluice/sluice.toml ]] || fail "remove deleted the config"
ok "remove: binary gone, config and queue kept"

in_root --purge sluice
[[ ! -e $root/var/lib/sluice && ! -e $root/etc/sluice ]] || fail "purge left config or data"
[[ -z $(status_of | grep installed || true) ]] || fail "still installed after purge: $(status_of)"
ok "purge: config and queue deleted"
