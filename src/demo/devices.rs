//! The demo's simulated devices: one task each, sending readings as real
//! CoAP requests (coap-lite messages over loopback UDP) every 300–800 ms,
//! confirmable and not, JSON and SenML JSON. Temperatures follow a random
//! walk that now and then crosses the alert threshold; every fifteen seconds
//! or so one device sends a malformed payload and shows the `4.00` it gets.

use super::screen;
use coap_lite::{CoapOption, ContentFormat, MessageClass, MessageType, Packet, RequestType};
use sluice_adapter_common::Shutdown;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// RFC 7252 §4.8 ACK_TIMEOUT. The first wait of a confirmable request is
/// this times a random factor in [1, ACK_RANDOM_FACTOR], doubled per retry.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// RFC 7252 §4.8 ACK_RANDOM_FACTOR.
const ACK_RANDOM_FACTOR: f64 = 1.5;
/// Retransmissions of a confirmable request. RFC 7252 says 4; 2 bounds a
/// request to at most 3 s × (1 + 2 + 4) = 21 s on loopback.
const MAX_RETRANSMIT: u32 = 2;
/// How long a non-confirmable request waits for its response.
const NON_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two requests of a device, in ms.
const PAUSE_MS: (u64, u64) = (300, 800);
/// One device sends a malformed payload this often…
const MALFORMED_EVERY: Duration = Duration::from_secs(15);
/// …the first this soon after the start.
const FIRST_MALFORMED: Duration = Duration::from_secs(3);
/// Refused (and, apart, unanswered) well-formed readings printed; every one is counted.
const PROBLEMS_SHOWN: u64 = 5;

/// A small xorshift64 generator: random enough for simulated weather.
pub struct XorShift(u64);

