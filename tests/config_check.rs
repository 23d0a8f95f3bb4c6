//! `sluice check` on broken and valid configs, run as a user runs it, and
//! every shipped config in `configs/` parsed.

mod support;

use sluice::config::Config;
use std::process::Command;

/// Runs `sluice check` on `text`; returns (success, stdout, stderr).
fn check(text: &str) -> (bool, String, String) {
    check_in(tempfile::tempdir().expect("tempdir").path(), text)
}

/// Like [`check`], with the config written to `dir/gw.toml`.
fn check_in(dir: &std::path::Path, text: &str) -> (bool, String, String) {
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(support::process::binary())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run sluice check");
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "gw.toml");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// The config is refused and the message has `location` and `needle` on one line.
fn refused(text: &str, location: &str, needle: &str) {
    refused_in(
        tempfile::tempdir().expect("tempdir").path(),
        text,
        location,
        needle,
    );
}

/// Like [`refused`], with the config in `dir`.
fn refused_in(dir: &std::path::Path, text: &str, location: &str, needle: &str) {
    let (ok, _, stderr) = check_in(dir, text);
    assert!(!ok, "accepted:\n{text}");
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with(&format!("gw.toml:{location}: ")) && l.contains(needle)),
        "expected `gw.toml:{location}: …{needle}…` in:\n{stderr}"
    );
}

#[test]
fn syntax_error() {
    refused("[gateway]\nid = \"gw\n", "2:9", "invalid basic string");
    refused("[queue\n", "1:7", "");
}

#[test]
fn unknown_key() {
    refused(
        "[uplink]\nurl = \"mqtt://h\"\nlinger_ms = 5\n",
        "3:1",
        "unknown field `linger_ms`",
    );
    refused("[gatway]\nid = \"x\"\n", "1:2", "unknown field `gatway`");
}

#[test]
fn wrong_type() {
    refused("[queue]\nmax_batch = \"lots\"\n", "2:13", "invalid type");
    refused(
        "[[queue.streams]]\nname = \"a\"\nsubjects = \"#\"\n",
        "3:12",
        "invalid type",
    );
}

#[test]
fn bad_units() {
    refused(
        "[uplink]\nlinger = \"5 parsecs\"\n",
        "2:10",
        "unknown duration unit",
    );
    refused(
        "[uplink]\nbatch_max_bytes = \"12 MB/s\"\n",
        "2:19",
        "unknown size unit",
    );
    refused("[uplink]\nkeep_alive = \"30\"\n", "2:14", "needs a unit");
}

#[test]
fn bad_values_are_all_reported_with_their_keys() {
    let text = "\
[gateway]
id = \"gw\"

[[queue.streams]]
name = \"a\"
subjects = [\"coap/+\"]
max_records = 0

[[queue.streams]]
name = \"a\"
subjects = [\"lorawan/#\"]

[uplink]
url = \"mqtts://broker:8883\"
max_inflight = 0
reconnect_min = \"0 s\"
";
    let (ok, _, stderr) = check(text);
    assert!(!ok);
    for (location, needle) in [
        ("7:1", "queue.streams[0].max_records: must be at least 1"),
        ("10:1", "queue.streams[1].name: stream `a` is defined twice"),
        ("4:9", "queue.streams: no stream subscribes `#`"),
        (
            "14:1",
            "uplink.url: is mqtts:// but [uplink.tls] is missing",
        ),
        ("15:1", "uplink.max_inflight: must be between 1 and 1000"),
        ("16:1", "uplink.reconnect_min: must be at least 10 ms"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&format!("gw.toml:{location}: ")) && l.contains(needle)),
            "expected `gw.toml:{location}: {needle}` in:\n{stderr}"
        );
    }
    assert!(stderr.contains("6 problems found"), "{stderr}");
}

