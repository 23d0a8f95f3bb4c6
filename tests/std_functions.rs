//! The standard functions (`functions/`), built to wasm by `functions/build.sh`
//! and run in the real host with the production limits.

mod support;

use sluice::config::Config;
use sluice::functions::{Compiled, FunctionSet, Input};
use sluice::ids::IdMint;
use sluice::metrics::Metrics;
use sluice_event::{Event, EventId, EventView, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

fn dist(name: &str) -> PathBuf {
    support::functions::dist().join(format!("{name}.wasm"))
}

/// One standard function in the host, fed directly.
struct Harness {
    set: FunctionSet,
    seq: u64,
}

impl Harness {
    fn new(name: &str, settings: &str) -> Harness {
        Harness::with_limits(name, "", settings)
    }

    /// With `limits` (keys of the function's own table, such as `state_max`).
    fn with_limits(name: &str, limits: &str, settings: &str) -> Harness {
        let text = format!(
            "[[functions]]\nname = \"{name}\"\nmodule = \"{}\"\nsubscribe = [\"in/#\"]\n{limits}\n[functions.config]\n{settings}\n",
            dist(name).display()
        );
        let config = Config::parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
        let set = Compiled::new(&config)
            .expect("module loads")
            .start(
                Arc::new(IdMint::new(9)),
                Arc::new(Metrics::default()),
                |_| Ok::<_, String>(BTreeMap::new()),
            )
            .expect("starts");
        Harness { set, seq: 0 }
    }

    fn call(&mut self, mut event: Event) -> Result<Vec<Event>, String> {
        self.seq += 1;
        event.id = EventId::new(1, self.seq);
        let bytes = event.encode();
        let cause = sluice_event::LazyView::parse(&bytes).expect("encoded event");
        let report = self.set.call_alone(0, Input::Event(&bytes), Some(&cause));
        let events = report.events();
        report.outcome.map(|()| events).map_err(|e| e.message)
    }

    fn tick(&mut self, now_ms: i64) -> Result<Vec<Event>, String> {
        let report = self.set.call_alone(0, Input::Tick(now_ms), None);
        let events = report.events();
        report.outcome.map(|()| events).map_err(|e| e.message)
    }
}

fn event(device: &str, readings: &[(&str, f64, &str)]) -> Event {
    let mut e = Event::new(format!("in/{device}"), device, 1_764_000_000_000);
    for (name, value, unit) in readings {
        e = e.with_number(*name, *value, *unit);
    }
    e
}

fn reading<'a>(e: &'a Event, name: &str) -> (f64, &'a str) {
    let r = e
        .readings
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no reading `{name}` in {e:?}"));
    match r.value {
        Value::Number(n) => (n, r.unit.as_str()),
        ref v => panic!("`{name}` is {v:?}"),
    }
}

fn meta<'a>(e: &'a Event, key: &str) -> Option<&'a Value> {
    e.meta.iter().find(|m| m.key == key).map(|m| &m.value)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn every_standard_module_is_small() {
    for name in [
        "scale",
        "threshold",
        "window",
        "deadband",
        "cayenne-lpp",
        "anomaly",
    ] {
        let size = std::fs::metadata(dist(name)).expect("built").len();
        assert!(size <= 30 * 1024, "{name}.wasm is {size} bytes");
    }
}