impl XorShift {
    /// A generator from any seed (spread with splitmix64; never zero).
    pub fn new(seed: u64) -> XorShift {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        XorShift((z ^ (z >> 31)).max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[lo, hi)`.
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi - lo) * unit
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// How a device encodes its readings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json` (50): `{"temperature": 27.3, "humidity": 41}`.
    Json,
    /// `application/senml+json` (110), with units and a base name.
    Senml,
}

impl Encoding {
    fn content_format(self) -> ContentFormat {
        match self {
            Encoding::Json => ContentFormat::ApplicationJSON,
            Encoding::Senml => ContentFormat::ApplicationSenmlJSON,
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
    pub fn new(device: &Device, rng: &mut XorShift) -> Climate {
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
    pub fn step(&mut self, rng: &mut XorShift) -> Reading {
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

/// A POST of `payload` to `/<path>/<device>`.
pub fn request(
    path: &str,
    device: &str,
    confirmable: bool,
    message_id: u16,
    token: [u8; 4],
    format: ContentFormat,
    payload: &str,
) -> Packet {
    let mut p = Packet::new();
    p.header.set_type(if confirmable {
        MessageType::Confirmable
    } else {
        MessageType::NonConfirmable
    });
    p.header.code = MessageClass::Request(RequestType::Post);
    p.header.message_id = message_id;
    p.set_token(token.to_vec());
    p.add_option(CoapOption::UriPath, path.as_bytes().to_vec());
    p.add_option(CoapOption::UriPath, device.as_bytes().to_vec());
    p.set_content_format(format);
    p.payload = payload.as_bytes().to_vec();
    p
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

/// Whether `reply` answers `request`: an ACK or RST with its message id,
/// or a non-confirmable response with its token. (Sluice answers only once
/// the readings are durable and always piggybacks, so a client this simple
/// needs no separate-response handling.)
pub fn answers(request: &Packet, reply: Packet) -> Option<Answer> {
    let same_id = reply.header.message_id == request.header.message_id;
    let same_token = reply.get_token() == request.get_token();
    let is_response = matches!(reply.header.code, MessageClass::Response(_));
    match reply.header.get_type() {
        MessageType::Reset if same_id => Some(Answer::Reset),
        MessageType::Acknowledgement if same_id && same_token && is_response => {
            Some(Answer::Response(reply))
        }
        MessageType::NonConfirmable if same_token && is_response => Some(Answer::Response(reply)),
        _ => None,
    }
}

/// `4.00` for a message class.
pub fn code_text(class: MessageClass) -> String {
    let b = u8::from(class);
    format!("{}.{:02}", b >> 5, b & 0x1f)
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
                rng: XorShift::new(seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D)),
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
    rng: XorShift,
    turns: Arc<MalformedTurns>,
    stats: Arc<DeviceStats>,
}

impl Simulated {
    async fn run(mut self, mut shutdown: Shutdown) {
        let id = self.device.id;
        let socket = match UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(s) => s,
            Err(e) => {
                return screen::show("device", format!("{id}  cannot open a UDP socket: {e}"));
            }
        };
        if let Err(e) = socket.connect(self.server).await {
            return screen::show("device", format!("{id}  cannot reach {}: {e}", self.server));
        }
        let mut climate = Climate::new(&self.device, &mut self.rng);
        let mut message_id = self.rng.next_u64() as u16;
        loop {
            let pause = Duration::from_millis(self.rng.range(PAUSE_MS.0, PAUSE_MS.1));
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = shutdown.wait() => return,
            }
            message_id = message_id.wrapping_add(1);
            let token = (self.rng.next_u64() as u32).to_be_bytes();
            let malformed = self.turns.claim();
            let (format, body) = match malformed {
                Some(k) => (ContentFormat::ApplicationJSON, MALFORMED[k].1.to_owned()),
                None => {
                    let reading = climate.step(&mut self.rng);
                    let e = self.device.encoding;
                    (e.content_format(), payload(id, e, reading))
                }
            };
            let confirmable = self.device.confirmable;
            let req = request(
                &self.path,
                id,
                confirmable,
                message_id,
                token,
                format,
                &body,
            );
            DeviceStats::add(&self.stats.sent);
            if confirmable {
                DeviceStats::add(&self.stats.confirmable);
            }
            let answer = tokio::select! {
                a = self.exchange(&socket, &req) => a,
                _ = shutdown.wait() => return,
            };
            match malformed {
                Some(k) => self.report_malformed(k, answer),
                None => self.tally(answer),
            }
        }
    }

    /// Sends the request and waits for its answer, retransmitting a
    /// confirmable one with exponential back-off (RFC 7252 §4.2).
    async fn exchange(&mut self, socket: &UdpSocket, request: &Packet) -> Answer {
        let Ok(bytes) = request.to_bytes() else {
            return Answer::Silence;
        };
        let confirmable = request.header.get_type() == MessageType::Confirmable;
        let (mut wait, attempts) = if confirmable {
            let factor = self.rng.between(1.0, ACK_RANDOM_FACTOR);
            (ACK_TIMEOUT.mul_f64(factor), 1 + MAX_RETRANSMIT)
        } else {
            (NON_TIMEOUT, 1)
        };
        let mut buf = [0u8; 1500];
        for attempt in 0..attempts {
            if attempt > 0 {
                DeviceStats::add(&self.stats.retransmissions);
            }
            // A failed send (nothing listening yet) is a lost datagram: wait and retry.
            let _ = socket.send(&bytes).await;
            let deadline = tokio::time::Instant::now() + wait;
            while let Ok(received) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await
            {
                // Errors are ICMP reports of earlier sends; keep listening.
                let Ok(n) = received else { continue };
                let Ok(reply) = Packet::from_bytes(&buf[..n]) else {
                    continue;
                };
                if let Some(answer) = answers(request, reply) {
                    return answer;
                }
            }
            wait *= 2;
        }
        Answer::Silence
    }

    /// Counts the answer to a well-formed reading; shows the first few
    /// that were refused or went unanswered.
    fn tally(&self, answer: Answer) {
        let stats = &self.stats;
        let (counter, why) = match answer {
            Answer::Response(r) if is_success(r.header.code) => {
                DeviceStats::add(&stats.stored);
                return;
            }
            Answer::Response(r) => (
                &stats.refused,
                format!("{} {}", code_text(r.header.code), diagnostic(&r)),
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
                format!("{} {}", code_text(r.header.code), diagnostic(&r))
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

fn is_success(code: MessageClass) -> bool {
    u8::from(code) >> 5 == 2
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
    use coap_lite::ResponseType;

    #[test]
    fn xorshift_is_uniform_enough_and_never_stuck() {
        let mut rng = XorShift::new(0);
        let xs: Vec<f64> = (0..10_000).map(|_| rng.between(0.0, 1.0)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!((0..1000).all(|_| (300..=800).contains(&rng.range(300, 800))));
    }

    #[test]
    fn the_device_that_heats_up_crosses_the_alert_line_within_ten_readings() {
        let dev1 = fleet()
            .into_iter()
            .find(|d| d.heats_up)
            .expect("one heats up");
        for seed in 0..200 {
            let mut rng = XorShift::new(seed);
            let mut climate = Climate::new(&dev1, &mut rng);
            let hot = (0..10).any(|_| climate.step(&mut rng).temperature > 30.0);
            assert!(hot, "seed {seed}");
        }
    }

    #[test]
    fn temperatures_stay_near_their_range() {
        for device in fleet() {
            let mut rng = XorShift::new(7);
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
        let p = request(
            "r",
            "dev-3",
            true,
            7,
            [1, 2, 3, 4],
            ContentFormat::ApplicationSenmlJSON,
            "[]",
        );
        let bytes = p.to_bytes().expect("encode");
        let back = Packet::from_bytes(&bytes).expect("decode");
        assert_eq!(back.header.get_type(), MessageType::Confirmable);
        assert_eq!(back.header.code, MessageClass::Request(RequestType::Post));
        let path: Vec<Vec<u8>> = back
            .get_option(CoapOption::UriPath)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        assert_eq!(path, [b"r".to_vec(), b"dev-3".to_vec()]);
        assert_eq!(
            back.get_content_format(),
            Some(ContentFormat::ApplicationSenmlJSON)
        );
    }

    fn reply(kind: MessageType, id: u16, token: &[u8], code: MessageClass) -> Packet {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.message_id = id;
        p.header.code = code;
        p.set_token(token.to_vec());
        p
    }

    #[test]
    fn answers_match_by_message_id_for_con_and_by_token_for_non() {
        let changed = MessageClass::Response(ResponseType::Changed);
        let con = request(
            "r",
            "d",
            true,
            10,
            [9, 9, 9, 9],
            ContentFormat::ApplicationJSON,
            "{}",
        );
        let ack = reply(MessageType::Acknowledgement, 10, &[9, 9, 9, 9], changed);
        assert!(matches!(answers(&con, ack), Some(Answer::Response(_))));
        let stale = reply(MessageType::Acknowledgement, 9, &[9, 9, 9, 9], changed);
        assert_eq!(answers(&con, stale), None);
        let rst = reply(MessageType::Reset, 10, &[], MessageClass::Empty);
        assert_eq!(answers(&con, rst), Some(Answer::Reset));
        let empty_ack = reply(MessageType::Acknowledgement, 10, &[], MessageClass::Empty);
        assert_eq!(answers(&con, empty_ack), None);

        let non = request(
            "r",
            "d",
            false,
            11,
            [1, 2, 3, 4],
            ContentFormat::ApplicationJSON,
            "{}",
        );
        let response = reply(MessageType::NonConfirmable, 500, &[1, 2, 3, 4], changed);
        assert!(matches!(answers(&non, response), Some(Answer::Response(_))));
        let other = reply(MessageType::NonConfirmable, 11, &[4, 3, 2, 1], changed);
        assert_eq!(answers(&non, other), None);
    }

    #[test]
    fn response_codes_read_as_class_dot_detail() {
        assert_eq!(
            code_text(MessageClass::Response(ResponseType::BadRequest)),
            "4.00"
        );
        assert_eq!(
            code_text(MessageClass::Response(ResponseType::Changed)),
            "2.04"
        );
        assert_eq!(
            code_text(MessageClass::Response(ResponseType::ServiceUnavailable)),
            "5.03"
        );
        assert!(is_success(MessageClass::Response(ResponseType::Changed)));
        assert!(!is_success(MessageClass::Response(
            ResponseType::BadRequest
        )));
    }

    #[test]
    fn malformed_turns_come_one_at_a_time() {
        let turns = MalformedTurns::new(Duration::ZERO);
        assert_eq!(turns.claim(), Some(0));
        assert_eq!(turns.claim(), None, "the next turn is 15 s away");
    }
}