#[test]
fn bad_subject_patterns_and_urls() {
    refused(
        "[[queue.streams]]\nname = \"a\"\nsubjects = [\"a/#/b\"]\n",
        "3:12",
        "`#` is only allowed as the last level",
    );
    refused(
        "[uplink]\nurl = \"http://broker\"\n",
        "2:7",
        "must start with mqtt:// or mqtts://",
    );
    refused("[gateway]\nid = \"gw/1\"\n", "2:6", "gateway id");
}

#[test]
fn missing_tls_files_are_named() {
    refused(
        "[uplink]\nurl = \"mqtts://b\"\n[uplink.tls]\nca = \"/nonexistent/ca.pem\"\n",
        "4:1",
        "uplink.tls.ca: /nonexistent/ca.pem: cannot read: No such file",
    );
}

#[test]
fn tls_files_without_pem_data_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "this is not a certificate\n").expect("write");
    let text = format!(
        "[uplink]\nurl = \"mqtts://b\"\n[uplink.tls]\nca = \"{p}\"\ncert = \"{p}\"\nkey = \"{p}\"\n",
        p = not_pem.display()
    );
    let (ok, _, stderr) = check(&text);
    assert!(!ok);
    assert!(
        stderr.contains("4:1: uplink.tls.ca: ") && stderr.contains("holds no PEM certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("6:1: uplink.tls.key: ") && stderr.contains("holds no PEM private key"),
        "{stderr}"
    );
}

#[test]
fn functions_that_feed_each_other_in_a_cycle_are_refused() {
    refused(
        "[[functions]]\nname = \"a\"\nmodule = \"a.wasm\"\nsubscribe = [\"coap/+\", \"fn/b/#\"]\n\n\
         [[functions]]\nname = \"b\"\nmodule = \"b.wasm\"\nsubscribe = [\"fn/+/x\"]\n",
        "4:1",
        "functions feed each other in a cycle: a → b → a",
    );
    refused(
        "[[functions]]\nname = \"self\"\nmodule = \"s.wasm\"\nsubscribe = [\"#\"]\n",
        "4:1",
        "cycle: self → self",
    );
}

#[test]
fn bad_function_settings_are_reported_with_their_keys() {
    refused(
        "[[functions]]\nname = \"bad name\"\nmodule = \"x.wasm\"\nsubscribe = [\"coap/+\"]\n",
        "2:1",
        "letters, digits",
    );
    refused(
        "[[functions]]\nname = \"idle\"\nmodule = \"x.wasm\"\n",
        "1:1",
        "subscribes nothing and has no schedule",
    );
    refused(
        "[[functions]]\nname = \"f\"\nmodule = \"x.wasm\"\nsubscribe = [\"coap/+\"]\nmemory_max = \"1 KiB\"\n",
        "5:1",
        "between 64 KiB",
    );
    refused(
        "[[functions]]\nname = \"f\"\nmodule = \"x.wasm\"\nsubscribe = [\"coap/+\"]\n[functions.config]\nlist = [1, 2]\n",
        "5:12",
        "`list`: only strings, numbers, booleans and tables",
    );
}

#[test]
fn function_modules_are_checked_against_the_abi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, wat: &str| {
        std::fs::write(
            dir.path().join(name),
            wat::parse_str(wat).expect("assembles"),
        )
        .expect("write");
    };
    let fns = |module: &str, extra: &str| {
        format!(
            "[[functions]]\nname = \"f\"\nmodule = \"{module}\"\nsubscribe = [\"coap/+\"]\n{extra}"
        )
    };
    refused_in(dir.path(), &fns("missing.wasm", ""), "3:1", "cannot read");
    std::fs::write(dir.path().join("text.wasm"), "not wasm").expect("write");
    refused_in(
        dir.path(),
        &fns("text.wasm", ""),
        "3:1",
        "not a valid WebAssembly module",
    );
    write(
        "wasi.wasm",
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1))"#,
    );
    refused_in(
        dir.path(),
        &fns("wasi.wasm", ""),
        "3:1",
        "only `sluice_v1` imports are provided (no WASI)",
    );
    let minimal = r#"(module (memory (export "memory") 1)
        (func (export "sluice_abi_version") (result i32) (i32.const 1))
        (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "sluice_on_event") (param i32 i32) (result i32) (i32.const 0)))"#;
    write("minimal.wasm", minimal);
    refused_in(
        dir.path(),
        &fns("minimal.wasm", "every = \"1 s\"\n"),
        "3:1",
        "does not export `sluice_on_tick`",
    );
    let (ok, stdout, stderr) = check_in(dir.path(), &fns("minimal.wasm", ""));
    assert!(ok, "{stderr}");
    assert!(stdout.contains("function f ("), "{stdout}");
}

