#!/usr/bin/env python3
"""Start and stop of the real gateway, as systemd and a package upgrade do them.

1. Cold start to the first accepted CoAP reading: from spawning `sluice run`
   (a fresh data folder: the database is created) until a confirmable POST
   is answered 2.04 (durable in the queue). The client sends a POST every
   millisecond from the moment of the spawn, each with a new message id.
   Also with the database already there (a restart).
2. SIGTERM to exit under load: 32 devices post confirmable readings in a
   closed loop (each sends the next as soon as the last is answered) to a
   gateway whose uplink has no broker (so the queue grows), then SIGTERM;
   the time until the process has exited (intake closed, pending commits
   done, the database closed). Every reading answered 2.04 before the exit
   must be in the queue afterwards (checked with `sluice queue stats`).

    python3 benches/start_stop.py [--bin target/release/sluice] [--runs 20]

Baseline in the same run: `sluice --version` from spawn to exit.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import statistics
import tempfile
import threading
import time


def free_port(kind):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def con_post(mid, device, payload):
    """A confirmable POST to /r/<device> with a JSON payload (RFC 7252)."""
    token = mid.to_bytes(2, "big")
    out = bytearray([0x40 | len(token), 0x02]) + mid.to_bytes(2, "big") + token
    last = 0
    for number, value in ((11, b"r"), (11, device.encode()), (12, b"\x32")):  # Uri-Path, Content-Format 50
        delta = number - last
        last = number
        out.append((delta << 4) | len(value))
        out += value
    out.append(0xFF)
    out += payload
    return bytes(out)


def write_config(folder, coap_port):
    path = os.path.join(folder, "gw.toml")
    with open(path, "w") as f:
        f.write(
            f"""[gateway]
id = "bench"
data_dir = "{folder}/data"
[uplink]
url = "mqtt://127.0.0.1:{free_port(socket.SOCK_STREAM)}"
[coap]
listen = ["127.0.0.1:{coap_port}"]
rate_per_device = 1000000
"""
        )
    return path


def first_reading(binary, folder):
    """Seconds from spawn to the first 2.04, and the process."""
    port = free_port(socket.SOCK_DGRAM)
    config = write_config(folder, port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    start = time.perf_counter()
    proc = subprocess.Popen([binary, "run", "--config", config], stderr=subprocess.DEVNULL)
    mid = 0
    while True:
        mid = (mid + 1) & 0xFFFF
        sock.sendto(con_post(mid, "d", b'{"t": 1}'), ("127.0.0.1", port))
        deadline = time.perf_counter() + 0.001
        while time.perf_counter() < deadline:
            try:
                data = sock.recv(1500)
                if len(data) > 1 and data[1] == 0x44:
                    elapsed = time.perf_counter() - start
                    sock.close()
                    return elapsed, proc, config
            except BlockingIOError:
                time.sleep(0.0001)
        if proc.poll() is not None:
            raise SystemExit("sluice exited before answering")
        if time.perf_counter() - start > 30:
            raise SystemExit("no answer within 30 s")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def under_load_then_sigterm(binary, folder, devices=32, seconds=2.0):
    elapsed, proc, config = first_reading(binary, folder)
    port = None
    with open(config) as f:
        for line in f:
            if line.startswith("listen"):
                port = int(line.split(":")[-1].split('"')[0])
    acked = [0]
    lock = threading.Lock()
    running = [True]

    def device(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        mid = 0
        while running[0]:
            mid = (mid + 1) & 0xFFFF
            s.sendto(con_post(mid, f"dev{n}", b'{"t": 1}'), ("127.0.0.1", port))
            try:
                data = s.recv(1500)
            except (socket.timeout, ConnectionRefusedError):
                return
            if len(data) > 1 and data[1] == 0x44:
                with lock:
                    acked[0] += 1
            else:
                return

    threads = [threading.Thread(target=device, args=(n,)) for n in range(devices)]
    for t in threads:
        t.start()
    time.sleep(seconds)  # the load runs for a fixed time; nothing waits on a condition here
    before = acked[0]
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    exit_s = time.perf_counter() - t0
    running[0] = False
    for t in threads:
        t.join()
    stats = subprocess.run(
        [binary, "queue", "stats", "--config", config], capture_output=True, text=True, check=True
    ).stdout
    return exit_s, before, acked[0], stats


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v) + 0.5)) - 1))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "sluice"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    binary = os.path.abspath(args.bin)

    version, cold, warm, exits = [], [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run([binary, "--version"], check=True, capture_output=True)
        version.append(time.perf_counter() - t0)
        folder = tempfile.mkdtemp(prefix="sluice-start-")
        try:
            elapsed, proc, _ = first_reading(binary, folder)
            cold.append(elapsed)
            stop(proc)
            elapsed, proc, _ = first_reading(binary, folder)
            warm.append(elapsed)
            stop(proc)
        finally:
            shutil.rmtree(folder)
    for _ in range(max(3, args.runs // 4)):
        folder = tempfile.mkdtemp(prefix="sluice-stop-")
        try:
            exit_s, before, acked, stats = under_load_then_sigterm(binary, folder)
            exits.append((exit_s, before, acked, stats))
        finally:
            shutil.rmtree(folder)

    def row(label, values):
        ms = [v * 1000 for v in values]
        return f"| {label} | {len(ms)} | {statistics.median(ms):.1f} | {pct(ms, 90):.1f} | {max(ms):.1f} |"

    print("## Start and stop of `sluice run` (release binary)\n")
    print("| what | runs | p50 ms | p90 ms | max ms |")
    print("|---|---:|---:|---:|---:|")
    print(row("`sluice --version`, spawn to exit (baseline)", version))
    print(row("cold start (new database) to the first reading answered 2.04", cold))
    print(row("start on an existing database to the first reading answered 2.04", warm))
    print(row("SIGTERM to exit, 32 devices posting in a closed loop", [e[0] for e in exits]))
    print()
    for exit_s, before, acked, stats in exits:
        records = None
        for line in stats.splitlines():
            words = line.split()
            if words and words[0] == "telemetry":
                records = int(words[1].replace(",", ""))
        print(f"- SIGTERM after {before} readings answered; {acked} answered in all; "
              f"{records} records in the queue afterwards; exit in {exit_s * 1000:.1f} ms")
        if records is None or records < acked:
            raise SystemExit("an answered reading is missing from the queue")


if __name__ == "__main__":
    main()
