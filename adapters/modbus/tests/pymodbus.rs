//! The adapter against real Modbus slaves: pymodbus serving RTU on one end
//! of a socat PTY pair (and Modbus TCP on loopback), the adapter on the
//! other end, run through the adapter contract with a collecting sink.
//! Needs socat, pymodbus and pyserial (scripts/install-test-deps.sh).

mod peers;

use peers::{Pty, Slave};
use sluice_adapter_common::downlink::{Downlink, Value as Down, Verb};
use sluice_adapter_common::testing::{CollectingSink, Controls, context, wait_until};
use sluice_adapter_common::{Adapter, DownlinkError, RunError};
use sluice_event::{Event, Value};
use sluice_modbus::ModbusConfig;
use sluice_modbus::fault::{Exception, Fault};
use std::time::Duration;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(20);

/// The adapter running on a config, and what it produced.
struct Running {
    sink: CollectingSink,
    controls: Controls,
    task: JoinHandle<Result<(), RunError>>,
}

impl Running {
    async fn start(text: &str) -> Running {
        let config: ModbusConfig = toml::from_str(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.validate(), Vec::<(String, String)>::new(), "{text}");
        let opened = config.open().await.expect("opens");
        let sink = CollectingSink::new();
        let (ctx, controls) = context(sink.clone());
        let task = tokio::spawn(opened.run(ctx));
        Running {
            sink,
            controls,
            task,
        }
    }

    /// Reading events of `device`, in order.
    fn readings(&self, device: &str) -> Vec<Event> {
        let subject = format!("modbus/{device}");
        let events = self.sink.events();
        events
            .into_iter()
            .filter(|e| e.subject == subject)
            .collect()
    }

    /// The `online` values of `device`'s status events, in order.
    fn statuses(&self, device: &str) -> Vec<bool> {
        let subject = format!("modbus/{device}/status");
        let events = self.sink.events();
        let status = events.iter().filter(|e| e.subject == subject);
        status
            .map(|e| match &e.readings[0].value {
                Value::Bool(b) => *b,
                other => panic!("status {other:?}"),
            })
            .collect()
    }

    fn faults(&self, device: &str, fault: Fault) -> u64 {
        self.controls.counters.faults(device, fault)
    }

    async fn write(&self, device: &str, point: &str, value: Down) -> Result<String, DownlinkError> {
        let downlink = Downlink::new(device, point, Verb::Set, value);
        self.controls
            .downlinks
            .send(downlink)
            .await
            .map(|a| a.status)
    }

    async fn stop(self) {
        self.controls.stop.send(true).expect("running");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("the adapter stops within 5 s")
            .expect("no panic")
            .expect("clean stop");
    }
}

/// A serial bus on `pty`, named `line`: timeouts short enough for quick
/// offline tests, long enough that a slave on a busy machine answers in time.
fn bus(pty: &Pty) -> String {
    format!(
        r#"
[[buses]]
name = "line"
path = "{}"
baud = 19200
parity = "none"
response_timeout = "500 ms"
retries = 1
offline_after = 2
backoff_max = "300 ms"
"#,
        pty.gateway_end().display()
    )
}

fn number(event: &Event, name: &str) -> f64 {
    match value(event, name) {
        Value::Number(n) => n,
        other => panic!("{name} is {other:?}"),
    }
}

fn value(event: &Event, name: &str) -> Value {
    let reading = event.readings.iter().find(|r| r.name == name);
    reading
        .unwrap_or_else(|| panic!("no reading {name} in {event:?}"))
        .value
        .clone()
}

/// A typed point: (name, address, type, order, extra keys), and the
/// registers the slave holds for it.
type Typed = (
    &'static str,
    u16,
    &'static str,
    &'static str,
    &'static str,
    &'static [u16],
);