#[test]
fn bad_coap_settings_are_reported_with_their_keys() {
    refused("[coap]\npath = \"a/b\"\n", "2:1", "one path segment");
    refused(
        "[coap]\nlisten = [\"localhost\"]\n",
        "2:11",
        "invalid socket address",
    );
    refused(
        "[coap]\n[[coap.observe]]\ndevice = \"d\"\nuri = \"http://x/y\"\n",
        "4:1",
        "coap.observe[0].uri",
    );
    let (ok, stdout, stderr) = check("[coap]\nlisten = [\"127.0.0.1:5683\"]\n");
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("coap on [127.0.0.1:5683] at /r/<device>"),
        "{stdout}"
    );
}

#[test]
fn bad_dtls_settings_are_reported_with_their_keys() {
    refused(
        "[coap]\n[coap.dtls]\nlisten = [\"127.0.0.1:5684\"]\n",
        "2:7",
        "no way for a device to authenticate",
    );
    refused(
        "[coap]\n[coap.dtls]\npsk = { \"s-1\" = \"hex:0g\" }\n",
        "3:17",
        "`0g` is not hex",
    );
    refused(
        "[coap]\n[coap.dtls]\npsk = { \"s-1\" = \"k\" }\ncertificate = \"gw.pem\"\n",
        "4:1",
        "go together",
    );
    refused(
        "[coap]\nlisten = [\"127.0.0.1:5684\"]\n[coap.dtls]\nlisten = [\"0.0.0.0:5684\"]\npsk = { \"s-1\" = \"k\" }\n",
        "4:11",
        "also claimed by `coap.listen[0]`",
    );
    let (ok, stdout, stderr) = check(
        "[coap]\nlisten = [\"127.0.0.1:5683\"]\n[coap.dtls]\nlisten = [\"127.0.0.1:5684\"]\npsk = { \"s-1\" = \"k\" }\n",
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("coap on [127.0.0.1:5683], coaps (DTLS) on [127.0.0.1:5684]"),
        "{stdout}"
    );
}

#[test]
fn a_valid_config_prints_a_summary() {
    let (ok, stdout, stderr) = check("[gateway]\nid = \"gw-7\"\n[queue]\ndurability = \"power\"\n");
    assert!(ok, "{stderr}");
    assert!(stdout.contains("gateway gw-7"), "{stdout}");
    assert!(stdout.contains("power durability"), "{stdout}");
    assert!(stdout.contains("stream telemetry [#]"), "{stdout}");
}

#[test]
fn an_empty_config_is_valid_with_safe_defaults() {
    let config = Config::parse("", "empty.toml").expect("defaults are valid");
    let telemetry = &config.queue.streams[0];
    assert_eq!(telemetry.max_bytes.bytes(), 256 << 20);
    assert_eq!(config.uplink.url.port, 1883);
}

#[test]
fn every_shipped_config_parses() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("configs/ exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path).expect("read");
            if let Err(e) = Config::parse(&text, &path.display().to_string()) {
                panic!("{e}");
            }
            seen += 1;
        }
    }
    assert!(seen >= 2, "found {seen} configs");
}

