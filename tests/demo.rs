#![cfg(feature = "demo")]
//! `sluice demo` as a user runs it: the real binary with its embedded broker,
//! simulated CoAP devices, simulated Modbus meters, a simulated LoRaWAN
//! concentrator with an OTAA and an ABP device, scripted Bluetooth sensors
//! (a Ruuvi tag, an encrypted BTHome sensor), and the standard functions,
//! for a fixed time; its screen must show readings, alerts, windows, decoded
//! LoRaWAN payloads and status, and its summary a clean run.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

/// How long the demo runs; long enough for two window ticks (every 5 s).
const RUN_FOR_SECS: u64 = 12;
/// The run plus start and a clean shutdown, with room for a slow machine.
const DEADLINE: Duration = Duration::from_secs(RUN_FOR_SECS + 15);

/// `functions/dist`, built first if needed.
fn modules() -> PathBuf {
    support::functions::dist()
}

/// The number just before `phrase` in `line` (`"142 events accepted"`).
fn count_before(line: &str, phrase: &str) -> Option<u64> {
    let head = &line[..line.find(phrase)?];
    head.split_whitespace().last()?.parse().ok()
}

#[test]
fn the_demo_shows_readings_alerts_and_windows_and_stops_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--for", &RUN_FOR_SECS.to_string(), "--modules"])
        .arg(modules())
        .env_remove("SLUICE_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice demo");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let err = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });

    // The exit, waited for on a thread, arrives through a channel with a deadline.
    let pid = child.id();
    let (exited, exit) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait());
    });
    let status = match exit.recv_timeout(DEADLINE) {
        Ok(status) => status.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("sluice demo --for {RUN_FOR_SECS} still running after {DEADLINE:?}");
        }
    };
    let lines = out.join().expect("stdout reader");
    let log = err.join().expect("stderr reader");
    let screen = lines.join("\n");
    let context = format!("screen:\n{screen}\nstderr:\n{}", log.join("\n"));
    assert!(status.success(), "exit status {status}\n{context}");

    let kind = |k: &str| {
        lines
            .iter()
            .filter(|l| l.split_whitespace().next() == Some(k))
            .count()
    };
    assert!(kind("reading") >= 3, "too few readings shown\n{context}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("alert ") && l.contains("HIGH")),
        "no alert\n{context}"
    );
    assert!(kind("window") >= 1, "no window\n{context}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("status ") && l.contains("online")),
        "no online status\n{context}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("device ") && l.contains("→ 4.00")),
        "no malformed payload answered 4.00\n{context}"
    );
    assert!(kind("stats") >= 3, "no live counters\n{context}");

    let summary = |part: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().take(2).eq(["summary", part]))
            .unwrap_or_else(|| panic!("no `{part}` in the summary\n{context}"))
    };
    let accepted = count_before(summary("gateway"), "events accepted");
    assert!(
        accepted.is_some_and(|n| n > 0),
        "no events accepted\n{context}"
    );
    assert_eq!(
        count_before(summary("functions"), "dead letters"),
        Some(0),
        "well-formed readings were dead-lettered\n{context}"
    );
    assert_eq!(
        count_before(summary("devices"), "refused"),
        Some(0),
        "well-formed readings were refused\n{context}"
    );
    // The meters were polled through the real Modbus adapter, without a fault.
    let modbus = summary("modbus");
    assert!(
        count_before(modbus, "answers from the meters").is_some_and(|n| n >= 10),
        "too few Modbus answers\n{context}"
    );
    assert!(
        count_before(modbus, "readings and status events accepted").is_some_and(|n| n >= 5),
        "too few Modbus readings\n{context}"
    );
    assert!(modbus.contains("no faults"), "Modbus faults\n{context}");
    // The OTAA device joined and both devices' Cayenne LPP was decoded upstream.
    let lorawan = summary("lorawan");
    assert!(lorawan.contains(", 1 joined;"), "no OTAA join\n{context}");
    assert!(
        count_before(lorawan, "events accepted").is_some_and(|n| n >= 4),
        "too few LoRaWAN uplinks accepted\n{context}"
    );
    assert!(
        lorawan.ends_with(" 0 rejected"),
        "LoRaWAN frames rejected\n{context}"
    );
    for device in ["70b3d57ed0000001", "70b3d57ed0000002"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("lorawan ")
                    && l.contains(&format!("fn/cayenne-lpp/{device}"))),
            "no decoded payload of {device}\n{context}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo ") && l.contains("energy meters answer Modbus")),
        "no Modbus banner\n{context}"
    );
    // The Ruuvi tag and the encrypted BTHome sensor, replayed through the
    // real BLE decoders, arrived upstream with their readings; the repeated
    // advertisements were dropped as duplicates, and nothing failed to decrypt.
    for (device, reading) in [
        ("ble/ruuvi-greenhouse", "temperature"),
        ("ble/bthome-porch", "temperature"),
        ("ble/bthome-porch", "humidity"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("ble ") && l.contains(device) && l.contains(reading)),
            "no {reading} of {device} upstream\n{context}"
        );
    }
    let ble = summary("ble");
    assert!(
        count_before(ble, "readings and presence events accepted").is_some_and(|n| n >= 10),
        "too few BLE readings\n{context}"
    );
    assert!(
        ble.contains("exchange/duplicate"),
        "no duplicates dropped\n{context}"
    );
    assert!(
        !ble.contains("bad-mic"),
        "BTHome frames failed to decrypt\n{context}"
    );
}
