//! The demo's simulated devices: one task each, sending readings as real
//! CoAP requests (the adapter's CoAP client over loopback UDP) every 300–800 ms,
//! confirmable and not, JSON and SenML JSON. Temperatures follow a random
//! walk that now and then crosses the alert threshold; every fifteen seconds
//! or so one device sends a malformed payload and shows the `4.00` it gets.

use super::screen;
use coap_lite::{MessageClass, Packet, RequestType};
use sluice_adapter_common::{Random, Shutdown};
use sluice_coap::client::{self, Client, ClientError, Request};
use sluice_coap::timing::{self, Transmission};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// RFC 7252's timing with two retransmissions instead of four, which bounds
/// a request to at most 3 s × (1 + 2 + 4) = 21 s on loopback.
const TIMING: Transmission = Transmission {
    ack_timeout: timing::ACK_TIMEOUT,
    ack_random_factor: timing::ACK_RANDOM_FACTOR,
    max_retransmit: 2,
};
/// Pause between two requests of a device, in ms.
const PAUSE_MS: (u64, u64) = (300, 800);
/// One device sends a malformed payload this often…
const MALFORMED_EVERY: Duration = Duration::from_secs(15);
/// …the first this soon after the start.
const FIRST_MALFORMED: Duration = Duration::from_secs(3);
/// Refused (and, apart, unanswered) well-formed readings printed; every one is counted.
const PROBLEMS_SHOWN: u64 = 5;

/// Content-Format application/senml+json (RFC 8428).
const SENML_JSON: u16 = 110;

/// How a device encodes its readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json` (50): `{"temperature": 27.3, "humidity": 41}`.
    Json,
    /// `application/senml+json` (110), with units and a base name.
    Senml,
}

impl Encoding {
    fn content_format(self) -> u16 {
        match self {
            Encoding::Json => client::JSON,
            Encoding::Senml => SENML_JSON,
        }
    }

    /// How the banner names it.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Json => "JSON",
            Encoding::Senml => "SenML JSON",
        }
    }
}

/// One simulated device.
#[derive(Clone, Debug)]
pub struct Device {
    /// Its id: the last segment of the path it posts to.
    pub id: &'static str,
    /// CON (acknowledged, retransmitted) or NON requests.
    pub confirmable: bool,
    /// Its payload format.
    pub encoding: Encoding,
    /// Its first temperature, °C.
    pub start: f64,
    /// The range its temperature wanders in, °C.
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// Heads for `high` right away, so an alert comes early in the run.
    pub heats_up: bool,
}

/// The six devices of the demo. Alerts fire above 30 °C (86 °F) and clear
/// below 26.7 °C (80 °F); three devices wander across that line.
pub fn fleet() -> Vec<Device> {
    let device = |id, confirmable, encoding, start, low, high, heats_up| Device {
        id,
        confirmable,
        encoding,
        start,
        low,
        high,
        heats_up,
    };
    vec![
        device("dev-1", true, Encoding::Json, 29.0, 24.0, 33.0, true),
        device("dev-2", false, Encoding::Senml, 22.0, 19.0, 25.0, false),
        device("dev-3", true, Encoding::Senml, 27.5, 25.0, 32.5, false),
        device("dev-4", false, Encoding::Json, 21.0, 18.0, 24.0, false),
        device("dev-5", true, Encoding::Json, 25.0, 22.0, 31.0, false),
        device("dev-6", false, Encoding::Senml, 26.0, 23.0, 31.5, false),
    ]
}

/// One reading of a device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reading {
    /// °C, one decimal.
    pub temperature: f64,
    /// %RH, whole.
    pub humidity: f64,
}

/// A device's weather: the temperature drifts towards a target that moves
/// now and then, with noise; humidity wanders a little.
pub struct Climate {
    temperature: f64,
    humidity: f64,
    target: f64,
    /// Steps until the target moves.
    hold: u64,
    low: f64,
    high: f64,
}