#[test]
fn scale_converts_one_reading_and_keeps_the_rest() {
    let mut h = Harness::new(
        "scale",
        "reading = \"temperature\"\nfactor = 1.8\noffset = 32\nunit = \"degF\"",
    );
    let input = event(
        "t1",
        &[("temperature", 21.5, "Cel"), ("humidity", 40.0, "%RH")],
    )
    .with_meta("rssi", Value::Number(-70.0));
    let out = h.call(input.clone()).expect("ok");
    assert_eq!(out.len(), 1);
    let e = &out[0];
    assert_eq!(e.subject, "fn/scale/t1");
    assert_eq!(e.device, "t1");
    assert_eq!(e.cause, Some(EventId::new(1, 1)));
    let (t, unit) = reading(e, "temperature");
    assert!(close(t, 70.7), "{t}");
    assert_eq!(unit, "degF");
    assert_eq!(reading(e, "humidity"), (40.0, "%RH"));
    assert_eq!(meta(e, "rssi"), Some(&Value::Number(-70.0)));

    let mut renamed = Harness::new(
        "scale",
        "reading = \"raw\"\nfactor = 0.1\nrename = \"pressure\"\nunit = \"hPa\"",
    );
    let out = renamed
        .call(event("p", &[("raw", 10132.0, "")]))
        .expect("ok");
    let (p, unit) = reading(&out[0], "pressure");
    assert!(close(p, 1013.2) && unit == "hPa", "{p} {unit}");
}

#[test]
fn threshold_alerts_on_crossings_with_hysteresis_per_device() {
    let mut h = Harness::new(
        "threshold",
        "reading = \"temperature\"\nhigh = 30\nlow = 25",
    );
    let mut alarms = Vec::new();
    for (device, v) in [
        ("a", 20.0),
        ("a", 31.0),
        ("b", 29.0),
        ("a", 32.0),
        ("a", 27.0),
        ("b", 30.5),
        ("a", 24.0),
        ("a", 31.0),
    ] {
        for e in h
            .call(event(device, &[("temperature", v, "Cel")]))
            .expect("ok")
        {
            let Some(Value::Text(kind)) = meta(&e, "alarm") else {
                panic!("alert without `alarm` meta: {e:?}")
            };
            assert_eq!(e.subject, format!("fn/threshold/{device}"));
            alarms.push((device, v, kind.clone()));
        }
    }
    assert_eq!(
        alarms,
        [
            ("a", 31.0, "high".to_owned()),
            ("b", 30.5, "high".to_owned()),
            ("a", 24.0, "clear".to_owned()),
            ("a", 31.0, "high".to_owned()),
        ]
    );
    // An event without the reading is no error and no alert.
    assert_eq!(
        h.call(event("a", &[("humidity", 99.0, "%RH")]))
            .expect("ok")
            .len(),
        0
    );
    // low above high is a configuration error: init fails, so does the call.
    let mut bad = Harness::new("threshold", "reading = \"t\"\nhigh = 10\nlow = 20");
    assert!(bad.call(event("a", &[("t", 1.0, "")])).is_err());
}

#[test]
fn window_emits_count_min_max_mean_per_device_and_metric_on_tick() {
    let mut h = Harness::new("window", "");
    for (device, t, rh) in [
        ("a", 20.0, 40.0),
        ("a", 22.0, 50.0),
        ("b", 10.0, 80.0),
        ("a", 27.0, 45.0),
    ] {
        let out = h
            .call(event(
                device,
                &[("temperature", t, "Cel"), ("humidity", rh, "%RH")],
            ))
            .expect("ok");
        assert!(out.is_empty(), "window only emits on tick");
    }
    let mut out = h.tick(1_764_000_060_000).expect("ok");
    out.sort_by(|x, y| x.device.cmp(&y.device));
    assert_eq!(out.len(), 2, "one event per device: {out:?}");
    let a = &out[0];
    assert_eq!(
        (a.device.as_str(), a.subject.as_str()),
        ("a", "fn/window/a")
    );
    assert_eq!(reading(a, "temperature.count").0, 3.0);
    assert_eq!(reading(a, "temperature.min"), (20.0, "Cel"));
    assert_eq!(reading(a, "temperature.max"), (27.0, "Cel"));
    assert!(close(reading(a, "temperature.mean").0, 23.0));
    assert!(close(reading(a, "humidity.mean").0, 45.0));
    assert_eq!(
        meta(a, "window_end_ms"),
        Some(&Value::Number(1_764_000_060_000.0))
    );
    assert_eq!(reading(&out[1], "temperature.count").0, 1.0);
    // The window tumbled: the next tick has nothing to say.
    assert!(h.tick(1_764_000_120_000).expect("ok").is_empty());
}