/// Points of every type and word order.
const TYPED: &[Typed] = &[
    ("u16", 0, "u16", "ABCD", "", &[0x1234]),
    ("i16", 1, "i16", "ABCD", "", &[0xfffe]),
    ("u32_abcd", 2, "u32", "ABCD", "", &[0x1234, 0x5678]),
    ("u32_cdab", 4, "u32", "CDAB", "", &[0x5678, 0x1234]),
    ("u32_badc", 6, "u32", "BADC", "", &[0x3412, 0x7856]),
    ("u32_dcba", 8, "u32", "DCBA", "", &[0x7856, 0x3412]),
    ("i32", 10, "i32", "CDAB", "", &[0xfffe, 0xffff]),
    (
        "u64_abcd",
        12,
        "u64",
        "ABCD",
        "",
        &[0x0102, 0x0304, 0x0506, 0x0708],
    ),
    (
        "u64_cdab",
        16,
        "u64",
        "CDAB",
        "",
        &[0x0708, 0x0506, 0x0304, 0x0102],
    ),
    (
        "u64_badc",
        20,
        "u64",
        "BADC",
        "",
        &[0x0201, 0x0403, 0x0605, 0x0807],
    ),
    (
        "u64_dcba",
        24,
        "u64",
        "DCBA",
        "",
        &[0x0807, 0x0605, 0x0403, 0x0201],
    ),
    (
        "i64",
        28,
        "i64",
        "ABCD",
        "",
        &[0xffff, 0xffff, 0xffff, 0xfffd],
    ),
    ("f32_abcd", 32, "f32", "ABCD", "", &[0x4366, 0x8000]),
    ("f32_cdab", 34, "f32", "CDAB", "", &[0x8000, 0x4366]),
    ("f32_badc", 36, "f32", "BADC", "", &[0x6643, 0x0080]),
    ("f32_dcba", 38, "f32", "DCBA", "", &[0x0080, 0x6643]),
    (
        "f64_abcd",
        40,
        "f64",
        "ABCD",
        "",
        &[0x4093, 0x4a45, 0x6d5c, 0xfaad],
    ),
    (
        "f64_cdab",
        44,
        "f64",
        "CDAB",
        "",
        &[0xfaad, 0x6d5c, 0x4a45, 0x4093],
    ),
    (
        "f64_badc",
        48,
        "f64",
        "BADC",
        "",
        &[0x9340, 0x454a, 0x5c6d, 0xadfa],
    ),
    (
        "f64_dcba",
        52,
        "f64",
        "DCBA",
        "",
        &[0xadfa, 0x5c6d, 0x454a, 0x9340],
    ),
    (
        "model",
        56,
        "string",
        "ABCD",
        "length = 3,",
        &[0x454d, 0x3234, 0],
    ),
    (
        "model_swapped",
        59,
        "string",
        "BADC",
        "length = 2,",
        &[0x4d45, 0x3432],
    ),
    ("alarm", 61, "bool", "ABCD", "bit = 3,", &[0b1000]),
    (
        "setpoint",
        62,
        "u16",
        "ABCD",
        "scale = 0.1, offset = -40, unit = \"Cel\",",
        &[615],
    ),
];