impl Climate {
    /// The climate of `device` at the start.
    pub fn new(device: &Device, rng: &mut Random) -> Climate {
        let (target, hold) = if device.heats_up {
            (device.high, 15)
        } else {
            (rng.between(device.low, device.high), rng.range(5, 25))
        };
        Climate {
            temperature: device.start,
            humidity: rng.between(35.0, 55.0),
            target,
            hold,
            low: device.low,
            high: device.high,
        }
    }

    /// The next reading.
    pub fn step(&mut self, rng: &mut Random) -> Reading {
        if self.hold == 0 {
            self.target = rng.between(self.low, self.high);
            self.hold = rng.range(10, 30);
        } else {
            self.hold -= 1;
        }
        self.temperature += (self.target - self.temperature) * 0.15 + rng.between(-0.3, 0.3);
        self.humidity = (self.humidity + rng.between(-1.0, 1.0)).clamp(20.0, 80.0);
        Reading {
            temperature: (self.temperature * 10.0).round() / 10.0,
            humidity: self.humidity.round(),
        }
    }
}

/// A reading as the device's encoding writes it.
pub fn payload(device: &str, encoding: Encoding, r: Reading) -> String {
    match encoding {
        Encoding::Json => format!(
            r#"{{"temperature": {:.1}, "humidity": {:.0}}}"#,
            r.temperature, r.humidity
        ),
        Encoding::Senml => format!(
            r#"[{{"bn":"urn:dev:demo:{device}:","n":"temperature","u":"Cel","v":{:.1}}},{{"n":"humidity","u":"%RH","v":{:.0}}}]"#,
            r.temperature, r.humidity
        ),
    }
}

/// Payloads sent as JSON on purpose to get a `4.00`: what is wrong, and the bytes.
pub const MALFORMED: [(&str, &str); 3] = [
    ("a truncated JSON object", r#"{"temperature": 2"#),
    (
        "an array where a number belongs",
        r#"{"temperature": [27.1, 27.2]}"#,
    ),
    ("text that is not JSON", "temperature is fine"),
];

/// A confirmable or non-confirmable POST of `payload` to `/<path>/<device>`.
pub fn request(path: &str, device: &str, confirmable: bool, format: u16, payload: &str) -> Request {
    let mut r = Request::new(RequestType::Post, [path, device])
        .with_payload(format, payload.as_bytes().to_vec());
    r.confirmable = confirmable;
    r
}

/// What came back for a request.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// A response (piggybacked on the ACK, or a NON response).
    Response(Packet),
    /// The server reset the exchange.
    Reset,
    /// Nothing, after every retransmission.
    Silence,
}

/// What every device did, shared by all of them.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Requests sent (not counting retransmissions).
    pub sent: AtomicU64,
    /// Of those, confirmable.
    pub confirmable: AtomicU64,
    /// Well-formed readings answered with a success (2.xx).
    pub stored: AtomicU64,
    /// Malformed payloads sent on purpose.
    pub malformed: AtomicU64,
    /// Malformed payloads answered `4.00`, as they should be.
    pub malformed_refused: AtomicU64,
    /// Well-formed readings answered with anything but a success (or RST).
    pub refused: AtomicU64,
    /// Requests that got no answer.
    pub unanswered: AtomicU64,
    /// Confirmable requests sent again after a timeout.
    pub retransmissions: AtomicU64,
}

/// A copy of [`DeviceStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct DeviceTotals {
    pub sent: u64,
    pub confirmable: u64,
    pub stored: u64,
    pub malformed: u64,
    pub malformed_refused: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub retransmissions: u64,
}

impl DeviceStats {
    fn add(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Copies every counter.
    pub fn totals(&self) -> DeviceTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceTotals {
            sent: get(&self.sent),
            confirmable: get(&self.confirmable),
            stored: get(&self.stored),
            malformed: get(&self.malformed),
            malformed_refused: get(&self.malformed_refused),
            refused: get(&self.refused),
            unanswered: get(&self.unanswered),
            retransmissions: get(&self.retransmissions),
        }
    }
}

/// Whose turn it is to send garbage: the first device to ask once the time
/// has come gets it, and the next turn is [`MALFORMED_EVERY`] later.
pub struct MalformedTurns {
    start: Instant,
    /// When the next turn comes, in ms since `start`.
    next_ms: AtomicU64,
    taken: AtomicU64,
}