#[test]
fn two_claims_on_one_port_are_refused_with_both_keys() {
    let text = "[coap]\nlisten = [\n  \"0.0.0.0:5683\",\n  \"127.0.0.1:5683\",\n]\n";
    let (ok, _, stderr) = check(text);
    assert!(!ok, "accepted:\n{text}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.starts_with("gw.toml:3:3: ")
            && l.contains("UDP 0.0.0.0:5683 is also claimed by `coap.listen[1]`")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("gw.toml:4:3: ")
            && l.contains("UDP 127.0.0.1:5683 is also claimed by `coap.listen[0]`")),
        "{stderr}"
    );
    // Other addresses, or other ports, do not collide.
    let (ok, _, stderr) =
        check("[coap]\nlisten = [\"127.0.0.1:5683\", \"127.0.0.2:5683\", \"[::1]:5683\"]\n");
    assert!(ok, "{stderr}");
}

#[test]
fn modbus_problems_point_at_their_lines() {
    let text = r#"[[modbus.buses]]
name = "rs485"
path = "/dev/ttyUSB0"
stop_bits = 3

[[modbus.buses]]
name = "again"
path = "/dev/ttyUSB0"

[modbus.profiles.meter]
points = [
  { name = "v", table = "input", address = 0, type = "f32" },
  { name = "v", table = "coil", address = 1, type = "u16" },
]

[[modbus.devices]]
id = "m1"
bus = "nowhere"
unit = 1
profile = "meter"
"#;
    let (ok, _, stderr) = check(text);
    assert!(!ok, "accepted:\n{text}");
    for (location, needle) in [
        ("gw.toml:4:1: ", "modbus.buses[0].stop_bits: must be 1 or 2"),
        (
            "gw.toml:13:5: ",
            "modbus.profiles.meter.points[1].name: point `v` is defined twice",
        ),
        (
            "gw.toml:13:46: ",
            "modbus.profiles.meter.points[1].type: a coil holds bits",
        ),
        (
            "gw.toml:18:1: ",
            "modbus.devices[0].bus: no [[modbus.buses]] or [[modbus.tcp]] is named `nowhere`",
        ),
        (
            "gw.toml:3:1: ",
            "serial device /dev/ttyUSB0 is also claimed by `modbus.buses[1].path`",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(location) && l.contains(needle)),
            "{location}{needle} missing in:\n{stderr}"
        );
    }
    // Unknown keys are refused like everywhere else.
    refused(
        "[[modbus.devices]]\nid = \"m\"\nbus = \"b\"\nunit = 1\nspeed = 9600\n",
        "5:1",
        "unknown field `speed`",
    );
}

#[test]
fn the_modbus_example_in_the_configuration_doc_is_valid() {
    let doc = include_str!("../docs/configuration.md");
    let blocks: Vec<&str> = doc
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("[[modbus.devices]]"))
        .collect();
    assert!(
        !blocks.is_empty(),
        "no Modbus example in docs/configuration.md"
    );
    for block in blocks {
        let (ok, _, stderr) = check(block);
        assert!(ok, "{stderr}\n{block}");
    }
}

#[test]
fn ble_bind_keys_macs_and_replay_files_are_checked_with_their_lines() {
    let text = "[ble]\nsource = \"replay\"\nreplay = \"/nonexistent/ads.jsonl\"\n\n[[ble.devices]]\nid = \"door\"\nmac = \"3C:2E:F5:00:AA\"\nbind_key = \"231d39c1\"\n";
    refused(text, "7:1", "is not a MAC address");
    refused(text, "8:1", "bind_key must be 32 hex digits");
    let good = "[ble]\nsource = \"replay\"\nreplay = \"/nonexistent/ads.jsonl\"\n\n[[ble.devices]]\nid = \"door\"\nmac = \"3C:2E:F5:00:AA:01\"\n";
    refused(good, "3:1", "cannot read /nonexistent/ads.jsonl");
    refused(
        "[[ble.devices]]\nid = \"x\"\nmac = \"3C:2E:F5:00:AA:01\"\nformat = \"raw\"\ndecoder = \"nope\"\n",
        "5:1",
        "no [[functions]] entry is named `nope`",
    );
}