fn typed_points() -> String {
    let mut points: Vec<String> = TYPED
        .iter()
        .map(|(name, address, kind, order, extra, _)| {
            format!(
                "{{ name = \"{name}\", table = \"holding\", address = {address}, type = \"{kind}\", order = \"{order}\", {extra} }}"
            )
        })
        .collect();
    points.push(r#"{ name = "current", table = "input", address = 0, type = "i16", scale = 0.01, unit = "A" }"#.into());
    points.push(r#"{ name = "relay", table = "coil", address = 3 }"#.into());
    points.push(r#"{ name = "door", table = "discrete_input", address = 4 }"#.into());
    format!("[{}]", points.join(",\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_slaves_on_one_bus_every_type_and_word_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1, 2]).await;
    for (_, address, _, _, _, words) in TYPED {
        slave.set(1, "hr", *address, words).await;
    }
    slave.set(1, "ir", 0, &[(-150i16) as u16]).await;
    slave.set(1, "co", 3, &[1]).await;
    slave.set(1, "di", 4, &[1]).await;
    // Unit 2 holds other values in the same places: answers must not be swapped.
    slave.set(2, "hr", 0, &[0x1170, 0x0001]).await;

    let config = format!(
        r#"{bus}
[profiles.typed]
points = {points}

[[devices]]
id = "all-types"
bus = "line"
unit = 1
poll = "100 ms"
profile = "typed"

[[devices]]
id = "other"
bus = "line"
unit = 2
poll = "100 ms"
points = [{{ name = "energy", table = "holding", address = 0, type = "u32", order = "CDAB", scale = 0.001, unit = "kWh" }}]
"#,
        bus = bus(&pty),
        points = typed_points()
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "a poll of each slave", || {
        !running.readings("all-types").is_empty() && !running.readings("other").is_empty()
    })
    .await;

    let e = &running.readings("all-types")[0];
    let u64_value = 0x0102_0304_0506_0708u64 as f64;
    let expected = [
        ("u16", 4660.0),
        ("i16", -2.0),
        ("u32_abcd", 305_419_896.0),
        ("u32_cdab", 305_419_896.0),
        ("u32_badc", 305_419_896.0),
        ("u32_dcba", 305_419_896.0),
        ("i32", -2.0),
        ("u64_abcd", u64_value),
        ("u64_cdab", u64_value),
        ("u64_badc", u64_value),
        ("u64_dcba", u64_value),
        ("i64", -3.0),
        ("f32_abcd", 230.5),
        ("f32_cdab", 230.5),
        ("f32_badc", 230.5),
        ("f32_dcba", 230.5),
        ("f64_abcd", 1234.5678),
        ("f64_cdab", 1234.5678),
        ("f64_badc", 1234.5678),
        ("f64_dcba", 1234.5678),
        ("current", -1.5),
    ];
    for (name, want) in expected {
        assert_eq!(number(e, name), want, "{name}");
    }
    assert!((number(e, "setpoint") - 21.5).abs() < 1e-9);
    assert_eq!(value(e, "model"), Value::Text("EM24".into()));
    assert_eq!(value(e, "model_swapped"), Value::Text("EM24".into()));
    assert_eq!(value(e, "alarm"), Value::Bool(true));
    assert_eq!(value(e, "relay"), Value::Bool(true));
    assert_eq!(value(e, "door"), Value::Bool(true));
    let units: Vec<&str> = e.readings.iter().map(|r| r.unit.as_str()).collect();
    assert!(units.contains(&"Cel") && units.contains(&"A"), "{units:?}");
    assert_eq!(e.readings.len(), TYPED.len() + 3);
    // Device time is when the answer arrived: set, and not after the event was made.
    let device_time = e.device_time_ms.expect("device time");
    assert!(device_time <= e.gateway_time_ms && e.gateway_time_ms - device_time < 5_000);

    let other = &running.readings("other")[0];
    assert_eq!(number(other, "energy"), 70.0);
    assert_eq!(other.readings[0].unit, "kWh");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjacent_points_are_read_in_as_few_requests_as_the_slave_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1, 2]).await;
    // Three register groups 0-1, 2, 5 and a far one at 100; coils 0 and 10; one input register.
    let points = r#"[
        { name = "a", table = "holding", address = 0, type = "u32" },
        { name = "b", table = "holding", address = 2 },
        { name = "c", table = "holding", address = 5 },
        { name = "far", table = "holding", address = 100 },
        { name = "x", table = "coil", address = 0 },
        { name = "y", table = "coil", address = 10 },
        { name = "z", table = "input", address = 0 },
    ]"#;
    let config = format!(
        r#"{bus}
[profiles.p]
points = {points}
[[devices]]
id = "coalesced"
bus = "line"
unit = 1
poll = "1 h"
profile = "p"
max_gap = 8
[[devices]]
id = "apart"
bus = "line"
unit = 2
poll = "1 h"
profile = "p"
max_gap = 0
"#,
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "one poll of each device", || {
        running.readings("coalesced").len() == 1 && running.readings("apart").len() == 1
    })
    .await;
    assert_eq!(running.readings("coalesced")[0].readings.len(), 7);
    // max_gap 8: holding 0..=5 in one read, 100 in another; coils 0..=10 in one.
    assert_eq!(slave.requests(1, 3).await, 2);
    assert_eq!(slave.requests(1, 1).await, 1);
    assert_eq!(slave.requests(1, 4).await, 1);
    // max_gap 0: only touching points share a read (0-1 with 2).
    assert_eq!(slave.requests(2, 3).await, 3);
    assert_eq!(slave.requests(2, 1).await, 2);
    assert_eq!(slave.requests(2, 4).await, 1);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_are_counted_per_device_and_reason_and_are_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    slave.set(1, "hr", 0, &[42]).await;
    let config = format!(
        r#"{bus}
[[devices]]
id = "meter"
bus = "line"
unit = 1
poll = "50 ms"
points = [
    {{ name = "ok", table = "holding", address = 0 }},
    {{ name = "missing", table = "holding", address = 250 }},
]
"#,
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    let illegal = Fault::Exception(Exception::IllegalAddress);
    wait_until(WAIT, "two illegal-address exceptions", || {
        running.faults("meter", illegal) >= 2
    })
    .await;
    // The other read still publishes; an exception is an answer, so no offline.
    let readings = running.readings("meter");
    assert!(!readings.is_empty());
    assert_eq!(number(&readings[0], "ok"), 42.0);
    assert!(readings[0].readings.iter().all(|r| r.name != "missing"));

    slave.cmd("busy 1 1").await;
    let busy = Fault::Exception(Exception::Busy);
    wait_until(WAIT, "busy answers counted", || {
        running.faults("meter", busy) >= 4
    })
    .await;
    slave.cmd("busy 1 0").await;
    let before = running.readings("meter").len();
    wait_until(WAIT, "readings again", || {
        running.readings("meter").len() > before + 2
    })
    .await;
    assert_eq!(
        running.statuses("meter"),
        Vec::<bool>::new(),
        "never offline"
    );
    let health = running.controls.counters.snapshot();
    assert!(health.devices["meter"]["device/exception-illegal-address"] >= 2);
    assert!(health.rejected["device/exception-busy"] >= 4);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_stops_answering_goes_offline_and_comes_back_the_bus_keeps_its_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1, 2]).await;
    slave.set(1, "hr", 0, &[1]).await;
    slave.set(2, "hr", 0, &[2]).await;
    let config = format!(
        r#"{bus}
[[devices]]
id = "quiet"
bus = "line"
unit = 1
poll = "50 ms"
points = [{{ name = "v", table = "holding", address = 0 }}]
[[devices]]
id = "steady"
bus = "line"
unit = 2
poll = "50 ms"
points = [{{ name = "v", table = "holding", address = 0 }}]
"#,
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "readings from both", || {
        !running.readings("quiet").is_empty() && !running.readings("steady").is_empty()
    })
    .await;

    slave.cmd("mute 1").await;
    wait_until(WAIT, "the quiet device reported offline", || {
        running.statuses("quiet") == [false]
    })
    .await;
    assert!(running.faults("quiet", Fault::Timeout) >= 2);
    // While it is offline (and polled with back-off) the other device keeps coming.
    let steady = running.readings("steady").len();
    let quiet = running.readings("quiet").len();
    wait_until(WAIT, "ten more readings of the steady device", || {
        running.readings("steady").len() >= steady + 10
    })
    .await;
    assert_eq!(running.readings("quiet").len(), quiet);

    slave.set(1, "hr", 0, &[7]).await;
    slave.cmd("unmute 1").await;
    wait_until(WAIT, "the quiet device back online", || {
        running.statuses("quiet") == [false, true]
    })
    .await;
    wait_until(WAIT, "its new reading", || {
        running
            .readings("quiet")
            .last()
            .is_some_and(|e| number(e, "v") == 7.0)
    })
    .await;
    // No late answer was ever taken for another request: the steady device read only its own value.
    assert!(
        running
            .readings("steady")
            .iter()
            .all(|e| number(e, "v") == 2.0)
    );
    let status = running
        .sink
        .events()
        .into_iter()
        .find(|e| e.subject == "modbus/quiet/status")
        .expect("status event");
    let reason = status
        .meta
        .iter()
        .find(|m| m.key == "reason")
        .expect("reason");
    assert_eq!(reason.value, Value::Text("timeout".into()));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_answer_is_a_crc_error_and_is_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    slave.set(1, "hr", 0, &[5]).await;
    let config = format!(
        "{bus}\n[[devices]]\nid = \"m\"\nbus = \"line\"\nunit = 1\npoll = \"50 ms\"\npoints = [{{ name = \"v\", table = \"holding\", address = 0 }}]\n",
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "a reading", || !running.readings("m").is_empty()).await;
    slave.cmd("corrupt 1").await;
    wait_until(WAIT, "a CRC error counted", || {
        running.faults("m", Fault::Crc) == 1
    })
    .await;
    let count = running.readings("m").len();
    wait_until(WAIT, "readings go on", || {
        running.readings("m").len() > count + 3
    })
    .await;
    assert!(running.readings("m").iter().all(|e| number(e, "v") == 5.0));
    assert_eq!(
        running.faults("m", Fault::Timeout),
        0,
        "the CRC error is not silence"
    );
    assert_eq!(running.statuses("m"), Vec::<bool>::new());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pty_vanishing_and_reappearing_is_retried_never_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    slave.set(1, "hr", 0, &[1]).await;
    let config = format!(
        "{bus}\n[[devices]]\nid = \"m\"\nbus = \"line\"\nunit = 1\npoll = \"50 ms\"\npoints = [{{ name = \"v\", table = \"holding\", address = 0 }}]\n",
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "a reading", || !running.readings("m").is_empty()).await;

    slave.kill().await;
    pty.vanish();
    wait_until(WAIT, "the device offline", || {
        running.statuses("m") == [false]
    })
    .await;
    let lost = running.faults("m", Fault::LinkLost) + running.faults("m", Fault::Unreachable);
    assert!(lost >= 1, "a vanished port is counted");
    wait_until(WAIT, "the missing port counted as unreachable", || {
        running.faults("m", Fault::Unreachable) >= 1
    })
    .await;
    assert!(!running.task.is_finished(), "the adapter keeps running");

    pty.reappear();
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    slave.set(1, "hr", 0, &[9]).await;
    wait_until(WAIT, "the device online again", || {
        running.statuses("m") == [false, true]
    })
    .await;
    wait_until(WAIT, "the new reading", || {
        running
            .readings("m")
            .last()
            .is_some_and(|e| number(e, "v") == 9.0)
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_port_at_start_is_retried_until_it_appears() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[[buses]]\nname = \"line\"\npath = \"{}\"\nresponse_timeout = \"500 ms\"\noffline_after = 1\nbackoff_max = \"200 ms\"\n[[devices]]\nid = \"m\"\nbus = \"line\"\nunit = 1\npoll = \"50 ms\"\npoints = [{{ name = \"v\", table = \"holding\", address = 0 }}]\n",
        dir.path().join("gw").display()
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "the missing port counted", || {
        running.faults("m", Fault::Unreachable) >= 2
    })
    .await;
    assert_eq!(running.statuses("m"), [false]);
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    slave.set(1, "hr", 0, &[3]).await;
    wait_until(WAIT, "a reading once the port is there", || {
        running
            .readings("m")
            .last()
            .is_some_and(|e| number(e, "v") == 3.0)
    })
    .await;
    assert_eq!(running.statuses("m"), [false, true]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_change_the_datastore_and_refusals_carry_the_exception() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pty = Pty::start(dir.path());
    let mut slave = Slave::start(&pty.slave_end().display().to_string(), &[1]).await;
    let config = format!(
        r#"{bus}
[[devices]]
id = "plc"
bus = "line"
unit = 1
poll = "200 ms"
points = [
    {{ name = "setpoint", table = "holding", address = 10, scale = 0.1, writable = true }},
    {{ name = "total", table = "holding", address = 20, type = "u32", order = "CDAB", writable = true }},
    {{ name = "label", table = "holding", address = 30, type = "string", length = 2, writable = true }},
    {{ name = "pump", table = "coil", address = 5, writable = true }},
    {{ name = "fan", table = "coil", address = 6, writable = true, write_function = "multiple" }},
    {{ name = "limit", table = "holding", address = 40, writable = true, write_function = "multiple" }},
    {{ name = "beyond", table = "holding", address = 250, writable = true }},
    {{ name = "fixed", table = "holding", address = 41 }},
]
"#,
        bus = bus(&pty)
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "a reading", || !running.readings("plc").is_empty()).await;

    assert_eq!(
        running.write("plc", "setpoint", Down::Float(21.5)).await,
        Ok("FC06".into())
    );
    assert_eq!(slave.get(1, "hr", 10, 1).await, [215]);
    assert_eq!(
        running.write("plc", "total", Down::Int(70_000)).await,
        Ok("FC16".into())
    );
    assert_eq!(slave.get(1, "hr", 20, 2).await, [0x1170, 0x0001]);
    assert_eq!(
        running.write("plc", "label", Down::Text("ok".into())).await,
        Ok("FC16".into())
    );
    assert_eq!(slave.get(1, "hr", 30, 2).await, [0x6f6b, 0]);
    assert_eq!(
        running.write("plc", "pump", Down::Bool(true)).await,
        Ok("FC05".into())
    );
    assert_eq!(slave.get(1, "co", 5, 1).await, [1]);
    assert_eq!(
        running.write("plc", "fan", Down::Bool(true)).await,
        Ok("FC15".into())
    );
    assert_eq!(slave.get(1, "co", 6, 1).await, [1]);
    assert_eq!(
        running.write("plc", "limit", Down::Int(9)).await,
        Ok("FC16".into())
    );
    assert_eq!(slave.get(1, "hr", 40, 1).await, [9]);
    for function in [5, 6, 15, 16] {
        assert!(slave.requests(1, function).await >= 1, "FC {function}");
    }
    // The written values are read back by the next poll.
    wait_until(WAIT, "the setpoint read back", || {
        running
            .readings("plc")
            .last()
            .is_some_and(|e| number(e, "setpoint") == 21.5 && value(e, "pump") == Value::Bool(true))
    })
    .await;

    // Refused by the device, with its exception code.
    match running.write("plc", "beyond", Down::Int(1)).await {
        Err(DownlinkError::Refused { status, message }) => {
            assert_eq!(status, "02");
            assert!(message.contains("illegal address"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(running.faults("plc", Fault::Exception(Exception::IllegalAddress)) >= 1);
    // Refused by the gateway: not writable, no such point, a value that does not fit, no such device.
    for (device, point, value) in [
        ("plc", "fixed", Down::Int(1)),
        ("plc", "nothing", Down::Int(1)),
        ("plc", "setpoint", Down::Float(1e9)),
        ("plc", "pump", Down::Text("on".into())),
    ] {
        match running.write(device, point, value).await {
            Err(DownlinkError::Unsupported(_)) => {}
            other => panic!("{point}: {other:?}"),
        }
    }
    assert_eq!(
        running.write("nobody", "x", Down::Int(1)).await,
        Err(DownlinkError::UnknownDevice("nobody".into()))
    );
    // A device that does not answer: a timeout.
    slave.cmd("mute 1").await;
    match running.write("plc", "setpoint", Down::Float(1.0)).await {
        Err(DownlinkError::Timeout(d)) => assert_eq!(d, Duration::from_millis(500)),
        other => panic!("{other:?}"),
    }
    // The device did act on it: an unanswered write may have been applied.
    assert_eq!(slave.get(1, "hr", 10, 1).await, [10]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modbus_tcp_reads_and_writes() {
    let port = peers::free_port();
    let mut slave = Slave::start(&format!("tcp:{port}"), &[1]).await;
    slave.set(1, "ir", 3, &[0x4366, 0x8000]).await;
    let config = format!(
        r#"
[[tcp]]
name = "plc"
address = "127.0.0.1:{port}"
response_timeout = "500 ms"
[[devices]]
id = "inverter"
bus = "plc"
unit = 1
poll = "100 ms"
points = [
    {{ name = "voltage", table = "input", address = 3, type = "f32", unit = "V" }},
    {{ name = "limit", table = "holding", address = 7, writable = true }},
]
"#
    );
    let running = Running::start(&config).await;
    wait_until(WAIT, "a reading over TCP", || {
        !running.readings("inverter").is_empty()
    })
    .await;
    assert_eq!(number(&running.readings("inverter")[0], "voltage"), 230.5);
    assert_eq!(
        running.write("inverter", "limit", Down::Int(80)).await,
        Ok("FC06".into())
    );
    assert_eq!(slave.get(1, "hr", 7, 1).await, [80]);
    slave.cmd("mute 1").await;
    wait_until(WAIT, "offline over TCP", || {
        running.statuses("inverter") == [false]
    })
    .await;
    slave.cmd("unmute 1").await;
    wait_until(WAIT, "online over TCP", || {
        running.statuses("inverter") == [false, true]
    })
    .await;
    running.stop().await;
}