impl MalformedTurns {
    /// The first turn comes `first` after now.
    pub fn new(first: Duration) -> MalformedTurns {
        MalformedTurns {
            start: Instant::now(),
            next_ms: AtomicU64::new(first.as_millis() as u64),
            taken: AtomicU64::new(0),
        }
    }

    /// Which malformed payload to send now, if it is this caller's turn.
    pub fn claim(&self) -> Option<usize> {
        let now = self.start.elapsed().as_millis() as u64;
        let next = self.next_ms.load(Ordering::Relaxed);
        let later = now + MALFORMED_EVERY.as_millis() as u64;
        if now < next
            || self
                .next_ms
                .compare_exchange(next, later, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        Some(self.taken.fetch_add(1, Ordering::Relaxed) as usize % MALFORMED.len())
    }
}

/// Starts one task per device, posting to `/<path>/<device>` on `server`
/// until `shutdown`.
pub fn start(
    server: SocketAddr,
    path: &str,
    seed: u64,
    stats: &Arc<DeviceStats>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let turns = Arc::new(MalformedTurns::new(FIRST_MALFORMED));
    fleet()
        .into_iter()
        .zip(0u64..)
        .map(|(device, n)| {
            let sim = Simulated {
                device,
                server,
                path: path.to_owned(),
                rng: Random::from_seed(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)),
                turns: turns.clone(),
                stats: stats.clone(),
            };
            tokio::spawn(sim.run(shutdown.clone()))
        })
        .collect()
}

/// A device's task.
struct Simulated {
    device: Device,
    server: SocketAddr,
    path: String,
    rng: Random,
    turns: Arc<MalformedTurns>,
    stats: Arc<DeviceStats>,
}