#[test]
fn window_flushes_ten_thousand_devices_in_chunks_without_a_trap() {
    const DEVICES: usize = 10_000;
    let mut h = Harness::with_limits("window", "state_max = \"4 MiB\"", "max_series = 20000");
    for n in 0..DEVICES {
        let device = format!("dev-{n:05}");
        let readings = [("t", n as f64, "Cel"), ("h", 40.0, "%RH")];
        assert!(h.call(event(&device, &readings)).expect("ok").is_empty());
    }
    // The default max_emit is 64: the tick emits in chunks of 64 events per
    // call, asking the host for another call until every device is out. This
    // is the writer's path: one tick, all its calls, one dispatch.
    let d = h.set.tick(0, 1_764_000_060_000);
    assert!(d.dead.is_empty(), "no failed call: {:?}", d.dead);
    assert_eq!(h.set.suspended(), 0);
    let out: Vec<Event> = d
        .outputs
        .iter()
        .map(|b| EventView::parse(b).expect("decodes").to_event())
        .collect();
    assert_eq!(out.len(), DEVICES);
    for (n, e) in out.iter().enumerate() {
        assert_eq!(e.device, format!("dev-{n:05}"), "in order of appearance");
        assert_eq!(reading(e, "t.count").0, 1.0);
        assert_eq!(reading(e, "t.max").0, n as f64);
        assert_eq!(reading(e, "h.mean"), (40.0, "%RH"));
    }
    // The state is empty again: the next tick has nothing to say.
    assert!(h.tick(1_764_000_120_000).expect("ok").is_empty());
    assert_eq!(
        h.set.functions()[0].state().size(),
        0,
        "state left after the flush"
    );
}

#[test]
fn deadband_reports_only_changes_of_at_least_delta() {
    let mut h = Harness::new("deadband", "delta = 0.5");
    let mut reported = Vec::new();
    for v in [20.0, 20.3, 20.7, 20.4, 19.9, 19.9] {
        for e in h
            .call(event("a", &[("temperature", v, "Cel")]))
            .expect("ok")
        {
            reported.push(reading(&e, "temperature").0);
        }
    }
    assert_eq!(reported, [20.0, 20.7, 19.9]);
    // Each device has its own last value.
    assert_eq!(
        h.call(event("b", &[("temperature", 20.0, "Cel")]))
            .expect("ok")
            .len(),
        1
    );
}

#[test]
fn cayenne_lpp_decodes_the_published_vectors() {
    let mut h = Harness::new("cayenne-lpp", "");
    let lpp = |hex: &str| {
        let mut e = Event::new("in/0004a30b001c0530", "0004a30b001c0530", 1_764_000_000_000)
            .with_meta("rssi", Value::Number(-97.0));
        e.raw = Some(
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect(),
        );
        e
    };
    // Two temperature sensors (Cayenne LPP documentation, example 1).
    let out = h.call(lpp("03670110056700ff")).expect("ok");
    assert_eq!(out.len(), 1);
    assert_eq!(reading(&out[0], "temperature_3"), (27.2, "Cel"));
    assert_eq!(reading(&out[0], "temperature_5"), (25.5, "Cel"));
    assert_eq!(meta(&out[0], "rssi"), Some(&Value::Number(-97.0)));
    // Accelerometer (example 2).
    let out = h.call(lpp("067104d2fb2e0000")).expect("ok");
    assert!(close(reading(&out[0], "accelerometer_x_6").0, 1.234));
    assert!(close(reading(&out[0], "accelerometer_y_6").0, -1.234));
    assert!(close(reading(&out[0], "accelerometer_z_6").0, 0.0));
    // GPS (example 3).
    let out = h.call(lpp("018806765ff2960a0003e8")).expect("ok");
    assert!(close(reading(&out[0], "gps_lat_1").0, 42.3519));
    assert!(close(reading(&out[0], "gps_lon_1").0, -87.9094));
    assert!(close(reading(&out[0], "gps_alt_1").0, 10.0));
    // Truncated, unknown type, no payload: errors, so the host dead-letters them.
    assert!(h.call(lpp("0367")).is_err());
    assert!(h.call(lpp("03ff01")).is_err());
    assert!(h.call(event("x", &[])).is_err());
}

