//! The observer against a real CoAP device: aiocoap serving an observable
//! resource and a plain one (`tests/peers/observable_server.py`; needs
//! `pip install aiocoap cbor2`, see scripts/install-test-deps.sh).

use sluice_adapter_common::testing::CollectingSink;
use sluice_adapter_common::{Counters, HumanDuration, Shutdown};
use sluice_coap::config::ObserveConfig;
use sluice_coap::observe;
use sluice_coap::rejection::Rejection;
use sluice_event::Event;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/peers/observable_server.py"
);

/// The Python device on 127.0.0.1:`port`; killed when dropped.
struct Device {
    child: Child,
}

impl Device {
    /// Starts it with its counters at `first_value` and waits for "ready".
    async fn start(port: u16, first_value: u32) -> Device {
        let mut child = Command::new("python3")
            .arg(SERVER)
            .arg(port.to_string())
            .arg(first_value.to_string())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the device starts within 10 s");
        assert_eq!(
            first.ok().flatten().as_deref(),
            Some("ready"),
            "observable_server.py did not start (is aiocoap installed?)"
        );
        Device { child }
    }

    /// Kills it and waits until it is gone (its port is free again).
    async fn kill(mut self) {
        self.child.kill().await.expect("the device can be killed");
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind port 0");
    socket.local_addr().expect("local address").port()
}

/// `observe::run` in the background, with what it produced.
struct Observers {
    sink: CollectingSink,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Observers {
    fn start(targets: Vec<ObserveConfig>) -> Observers {
        let sink = CollectingSink::new();
        let counters = Arc::new(Counters::default());
        let (stop, shutdown) = Shutdown::manual();
        let task = tokio::spawn(observe::run(
            targets,
            sink.clone(),
            counters.clone(),
            shutdown,
        ));
        Observers {
            sink,
            counters,
            stop,
            task,
        }
    }

    /// The numbers of reading `name` in the events of `device`, in order.
    fn values(&self, device: &str, name: &str) -> Vec<f64> {
        let events = self.sink.events();
        let of_device = events.iter().filter(|e| e.device == device);
        of_device.map(|e| reading(e, name)).collect()
    }

    /// Waits until `done` holds, for at most `limit`.
    async fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Observers) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; events: {:?}; counters: {:?}",
                self.sink.events(),
                self.counters.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Fires shutdown; `run` must return promptly.
    async fn shut_down(self) {
        self.stop.send(true).expect("run is listening");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("run returns on shutdown")
            .expect("run does not panic");
    }
}

fn target(device: &str, uri: String, observe: bool, poll: HumanDuration) -> ObserveConfig {
    ObserveConfig {
        device: device.into(),
        uri,
        observe,
        poll,
    }
}

fn reading(event: &Event, name: &str) -> f64 {
    event
        .number(name)
        .unwrap_or_else(|| panic!("no number `{name}` in {event:?}"))
}

fn increasing(values: &[f64]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_become_events() {
    let port = free_port();
    let _device = Device::start(port, 0).await;
    let uri = format!("coap://127.0.0.1:{port}/sensors/temp");
    // Polling would take 10 s: five events sooner can only be notifications.
    let observers = Observers::start(vec![target(
        "greenhouse-1",
        uri,
        true,
        HumanDuration::secs(10),
    )]);
    let started = Instant::now();
    observers
        .wait_for("five notifications", Duration::from_secs(8), |o| {
            o.sink.len() >= 5
        })
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));

    let events = observers.sink.events();
    for e in &events {
        assert_eq!(e.subject, "coap/greenhouse-1");
        assert_eq!(e.device, "greenhouse-1");
    }
    let temperatures = observers.values("greenhouse-1", "temperature");
    assert!(
        increasing(&temperatures),
        "each once, in order: {temperatures:?}"
    );
    let counters = observers.counters.snapshot();
    assert!(counters.events_accepted >= 5, "{counters:?}");
    assert!(
        counters.messages_in >= 5 && counters.bytes_in > 0,
        "{counters:?}"
    );
    assert_eq!(counters.events_refused, 0, "{counters:?}");
    for reason in [
        Rejection::Malformed,
        Rejection::ErrorResponse,
        Rejection::Stale,
    ] {
        assert_eq!(
            observers.counters.rejected(reason),
            0,
            "{reason:?}: {counters:?}"
        );
    }
    observers.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_device_is_observed_again() {
    let port = free_port();
    let device = Device::start(port, 0).await;
    let uri = format!("coap://127.0.0.1:{port}/sensors/temp");
    let observers = Observers::start(vec![target(
        "greenhouse-2",
        uri,
        true,
        HumanDuration::secs(1),
    )]);
    observers
        .wait_for("three notifications", Duration::from_secs(8), |o| {
            o.sink.len() >= 3
        })
        .await;

    device.kill().await;
    // The restarted device counts from 1000, so its readings stand out.
    let _device = Device::start(port, 1000).await;
    let restarted = |o: &Observers| {
        let values = o.values("greenhouse-2", "temperature");
        values.iter().filter(|&&v| v >= 1000.0).count() >= 3
    };
    observers
        .wait_for(
            "three notifications after the restart",
            Duration::from_secs(12),
            restarted,
        )
        .await;

    let temperatures = observers.values("greenhouse-2", "temperature");
    let after: Vec<f64> = temperatures.into_iter().filter(|&v| v >= 1000.0).collect();
    assert!(increasing(&after), "{after:?}");
    observers.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_without_observe_are_polled() {
    let port = free_port();
    let _device = Device::start(port, 0).await;
    let uri = format!("coap://127.0.0.1:{port}/sensors/plain");
    let every = HumanDuration::millis(300);
    // One polls by configuration; one asks for Observe on a resource that
    // does not support it and falls back to polling.
    let observers = Observers::start(vec![
        target("meter-poll", uri.clone(), false, every),
        target("meter-fallback", uri, true, every),
    ]);
    let polled = |o: &Observers| {
        o.values("meter-poll", "plain").len() >= 3 && o.values("meter-fallback", "plain").len() >= 3
    };
    observers
        .wait_for("three polls of each device", Duration::from_secs(8), polled)
        .await;

    for device in ["meter-poll", "meter-fallback"] {
        let values = observers.values(device, "plain");
        assert!(increasing(&values), "{device}: {values:?}");
        for e in observers
            .sink
            .events()
            .iter()
            .filter(|e| e.device == device)
        {
            assert_eq!(e.subject, format!("coap/{device}"));
        }
    }
    assert_eq!(observers.counters.rejected(Rejection::Malformed), 0);
    assert!(observers.counters.events_accepted.load(Ordering::Relaxed) >= 6);
    observers.shut_down().await;
}
