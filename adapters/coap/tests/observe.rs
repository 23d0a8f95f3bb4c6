//! The observer against a real CoAP device: aiocoap serving an observable
//! resource and a plain one (`tests/peers/observable_server.py`; needs
//! `pip install aiocoap cbor2`, see scripts/install-test-deps.sh), and
//! against a hand-rolled device that retransmits a confirmable notification.

mod peers;

use coap_lite::{CoapOption, MessageClass, MessageType, Packet, ResponseType};
use peers::{Device, free_port};
use sluice_adapter_common::testing::{CollectingSink, wait_until};
use sluice_adapter_common::{Counters, HumanDuration, Shutdown};
use sluice_coap::config::ObserveConfig;
use sluice_coap::observe;
use sluice_coap::rejection::Rejection;
use sluice_event::Event;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
    wait_until(Duration::from_secs(8), "five notifications", || {
        observers.sink.len() >= 5
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
    wait_until(Duration::from_secs(8), "three notifications", || {
        observers.sink.len() >= 3
    })
    .await;

    device.kill().await;
    // The restarted device counts from 1000, so its readings stand out.
    let _device = Device::start(port, 1000).await;
    let restarted = || {
        let values = observers.values("greenhouse-2", "temperature");
        values.iter().filter(|&&v| v >= 1000.0).count() >= 3
    };
    let what = "three notifications after the restart";
    wait_until(Duration::from_secs(12), what, restarted).await;

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
    let polled = || {
        observers.values("meter-poll", "plain").len() >= 3
            && observers.values("meter-fallback", "plain").len() >= 3
    };
    wait_until(Duration::from_secs(8), "three polls of each device", polled).await;

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

/// A response from the hand-rolled device: JSON `{"n": n}` with Observe `observe`.
fn notification(kind: MessageType, mid: u16, token: &[u8], observe: u32, n: u32) -> Vec<u8> {
    let mut p = Packet::new();
    p.header.set_type(kind);
    p.header.code = MessageClass::Response(ResponseType::Content);
    p.header.message_id = mid;
    p.set_token(token.to_vec());
    p.set_observe_value(observe);
    p.add_option(CoapOption::ContentFormat, vec![50]);
    p.payload = format!(r#"{{"n": {n}}}"#).into_bytes();
    p.to_bytes().expect("encodes")
}

/// What the hand-rolled device received within `wait`, if anything.
async fn receive(device: &UdpSocket, wait: Duration) -> Option<(Packet, SocketAddr)> {
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(wait, device.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((
        Packet::from_bytes(&buf[..n]).expect("the observer sends CoAP"),
        from,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmable_notification_is_acknowledged_only_once_durable() {
    const MID: u16 = 7000;
    /// How often the device retransmits: faster than RFC 7252, for a quick test.
    const RETRANSMIT: Duration = Duration::from_millis(100);
    let device = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let port = device.local_addr().expect("address").port();
    let uri = format!("coap://127.0.0.1:{port}/t");
    let observers = Observers::start(vec![target("hand-1", uri, true, HumanDuration::secs(30))]);
    observers.sink.refuse(true);

    let (registration, observer) = receive(&device, Duration::from_secs(5))
        .await
        .expect("a registration");
    assert_eq!(registration.get_observe_value(), Some(Ok(0)));
    let token = registration.get_token().to_vec();
    let ack = MessageType::Acknowledgement;
    let first = notification(ack, registration.header.message_id, &token, 1, 1);
    device.send_to(&first, observer).await.expect("send");

    // While the sink refuses, every copy is refused and none acknowledged.
    let con = notification(MessageType::Confirmable, MID, &token, 2, 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while observers.counters.snapshot().events_refused < 4 {
        assert!(
            Instant::now() < deadline,
            "refusals: {:?}",
            observers.counters.snapshot()
        );
        device.send_to(&con, observer).await.expect("send");
        if let Some((p, _)) = receive(&device, RETRANSMIT).await {
            assert_ne!(
                p.header.get_type(),
                ack,
                "acknowledged while refused: {p:?}"
            );
        }
    }
    assert!(observers.sink.is_empty());

    // Room again: the next retransmission is taken in and acknowledged.
    observers.sink.refuse(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no ACK after the sink accepted");
        device.send_to(&con, observer).await.expect("send");
        match receive(&device, RETRANSMIT).await {
            Some((p, _)) if p.header.get_type() == ack => {
                assert_eq!(p.header.message_id, MID);
                break;
            }
            _ => continue,
        }
    }
    // A copy sent after the ACK is acknowledged again and not ingested twice.
    device.send_to(&con, observer).await.expect("send");
    wait_until(Duration::from_secs(5), "the duplicate counted", || {
        observers.counters.rejected(Rejection::Duplicate) >= 1
    })
    .await;
    assert_eq!(
        observers.values("hand-1", "n"),
        [2.0],
        "ingested exactly once"
    );
    observers.shut_down().await;
}
