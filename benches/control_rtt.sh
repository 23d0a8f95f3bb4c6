#!/usr/bin/env bash
# Round trip of a signed command as an operator runs it: each sample is the
# wall time of one `sluice cmd` process (start, connect to the broker,
# subscribe, sign and send, wait for the gateway's signed reply, verify it,
# exit) against the release `sluice run` on loopback mosquitto.
#
#   benches/control_rtt.sh            # needs mosquitto and a release build
#
# SLUICE_BIN (default $CARGO_TARGET_DIR/release/sluice or target/release/sluice),
# SLUICE_BENCH_CMDS (pings, default 200; config.apply runs a fifth as many).
# Baseline in the same run: `sluice --version`, the process start alone.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SLUICE_BIN:-${CARGO_TARGET_DIR:-target}/release/sluice}
n=${SLUICE_BENCH_CMDS:-200}
[[ -x $bin ]] || { echo "no release binary at $bin (cargo build --release --bin sluice)" >&2; exit 1; }

dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"; }
broker=$(free_port SOCK_STREAM)
coap=$(free_port SOCK_DGRAM)

# mosquitto delays small packets (Nagle) unless set_tcp_nodelay is on: its
# PUBACK to `sluice cmd` followed by the reply would wait for the client's
# delayed ACK, about 40 ms (docs/mqtt-api.md, fleet layout).
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\n' "$broker" >"$dir/mosquitto.conf"
mosquitto -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
pids+=($!)

public=$("$bin" keygen --out "$dir/ops" | sed -n 's/^public key: .*(\(.*\))$/\1/p')
config() {
    cat <<TOML
[gateway]
id = "bench"
data_dir = "$dir/data"

[uplink]
url = "mqtt://127.0.0.1:$broker"

[coap]
listen = ["127.0.0.1:$coap"]
max_exchanges = $1

[[control.operators]]
name = "ops"
public_key = "$public"
TOML
}
config 1000 >"$dir/gw.toml"
"$bin" run --config "$dir/gw.toml" >"$dir/sluice.log" 2>&1 &
pids+=($!)

cmd() { "$bin" cmd --broker "mqtt://127.0.0.1:$broker" --gateway bench --key "$dir/ops.key" "$@" >/dev/null; }
# Ready once a ping is answered (at most 20 s).
for _ in $(seq 1 40); do
    cmd --timeout 0.5 ping 2>/dev/null && break
done
cmd ping

sample() { # label file command...
    local label=$1 out=$2
    shift 2
    local t0 t1
    t0=$(date +%s%N)
    "$@"
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) >>"$out"
}
for _ in $(seq 1 "$n"); do
    sample version "$dir/version.us" "$bin" --version >/dev/null
    sample ping "$dir/ping.us" cmd ping
done
# Each apply changes the CoAP adapter's settings, which restarts it.
for i in $(seq 1 $((n / 5))); do
    config $((1000 + i)) >"$dir/next.toml"
    sample apply "$dir/apply.us" cmd config.apply --file "$dir/next.toml"
done

pct() { # file percent -> ms
    sort -n "$1" | awk -v p="$2" '{v[NR]=$1} END {i=int((NR*p+99)/100); if (i<1) i=1; printf "%.2f", v[i]/1000}'
}
echo "## \`sluice cmd\` round trip on loopback ($n pings, $((n / 5)) config.apply restarting the CoAP adapter)"
echo
echo "| what | samples | p50 ms | p90 ms | p99 ms | max ms |"
echo "|---|---:|---:|---:|---:|---:|"
for what in version ping apply; do
    f="$dir/$what.us"
    label=$what
    [[ $what == version ]] && label='`sluice --version` (process start, baseline)'
    [[ $what == ping ]] && label='`sluice cmd ping`'
    [[ $what == apply ]] && label='`sluice cmd config.apply` (one adapter restarted)'
    echo "| $label | $(wc -l <"$f") | $(pct "$f" 50) | $(pct "$f" 90) | $(pct "$f" 99) | $(pct "$f" 100) |"
done