impl Simulated {
    async fn run(mut self, mut shutdown: Shutdown) {
        let id = self.device.id;
        let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut client = match Client::bind(local, TIMING).await {
            Ok(c) => c,
            Err(e) => {
                return screen::show("device", format!("{id}  cannot open a UDP socket: {e}"));
            }
        };
        let mut climate = Climate::new(&self.device, &mut self.rng);
        loop {
            let pause = Duration::from_millis(self.rng.range(PAUSE_MS.0, PAUSE_MS.1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait() => return,
            }
            let malformed = self.turns.claim();
            let (format, body) = match malformed {
                Some(k) => (client::JSON, MALFORMED[k].1.to_owned()),
                None => {
                    let reading = climate.step(&mut self.rng);
                    let e = self.device.encoding;
                    (e.content_format(), payload(id, e, reading))
                }
            };
            let confirmable = self.device.confirmable;
            let req = request(&self.path, id, confirmable, format, &body);
            DeviceStats::add(&self.stats.sent);
            if confirmable {
                DeviceStats::add(&self.stats.confirmable);
            }
            let answer = tokio::select! {
                a = self.exchange(&mut client, &req) => a,
                _ = shutdown.wait() => return,
            };
            match malformed {
                Some(k) => self.report_malformed(k, answer),
                None => self.tally(answer),
            }
        }
    }

    /// Sends the request and waits for its answer (the client retransmits
    /// a confirmable one).
    async fn exchange(&self, client: &mut Client, request: &Request) -> Answer {
        let before = client.retransmissions();
        let result = client.send(self.server, request).await;
        let retransmitted = client.retransmissions() - before;
        self.stats
            .retransmissions
            .fetch_add(retransmitted, Ordering::Relaxed);
        match result {
            Ok(response) => Answer::Response(response),
            Err(ClientError::Reset) => Answer::Reset,
            // A failed send (nothing listening yet) is as good as silence.
            Err(_) => Answer::Silence,
        }
    }

    /// Counts the answer to a well-formed reading; shows the first few
    /// that were refused or went unanswered.
    fn tally(&self, answer: Answer) {
        let stats = &self.stats;
        let (counter, why) = match answer {
            Answer::Response(r) if client::is_success(r.header.code) => {
                DeviceStats::add(&stats.stored);
                return;
            }
            Answer::Response(r) => (
                &stats.refused,
                format!("{} {}", client::status(r.header.code), diagnostic(&r)),
            ),
            Answer::Reset => (&stats.refused, "a reset (RST)".to_owned()),
            Answer::Silence => (&stats.unanswered, "no answer".to_owned()),
        };
        if DeviceStats::add(counter) <= PROBLEMS_SHOWN {
            let kind = self.device.encoding.label();
            screen::show(
                "device",
                format!("{}  a well-formed {kind} reading got {why}", self.device.id),
            );
        }
    }

    /// Shows what the gateway said to a malformed payload.
    fn report_malformed(&self, k: usize, answer: Answer) {
        let (what, body) = MALFORMED[k];
        DeviceStats::add(&self.stats.malformed);
        let got = match answer {
            Answer::Response(r) => {
                if r.header.code == MessageClass::Response(coap_lite::ResponseType::BadRequest) {
                    DeviceStats::add(&self.stats.malformed_refused);
                }
                format!("{} {}", client::status(r.header.code), diagnostic(&r))
            }
            Answer::Reset => "RST".to_owned(),
            Answer::Silence => {
                DeviceStats::add(&self.stats.unanswered);
                "no answer".to_owned()
            }
        };
        screen::show(
            "device",
            format!("{}  sent {what} {body:?} → {got}", self.device.id),
        );
    }
}

/// The diagnostic payload of a response, quoted, or nothing.
fn diagnostic(response: &Packet) -> String {
    match std::str::from_utf8(&response.payload) {
        Ok(text) if !text.is_empty() => format!("{text:?}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_that_heats_up_crosses_the_alert_line_within_ten_readings() {
        let dev1 = fleet()
            .into_iter()
            .find(|d| d.heats_up)
            .expect("one heats up");
        for seed in 0..200 {
            let mut rng = Random::from_seed(seed);
            let mut climate = Climate::new(&dev1, &mut rng);
            let hot = (0..10).any(|_| climate.step(&mut rng).temperature > 30.0);
            assert!(hot, "seed {seed}");
        }
    }

    #[test]
    fn temperatures_stay_near_their_range() {
        for device in fleet() {
            let mut rng = Random::from_seed(7);
            let mut climate = Climate::new(&device, &mut rng);
            for _ in 0..5_000 {
                let r = climate.step(&mut rng);
                assert!(
                    (device.low - 2.0..device.high + 2.0).contains(&r.temperature),
                    "{} at {}",
                    device.id,
                    r.temperature
                );
                assert!((20.0..=80.0).contains(&r.humidity));
            }
        }
    }

    #[test]
    fn payloads_are_what_the_adapter_reads() {
        let r = Reading {
            temperature: 27.3,
            humidity: 41.0,
        };
        assert_eq!(
            payload("dev-1", Encoding::Json, r),
            r#"{"temperature": 27.3, "humidity": 41}"#
        );
        assert_eq!(
            payload("dev-2", Encoding::Senml, r),
            r#"[{"bn":"urn:dev:demo:dev-2:","n":"temperature","u":"Cel","v":27.3},{"n":"humidity","u":"%RH","v":41}]"#
        );
        let json = |s: &str| {
            sluice_coap::payload::decode(
                sluice_coap::payload::Format::Json,
                s.as_bytes(),
                "value",
                0,
            )
        };
        assert!(json(&payload("dev-1", Encoding::Json, r)).is_ok());
        for (what, body) in MALFORMED {
            assert!(json(body).is_err(), "{what} is accepted");
        }
    }

    #[test]
    fn a_request_posts_to_the_device_path() {
        let r = request("r", "dev-3", false, SENML_JSON, "[]");
        assert_eq!(r.method, RequestType::Post);
        assert!(!r.confirmable);
        assert_eq!(r.path, ["r", "dev-3"]);
        assert_eq!(r.content_format, Some(110));
        assert_eq!(r.payload, b"[]");
    }

    #[test]
    fn malformed_turns_come_one_at_a_time() {
        let turns = MalformedTurns::new(Duration::ZERO);
        assert_eq!(turns.claim(), Some(0));
        assert_eq!(turns.claim(), None, "the next turn is 15 s away");
    }
}