/// The events of a sample file (`functions/samples/`), with whether each was
/// marked `"injected": true` in its meta.
fn sample(name: &str) -> Vec<(Event, bool)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("functions/samples")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("sample file");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let line: serde_json::Value = serde_json::from_str(l).expect("JSON line");
            let device = line["device"].as_str().expect("device");
            let subject = line["subject"].as_str().expect("subject");
            let mut e = Event::new(subject, device, 1_764_000_000_000);
            e.device_time_ms = line["device_time_ms"].as_i64();
            for r in line["readings"].as_array().expect("readings") {
                e = e.with_number(
                    r["name"].as_str().expect("name"),
                    r["value"].as_f64().expect("number"),
                    r["unit"].as_str().unwrap_or(""),
                );
            }
            (e, line["meta"]["injected"] == serde_json::Value::Bool(true))
        })
        .collect()
}

#[test]
fn anomaly_flags_exactly_the_injected_points_of_the_recorded_series() {
    let events = sample("anomaly.jsonl");
    let injected = events.iter().filter(|(_, i)| *i).count();
    assert_eq!(injected, 7, "the sample's ground truth");
    let mut h = Harness::new("anomaly", "");
    let mut flagged = Vec::new();
    for (n, (e, _)) in events.iter().enumerate() {
        let device_time = e.device_time_ms;
        for out in h.call(e.clone()).expect("ok") {
            flagged.push(n);
            let name = &e.readings[0].name;
            assert_eq!(out.subject, format!("fn/anomaly/{}/{name}", e.device));
            assert_eq!(out.device_time_ms, device_time);
            assert_eq!(meta(&out, "reading"), Some(&Value::Text(name.clone())));
            let (score, _) = reading(&out, "score");
            let (value, unit) = reading(&out, "value");
            let (mean, _) = reading(&out, "mean");
            let (deviation, _) = reading(&out, "deviation");
            assert_eq!(unit, e.readings[0].unit);
            assert!(score.abs() > 4.0, "{score}");
            assert!(close(score, (value - mean) / deviation), "{out:?}");
        }
    }
    let expected: Vec<usize> = (0..events.len()).filter(|&n| events[n].1).collect();
    assert_eq!(flagged, expected, "flagged exactly the injected readings");
}

#[test]
fn anomaly_watches_one_reading_and_refuses_bad_config() {
    let mut h = Harness::new("anomaly", "reading = \"t\"\nwarmup = 5\nthreshold = 3");
    for n in 0..20 {
        let v = if n % 2 == 0 { 1.0 } else { -1.0 };
        let out = h
            .call(event("a", &[("t", v, ""), ("h", 1000.0 * v, "")]))
            .expect("ok");
        assert!(out.is_empty());
    }
    let out = h
        .call(event("a", &[("t", 9.0, ""), ("h", 1e9, "")]))
        .expect("ok");
    assert_eq!(out.len(), 1, "only `t` is watched: {out:?}");
    assert_eq!(out[0].subject, "fn/anomaly/a/t");
    for bad in [
        "alpha = 0",
        "alpha = 1.5",
        "threshold = 0",
        "warmup = 1",
        "warmup = 2.5",
        "min_deviation = -1",
        "bogus = 1",
    ] {
        let mut h = Harness::new("anomaly", bad);
        assert!(h.call(event("a", &[("t", 1.0, "")])).is_err(), "{bad}");
    }
}
