#!/usr/bin/env bash
# Runs a cross-built gateway under qemu-user and posts one reading to it over
# CoAP and over DTLS (pre-shared key) with libcoap's clients: the statically
# linked OpenSSL works on the target architecture.
#
#   cross/smoke-dtls.sh qemu-aarch64 -L /usr/aarch64-linux-gnu path/to/sluice
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 RUNNER... BINARY" >&2; exit 2; }

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
plain=$(free_port)
secure=$(free_port)
cat >"$dir/gw.toml" <<TOML
[gateway]
id = "arm-smoke"
data_dir = "$dir/data"
[uplink]
url = "mqtt://127.0.0.1:1"
[coap]
listen = ["127.0.0.1:$plain"]
[coap.dtls]
listen = ["127.0.0.1:$secure"]
psk = { "sensor-1" = "smoke-key" }
TOML

"$@" run --config "$dir/gw.toml" >"$dir/log" 2>&1 &
pid=$!
# Wait (at most 30 s, emulated start-up is slow) for both listeners.
for _ in $(seq 1 300); do
    grep -q "CoAP DTLS listener listening" "$dir/log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$dir/log"; exit 1; }
    sleep 0.1
done

answer() { grep -o 'c:[0-9]\.[0-9][0-9]' | tail -n 1; }
plain_code=$(coap-client-notls -B 10 -v 6 -m post -t 50 -e '{"t": 1}' \
    "coap://127.0.0.1:$plain/r/plain-1" 2>&1 | answer)
secure_code=$(coap-client-openssl -B 10 -v 6 -m post -t 50 -e '{"t": 2}' \
    -u sensor-1 -k smoke-key "coaps://127.0.0.1:$secure/r/sensor-1" 2>&1 | answer)
echo "plain CoAP: $plain_code, CoAP over DTLS: $secure_code"
if [[ $plain_code != c:2.04 || $secure_code != c:2.04 ]]; then
    cat "$dir/log"
    exit 1
fi
