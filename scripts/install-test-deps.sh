#!/usr/bin/env bash
# Installs what the test suite talks to: mosquitto (the real broker),
# openssl (test certificates), libcoap's clients (plain and DTLS), OpenSSL's
# headers for the build, socat (PTY pairs) and pymodbus (Modbus RTU and TCP
# slaves), Node.js with lora-packet (LoRaWAN frames), plus the Rust components
# for the lint steps.
# Idempotent; uses sudo when not root.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v coap-client-openssl >/dev/null 2>&1 || need+=(libcoap3-bin)
command -v socat >/dev/null 2>&1 || need+=(socat)
# OpenSSL's headers and pkg-config: the CoAP adapter's DTLS links libssl.
for package in libssl-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || need+=("$package")
done
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
# Node.js runs lora-packet, the LoRaWAN adapter's independent frame builder.
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# aiocoap serves observable CoAP resources in the observer tests.
if ! python3 -c "import aiocoap, cbor2" >/dev/null 2>&1; then
  python3 -m pip install --quiet --break-system-packages aiocoap cbor2 2>/dev/null \
    || python3 -m pip install --quiet aiocoap cbor2
fi

# pymodbus serves Modbus RTU on a socat PTY (and Modbus TCP) in the Modbus
# adapter's tests. The slave script uses the SimDevice datastore of 3.16
# (the older context classes are deprecated) and is pinned below version 4.
if ! python3 -c "import pymodbus, serial, sys; v = tuple(int(x) for x in pymodbus.__version__.split('.')[:2]); sys.exit(not (3, 16) <= v < (4, 0))" >/dev/null 2>&1; then
  python3 -m pip install --quiet --break-system-packages 'pymodbus>=3.16,<4' pyserial 2>/dev/null \
    || python3 -m pip install --quiet 'pymodbus>=3.16,<4' pyserial
fi

# lora-packet builds the LoRaWAN test frames (adapters/lorawan/tests/peers).
if [ ! -d adapters/lorawan/tests/peers/node_modules/lora-packet ]; then
  (cd "$(dirname "$0")/../adapters/lorawan/tests/peers" && npm install --no-audit --no-fund --silent)
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add wasm32-unknown-unknown >/dev/null
