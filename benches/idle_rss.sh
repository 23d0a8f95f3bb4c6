#!/usr/bin/env bash
# Idle footprint of the shipped binary: size, resident memory after idling
# connected to a broker, and CPU time used while idle (no busy polling).
#
#   bash benches/idle_rss.sh
#
# Builds `cargo build --release` (into $CARGO_TARGET_DIR, default
# /tmp/sluice-bench), starts a mosquitto on a free loopback port and
# `sluice run --config <temp config>` with the default settings, waits until
# it is connected, lets it idle, reads /proc/PID/status and /proc/PID/stat,
# then stops it with SIGTERM. Prints a markdown table.
#
# Knobs: SLUICE_BENCH_DIR (temp folder for queue and configs, default
# /var/tmp), SETTLE_S (idle time before reading memory, default 5),
# IDLE_S (window for idle CPU, default 10).
set -euo pipefail

cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/sluice-bench}"
SETTLE_S="${SETTLE_S:-5}"
IDLE_S="${IDLE_S:-10}"

cargo build --release --bin sluice >&2
bin="$CARGO_TARGET_DIR/release/sluice"

work="$(mktemp -d "${SLUICE_BENCH_DIR:-/var/tmp}/sluice-idle.XXXXXX")"
broker_pid=""
sluice_pid=""
cleanup() {
    # Only the processes this script started, by pid.
    if [[ -n "$sluice_pid" ]] && kill -0 "$sluice_pid" 2>/dev/null; then
        kill -KILL "$sluice_pid" 2>/dev/null || true
    fi
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill -TERM "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port: random ones until one is closed (bounded).
port=""
for _ in $(seq 1 100); do
    candidate=$((20000 + RANDOM % 40000))
    if ! port_open "$candidate"; then
        port="$candidate"
        break
    fi
done
[[ -n "$port" ]] || { echo "no free port found" >&2; exit 1; }

# Binary size: as built (the release profile strips), and stripped again to be sure.
size_built=$(stat -c %s "$bin")
cp "$bin" "$work/sluice.stripped"
strip "$work/sluice.stripped"
size_stripped=$(stat -c %s "$work/sluice.stripped")

# The broker.
{
    echo "listener $port 127.0.0.1"
    echo "allow_anonymous true"
    echo "persistence false"
    echo "log_dest stderr"
    echo "log_type error"
    [[ "$(id -u)" == 0 ]] && echo "user root"
} >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
broker_pid=$!
for _ in $(seq 1 200); do
    port_open "$port" && break
    sleep 0.05
done
port_open "$port" || { echo "mosquitto did not open port $port" >&2; cat "$work/mosquitto.log" >&2; exit 1; }

# The gateway, with defaults for everything but where to keep data and which broker.
cat >"$work/sluice.toml" <<EOF
[gateway]
id = "idle-bench"
data_dir = "$work/data"

[uplink]
url = "mqtt://127.0.0.1:$port"
EOF
SLUICE_LOG=info NO_COLOR=1 "$bin" run --config "$work/sluice.toml" 2>"$work/sluice.log" &
sluice_pid=$!

connected=""
for _ in $(seq 1 200); do
    if grep -q "Connected to MQTT broker" "$work/sluice.log"; then
        connected=1
        break
    fi
    kill -0 "$sluice_pid" 2>/dev/null || break
    sleep 0.05
done
[[ -n "$connected" ]] || { echo "sluice did not connect" >&2; cat "$work/sluice.log" >&2; exit 1; }

status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$sluice_pid/status"; }
# utime + stime in clock ticks (fields 14 and 15; the command name may contain spaces).
cpu_ticks() { sed 's/^.*) //' "/proc/$sluice_pid/stat" | awk '{ print $12 + $13 }'; }
# Per thread: "tid cpu_ns context_switches" (schedstat's run time in ns; each
# context switch is a wake-up or a preemption).
per_thread() {
    for t in /proc/"$sluice_pid"/task/*; do
        [[ -r "$t/schedstat" ]] || continue
        printf '%s %s %s\n' "${t##*/}" "$(awk '{ print $1 }' "$t/schedstat")" \
            "$(awk '/^(voluntary|nonvoluntary)_ctxt_switches:/ { n += $2 } END { print n }' "$t/status")"
    done 2>/dev/null
}
# Sums the growth of threads present in both snapshots: "cpu_ns switches".
thread_delta() {
    awk 'NR == FNR { ns[$1] = $2; cs[$1] = $3; next }
         ($1 in ns) { dns += $2 - ns[$1]; dcs += $3 - cs[$1] }
         END { printf "%d %d\n", dns, dcs }' "$1" "$2"
}

sleep "$SETTLE_S"
rss_kb=$(status_kb VmRSS)
hwm_kb=$(status_kb VmHWM)
anon_kb=$(status_kb RssAnon)
file_kb=$(status_kb RssFile)
threads=$(status_kb Threads)
pss_kb=$(awk '$1 == "Pss:" { print $2 }' "/proc/$sluice_pid/smaps_rollup" 2>/dev/null || echo "")

hz=$(getconf CLK_TCK)
t0=$(cpu_ticks)
per_thread >"$work/threads0"
sleep "$IDLE_S"
t1=$(cpu_ticks)
per_thread >"$work/threads1"
threads_after=$(status_kb Threads)
read -r idle_ns wakeups < <(thread_delta "$work/threads0" "$work/threads1")
idle_cpu_ms=$(( (t1 - t0) * 1000 / hz ))
idle_cpu_us=$(( idle_ns / 1000 ))
rss_after_kb=$(status_kb VmRSS)

start_ns=$(date +%s%N)
kill -TERM "$sluice_pid"
exit_code=0
wait "$sluice_pid" || exit_code=$?
stop_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
sluice_pid=""
clean_stop="no"
grep -q "Stopped cleanly" "$work/sluice.log" && clean_stop="yes"

mib() { awk -v k="$1" 'BEGIN { printf "%.2f MiB", k / 1024 }'; }
echo "# Idle footprint"
echo
echo "binary: \`$bin\` (release profile), broker: mosquitto on 127.0.0.1:$port, config: defaults + data_dir + uplink.url"
echo
echo "| measure | value |"
echo "|---|---:|"
echo "| binary size as built | $size_built B ($(mib $((size_built / 1024)))) |"
echo "| binary size after \`strip\` | $size_stripped B ($(mib $((size_stripped / 1024)))) |"
echo "| VmRSS after ${SETTLE_S} s connected and idle | $rss_kb kB ($(mib "$rss_kb")) |"
echo "| of which RssAnon / RssFile | $anon_kb kB / $file_kb kB |"
echo "| Pss (smaps_rollup) | ${pss_kb:-n/a} kB |"
echo "| VmHWM (peak RSS) | $hwm_kb kB ($(mib "$hwm_kb")) |"
echo "| VmRSS after further ${IDLE_S} s | $rss_after_kb kB |"
echo "| threads (after ${SETTLE_S} s / after further ${IDLE_S} s) | $threads / $threads_after |"
echo "| CPU time while idle over ${IDLE_S} s, utime+stime | $idle_cpu_ms ms ($((t1 - t0)) ticks at $hz Hz) |"
echo "| CPU time while idle over ${IDLE_S} s, schedstat run time | $idle_cpu_us µs |"
echo "| context switches while idle over ${IDLE_S} s (threads alive throughout) | $wakeups |"
echo "| SIGTERM to exit | $stop_ms ms, exit code $exit_code, clean stop logged: $clean_stop |"
echo
echo "goal: idle RSS <= 10 MB"
