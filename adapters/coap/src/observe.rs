//! The observer: for devices that serve their readings, an Observe
//! registration (RFC 7641), re-registered when notifications stop, or GET
//! polling for devices without Observe.
//!
//! `Observer` is the protocol state of one device, without I/O: it builds
//! the requests, retransmits confirmable ones (RFC 7252 §4.2), matches
//! responses by token, drops duplicates and reordered notifications
//! (RFC 7641 §3.4) and says what to send and what to ingest. [`run`] gives
//! each device a task with one UDP socket that drives its `Observer`.

use crate::client::{ClientError, Request, empty};
use crate::config::ObserveConfig;
use crate::exchange::{Exchanges, Token};
use crate::option::uint_option;
use crate::payload::{self, Format, PayloadError, Sample};
use crate::rejection::Rejection;
use crate::timing::{EXCHANGE_LIFETIME, Transmission};
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use sluice_adapter_common::{Counters, Random, Shutdown, Sink};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// The default CoAP port (RFC 7252 §6.1).
const DEFAULT_PORT: u16 = 5683;
/// RFC 7641 §3.4: after this long, a notification is newer whatever its Observe number.
const OBSERVE_WINDOW: Duration = Duration::from_secs(128);
/// Waited beyond a notification's Max-Age before registering again: enough
/// for a lost confirmable notification to be sent a second time.
const MAX_AGE_MARGIN: Duration = Duration::from_secs(5);
/// Incoming messages remembered per device to recognise retransmissions;
/// the oldest are forgotten first.
const SEEN_CAPACITY: usize = 512;
/// The shortest poll interval and silence allowed (as the config validates).
const MIN_POLL: Duration = Duration::from_millis(100);
/// Response code 2.05 Content.
const CONTENT: u8 = 0x45;

/// A parsed `coap://host[:port]/path` URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// UDP port (5683 if absent).
    pub port: u16,
    /// Path segments.
    pub path: Vec<String>,
}

impl Target {
    /// The name given to a plain-text reading: the last path segment.
    fn reading_name(&self) -> &str {
        self.path.last().map(String::as_str).unwrap_or("value")
    }

    /// The Uri-Host option to send: only for host names, since an address is
    /// the option's default (RFC 7252 §6.4).
    pub(crate) fn uri_host(&self) -> Option<String> {
        let literal = self.host.parse::<IpAddr>().is_ok() || self.host.contains('%');
        (!literal).then(|| self.host.clone())
    }
}

/// Parses a `coap://` URI: `coap://host[:port]/a/b`, IPv6 addresses in
/// brackets (`coap://[fe80::1%25eth0]:5683/a`), percent-escapes decoded.
pub fn parse_uri(uri: &str) -> Result<Target, String> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("`{uri}` is not a URI of the form coap://host[:port]/path"))?;
    if scheme.eq_ignore_ascii_case("coaps") {
        return Err("coaps:// (DTLS) is not supported; use coap://".into());
    }
    if !scheme.eq_ignore_ascii_case("coap") {
        return Err(format!(
            "scheme `{scheme}://` is not supported; use coap://"
        ));
    }
    if rest.contains('?') {
        return Err("query strings (`?…`) are not supported".into());
    }
    if rest.contains('#') {
        return Err("a CoAP URI has no fragment (`#…`)".into());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err("user information (`user@`) is not allowed in a CoAP URI".into());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, tail) = bracketed
                .split_once(']')
                .ok_or("`[` without `]` around the IPv6 address")?;
            let port = match tail {
                "" => None,
                tail => Some(tail.strip_prefix(':').ok_or_else(|| {
                    format!("unexpected `{tail}` after the IPv6 address; expected `:port`")
                })?),
            };
            (ipv6_host(inside)?, port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((_, p)) if p.contains(':') => {
                    return Err("an IPv6 address goes in brackets: coap://[::1]/path".into());
                }
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            };
            (host_name(host)?, port)
        }
    };
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port `{p}` is not a number from 1 to 65535")),
        },
    };
    Ok(Target {
        host,
        port,
        path: path_segments(path)?,
    })
}

/// The inside of `[…]`: an IPv6 address, perhaps with a `%25`-escaped zone.
fn ipv6_host(inside: &str) -> Result<String, String> {
    let (address, zone) = match inside.split_once("%25") {
        Some((a, z)) => (a, Some(z)),
        None => (inside, None),
    };
    if address.parse::<Ipv6Addr>().is_err() {
        return Err(format!("`[{inside}]` is not an IPv6 address"));
    }
    match zone {
        None => Ok(address.to_ascii_lowercase()),
        Some(z)
            if !z.is_empty()
                && z.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            Ok(format!("{}%{z}", address.to_ascii_lowercase()))
        }
        Some(z) => Err(format!("`{z}` is not a network interface name")),
    }
}

/// A host name or IPv4 address, lowercased.
fn host_name(host: &str) -> Result<String, String> {
    if host.is_empty() {
        return Err("the URI has no host: coap://host[:port]/path".into());
    }
    if host.len() > 255
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(format!("`{host}` is not a host name or address"));
    }
    Ok(host.to_ascii_lowercase())
}

/// `/a/b%20c` → `["a", "b c"]`; `""` and `"/"` are the root.
fn path_segments(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() || path == "/" {
        return Ok(Vec::new());
    }
    // `path` starts with the `/` that ended the authority.
    path[1..]
        .split('/')
        .map(|segment| {
            if segment.is_empty() {
                return Err(format!(
                    "empty segment in path `{path}` (`//` or a trailing `/`)"
                ));
            }
            let decoded = percent_decode(segment)
                .ok_or_else(|| format!("bad percent-escape in path segment `{segment}`"))?;
            if decoded.len() > 255 {
                return Err(format!("path segment `{segment}` is longer than 255 bytes"));
            }
            Ok(decoded)
        })
        .collect()
}

/// Decodes `%XX` escapes; `None` if one is malformed or the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Observes (or polls) every configured device, one task and one UDP socket
/// each, until `shutdown` fires. Readings go to `sink` as events with subject
/// `coap/<device>`.
pub async fn run<S: Sink>(
    targets: Vec<ObserveConfig>,
    sink: S,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
) {
    let mut tasks = JoinSet::new();
    for config in targets {
        tasks.spawn(observe_device(
            config,
            sink.clone(),
            counters.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "Observer task failed");
        }
    }
    // Tasks end early only on a bad URI; keep the adapter's contract anyway.
    shutdown.wait().await;
}

/// The socket of one device, connected to its current address so that the
/// kernel drops datagrams from anyone else.
struct Link {
    socket: UdpSocket,
    peer: SocketAddr,
}

/// Drives one device's [`Observer`] until shutdown.
async fn observe_device<S: Sink>(
    config: ObserveConfig,
    sink: S,
    counters: Arc<Counters>,
    mut shutdown: Shutdown,
) {
    let device = config.device;
    let target = match parse_uri(&config.uri) {
        Ok(t) => t,
        Err(e) => {
            warn!(device = %device, uri = %config.uri, error = %e, "Not observing: bad URI");
            return;
        }
    };
    let mut observer = Observer::new(
        &device,
        &target,
        config.observe,
        config.poll.get(),
        Instant::now(),
    );
    info!(
        device = %device, uri = %config.uri, observe = config.observe, poll = %config.poll,
        "Observer started"
    );
    let mut link: Option<Link> = None;
    // One more byte than the largest message, so a truncated datagram shows.
    let mut buf = vec![0u8; Packet::MAX_SIZE + 1];
    'device: loop {
        let deadline = tokio::time::Instant::from_std(observer.next_deadline());
        let effects = tokio::select! {
            _ = shutdown.wait() => break 'device,
            received = recv(link.as_ref(), &mut buf) => match received {
                Ok(n) => {
                    Counters::add(&counters.messages_in, 1);
                    Counters::add(&counters.bytes_in, n as u64);
                    if n > Packet::MAX_SIZE {
                        counters.reject(Rejection::TooLarge);
                        continue;
                    }
                    observer.on_datagram(&buf[..n], Instant::now())
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    debug!(device = %device, "Device port unreachable");
                    continue;
                }
                Err(e) => {
                    warn!(device = %device, error = %e, "Receive failed");
                    // Do not spin on a socket that keeps failing.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep_until(deadline) => observer.on_timer(Instant::now()),
        };
        for effect in effects {
            match effect {
                Effect::Request(bytes) => match tokio::select! {
                    // A name lookup can take seconds; it must not hold up shutdown.
                    _ = shutdown.wait() => break 'device,
                    reached = reach(&target, &mut link) => reached,
                } {
                    Ok(socket) => send(socket, &bytes, &device).await,
                    Err(e) => {
                        warn!(
                            device = %device, host = %target.host, error = %e,
                            "Cannot reach device"
                        );
                        observer.request_failed(Instant::now());
                    }
                },
                Effect::Send(bytes) => {
                    if let Some(l) = &link {
                        send(&l.socket, &bytes, &device).await;
                    }
                }
                Effect::Ingest {
                    content_format,
                    payload,
                } => {
                    let name = target.reading_name();
                    let durable =
                        ingest(&device, name, content_format, &payload, &sink, &counters).await;
                    // The ACK of a confirmable notification waits for durability.
                    for settled in observer.settle(durable, Instant::now()) {
                        if let (Effect::Send(bytes), Some(l)) = (settled, &link) {
                            send(&l.socket, &bytes, &device).await;
                        }
                    }
                }
                Effect::Reject(reason) => counters.reject(reason),
            }
        }
    }
    if let (Some(bytes), Some(l)) = (observer.deregistration(), &link) {
        // Polite and best effort: a server that misses it learns from a RST
        // (or an unreachable port) on its next notification.
        send(&l.socket, &bytes, &device).await;
    }
    info!(device = %device, "Observer stopped");
}

/// Receives from the device; never resolves while there is no socket yet.
async fn recv(link: Option<&Link>, buf: &mut [u8]) -> io::Result<usize> {
    match link {
        Some(l) => l.socket.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// Sends one datagram; a lost one is what retransmission is for.
async fn send(socket: &UdpSocket, bytes: &[u8], device: &str) {
    if let Err(e) = socket.send(bytes).await {
        debug!(device = %device, error = %e, "Send failed");
    }
}

/// Resolves the device again (its address may have changed) and returns a
/// socket connected to it, reusing the current one when it can.
async fn reach<'a>(target: &Target, link: &'a mut Option<Link>) -> io::Result<&'a UdpSocket> {
    let peer = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address"))?;
    match link {
        Some(l) if l.peer == peer => {}
        Some(l) if l.peer.is_ipv4() == peer.is_ipv4() => {
            l.socket.connect(peer).await?;
            l.peer = peer;
        }
        _ => {
            let local = if peer.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from(([0u16; 8], 0))
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(peer).await?;
            *link = Some(Link { socket, peer });
        }
    }
    match link {
        Some(l) => Ok(&l.socket),
        None => Err(io::Error::other("no socket")),
    }
}

/// Decodes a response payload and hands its events to the sink, counting
/// what happened. `false` only if the sink refused the events: a
/// confirmable notification is then left unacknowledged, so the device sends
/// it again; a payload that does not decode would not fare better the next
/// time, so it counts as settled.
async fn ingest<S: Sink>(
    device: &str,
    name: &str,
    content_format: Option<u32>,
    payload: &[u8],
    sink: &S,
    counters: &Counters,
) -> bool {
    let now_ms = sluice_adapter_common::clock::now_ms();
    let samples = match decode_response(content_format, payload, name, now_ms) {
        Ok(s) => s,
        Err(e) => {
            counters.reject(e.rejection());
            warn!(device = %device, error = %e, "Response not understood");
            return true;
        }
    };
    let events = payload::to_events(device, samples, now_ms);
    if events.is_empty() {
        return true;
    }
    let n = events.len() as u64;
    match sink.accept(events).await {
        Ok(_) => {
            Counters::add(&counters.events_accepted, n);
            true
        }
        Err(refusal) => {
            Counters::add(&counters.events_refused, n);
            warn!(
                device = %device, reason = ?refusal.reason, error = %refusal.message,
                "Events refused"
            );
            false
        }
    }
}

/// Why a response gave no readings.
#[derive(Debug, PartialEq, thiserror::Error)]
enum IngestError {
    /// The Content-Format is one the adapter does not read.
    #[error("content format {0} is not supported")]
    UnsupportedFormat(u32),
    /// The payload does not decode in its format.
    #[error(transparent)]
    Payload(#[from] PayloadError),
}

impl IngestError {
    /// The rejection counter.
    fn rejection(&self) -> Rejection {
        match self {
            IngestError::UnsupportedFormat(_) => Rejection::UnsupportedFormat,
            IngestError::Payload(_) => Rejection::Malformed,
        }
    }
}

/// Decodes a payload by its Content-Format; without one, as JSON and then as
/// a plain-text number.
fn decode_response(
    content_format: Option<u32>,
    payload: &[u8],
    name: &str,
    now_ms: i64,
) -> Result<Vec<Sample>, IngestError> {
    let Some(number) = content_format else {
        return payload::decode(Format::Json, payload, name, now_ms)
            .or_else(|_| payload::decode(Format::Text, payload, name, now_ms))
            .map_err(IngestError::from);
    };
    let format = u16::try_from(number)
        .ok()
        .and_then(Format::from_number)
        .ok_or(IngestError::UnsupportedFormat(number))?;
    Ok(payload::decode(format, payload, name, now_ms)?)
}

/// What the I/O loop does after the [`Observer`] has seen a datagram or a deadline.
#[derive(Debug, PartialEq)]
enum Effect {
    /// Send a new request; resolve the device's address first.
    Request(Vec<u8>),
    /// Send this datagram (a retransmission, an ACK or a RST).
    Send(Vec<u8>),
    /// Decode this payload and hand its events to the sink, then tell the
    /// observer whether they are durable ([`Observer::settle`]).
    Ingest {
        /// The Content-Format option, if present.
        content_format: Option<u32>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Count a message that was not ingested.
    Reject(Rejection),
}

/// How the readings are fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// An Observe registration.
    Observe,
    /// A GET every `poll`.
    Poll,
}

/// Where the exchange with the device stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// Nothing asked; the next registration or poll goes out at `at`.
    Waiting {
        /// When.
        at: Instant,
    },
    /// A registration or poll went out at `sent`; its response is awaited.
    Requesting {
        /// When it was first sent.
        sent: Instant,
    },
    /// The device accepted the registration and notifies.
    Observing {
        /// When the last notification arrived.
        last_heard: Instant,
        /// Its Max-Age, if it gave one.
        max_age: Option<Duration>,
        /// Observe number of the newest notification, and when it arrived.
        newest: (u32, Instant),
    },
}

/// A confirmable request not yet acknowledged.
#[derive(Debug)]
struct Pending {
    mid: u16,
    bytes: Vec<u8>,
    retransmissions: u32,
    timeout: Duration,
    at: Instant,
}

/// The client side of one device's CoAP exchanges, without I/O.
#[derive(Debug)]
struct Observer {
    device: String,
    /// The GET sent; its type, Observe option, message id and token vary.
    request: Request,
    mode: Mode,
    poll: Duration,
    timing: Transmission,
    /// Tokens, message ids and retransmission jitter.
    random: Random,
    next_mid: u16,
    /// The token responses are expected on; `None` while waiting.
    token: Option<Token>,
    pending: Option<Pending>,
    phase: Phase,
    /// Notifications handled, by (message id, token), to spot retransmissions.
    seen: Exchanges<(u16, Token)>,
    /// The message whose [`Effect::Ingest`] awaits [`Observer::settle`].
    unsettled: Option<Unsettled>,
}

/// A response handed over for ingest and not yet known to be durable.
#[derive(Debug)]
struct Unsettled {
    /// Its message id and token.
    key: (u16, Token),
    /// Whether it awaits an ACK.
    confirmable: bool,
    /// The state before it was taken in, restored if it is refused so that
    /// its retransmission is taken in as new.
    before: (Phase, Option<Token>, Mode),
}

impl Observer {
    /// A device to observe (`observe`) or poll, starting at `now`.
    fn new(device: &str, target: &Target, observe: bool, poll: Duration, now: Instant) -> Observer {
        Observer::with_random(device, target, observe, poll, now, Random::seeded())
    }

    fn with_random(
        device: &str,
        target: &Target,
        observe: bool,
        poll: Duration,
        now: Instant,
        mut random: Random,
    ) -> Observer {
        let mut request = Request::new(RequestType::Get, target.path.iter().cloned());
        request.host = target.uri_host();
        Observer {
            device: device.to_owned(),
            request,
            mode: if observe { Mode::Observe } else { Mode::Poll },
            // Validated in the config; never re-register in a tight loop.
            poll: poll.max(MIN_POLL),
            timing: Transmission::default(),
            next_mid: random.next_u64() as u16,
            random,
            token: None,
            pending: None,
            phase: Phase::Waiting { at: now },
            seen: Exchanges::new(EXCHANGE_LIFETIME, SEEN_CAPACITY),
            unsettled: None,
        }
    }

    /// When [`Observer::on_timer`] has something to do.
    fn next_deadline(&self) -> Instant {
        // While a request is unacknowledged, nothing new goes out (NSTART = 1).
        if let Some(p) = &self.pending {
            return p.at;
        }
        match self.phase {
            Phase::Waiting { at } => at,
            Phase::Requesting { sent } => sent + self.poll,
            Phase::Observing {
                last_heard,
                max_age,
                ..
            } => last_heard + self.silence(max_age),
        }
    }

    /// The longest silence of an observation before registering again.
    fn silence(&self, max_age: Option<Duration>) -> Duration {
        match max_age {
            Some(age) => self.poll.max(age + MAX_AGE_MARGIN),
            None => self.poll,
        }
    }

    /// Retransmits, gives up, registers or polls, as the time has come.
    fn on_timer(&mut self, now: Instant) -> Vec<Effect> {
        if let Some(p) = &mut self.pending {
            if now < p.at {
                return Vec::new();
            }
            if p.retransmissions < self.timing.max_retransmit {
                p.retransmissions += 1;
                p.timeout *= 2;
                p.at = now + p.timeout;
                debug!(
                    device = %self.device, attempt = p.retransmissions + 1,
                    "Retransmitting request"
                );
                return vec![Effect::Send(p.bytes.clone())];
            }
            warn!(
                device = %self.device, retry_in = ?self.poll,
                "Device not answering; trying again later"
            );
            self.end(now);
            return Vec::new();
        }
        if now < self.next_deadline() {
            return Vec::new();
        }
        match self.phase {
            Phase::Waiting { .. } => {}
            Phase::Requesting { .. } => match self.mode {
                Mode::Observe => {
                    info!(
                        device = %self.device,
                        "No response to the registration; registering again"
                    );
                }
                Mode::Poll => debug!(device = %self.device, "No response to the poll"),
            },
            Phase::Observing { .. } => {
                info!(device = %self.device, "Notifications stopped; registering again");
            }
        }
        self.start_request(now)
    }

    /// The I/O loop could not send the request (no address, no socket).
    fn request_failed(&mut self, now: Instant) {
        self.pending = None;
        self.token = None;
        self.phase = Phase::Waiting {
            at: now + self.poll,
        };
    }

    /// Takes in one datagram from the device.
    fn on_datagram(&mut self, bytes: &[u8], now: Instant) -> Vec<Effect> {
        let packet = match Packet::from_bytes(bytes) {
            Ok(p) if p.header.get_version() == 1 => p,
            Ok(_) => return vec![Effect::Reject(Rejection::MalformedDatagram)],
            Err(e) => {
                debug!(device = %self.device, error = %e, "Undecodable message");
                return vec![Effect::Reject(Rejection::MalformedDatagram)];
            }
        };
        let mid = packet.header.message_id;
        let token = Token::from_slice(packet.get_token());
        let mut effects = Vec::new();
        match packet.header.get_type() {
            kind @ (MessageType::Acknowledgement | MessageType::Reset) => {
                if self.pending.as_ref().map(|p| p.mid) != Some(mid) {
                    // A late or repeated answer to a request already settled.
                    effects.push(Effect::Reject(Rejection::Stray));
                } else if kind == MessageType::Reset {
                    warn!(device = %self.device, "Device reset the request");
                    self.end(now);
                    effects.push(Effect::Reject(Rejection::Reset));
                } else if packet.header.code == MessageClass::Empty {
                    // The response follows separately (RFC 7252 §5.2.2).
                    self.pending = None;
                } else if Some(token) == self.token {
                    self.on_response(packet, now, &mut effects);
                } else {
                    effects.push(Effect::Reject(Rejection::Stray));
                }
            }
            kind @ (MessageType::Confirmable | MessageType::NonConfirmable) => {
                let confirmable = kind == MessageType::Confirmable;
                let code = u8::from(packet.header.code);
                if code == 0 {
                    // A CoAP ping (RFC 7252 §4.3) is answered with a RST.
                    if confirmable {
                        effects.push(Effect::Send(empty(MessageType::Reset, mid)));
                    } else {
                        effects.push(Effect::Reject(Rejection::MalformedDatagram));
                    }
                    return effects;
                }
                if !(2..=5).contains(&(code >> 5)) {
                    // A request, or a reserved code: we only ask.
                    if confirmable {
                        effects.push(Effect::Send(empty(MessageType::Reset, mid)));
                    }
                    effects.push(Effect::Reject(Rejection::MalformedDatagram));
                    return effects;
                }
                if self.seen.lookup(&(mid, token), now).is_some() {
                    // A retransmission: our ACK was lost; acknowledge again.
                    if confirmable {
                        effects.push(Effect::Send(empty(MessageType::Acknowledgement, mid)));
                    }
                    effects.push(Effect::Reject(Rejection::Duplicate));
                    return effects;
                }
                if Some(token) != self.token {
                    // An observation we no longer want (RFC 7641 §3.6).
                    debug!(device = %self.device, "Unknown token; rejecting");
                    effects.push(Effect::Send(empty(MessageType::Reset, mid)));
                    effects.push(Effect::Reject(Rejection::Stray));
                    return effects;
                }
                let before = (self.phase, self.token, self.mode);
                self.on_response(packet, now, &mut effects);
                let unsettled = Unsettled {
                    key: (mid, token),
                    confirmable,
                    before,
                };
                if effects.iter().any(|e| matches!(e, Effect::Ingest { .. })) {
                    // Acknowledged and remembered once durable (`settle`).
                    self.unsettled = Some(unsettled);
                } else {
                    self.settle_now(unsettled, now, &mut effects);
                }
            }
        }
        effects
    }

    /// Whether the events of the last [`Effect::Ingest`] are durable (or
    /// were not worth retrying). A confirmable notification is acknowledged
    /// only then; refused, it is neither acknowledged nor remembered, and the
    /// state goes back to before it, so the device's retransmission is taken
    /// in as new once there is room.
    fn settle(&mut self, durable: bool, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(unsettled) = self.unsettled.take() else {
            return effects;
        };
        if durable || !unsettled.confirmable {
            self.settle_now(unsettled, now, &mut effects);
        } else {
            debug!(device = %self.device, "Notification refused; awaiting its retransmission");
            (self.phase, self.token, self.mode) = unsettled.before;
        }
        effects
    }

    /// Remembers a message as handled and acknowledges it if confirmable.
    fn settle_now(&mut self, unsettled: Unsettled, now: Instant, effects: &mut Vec<Effect>) {
        let (mid, _) = unsettled.key;
        self.seen.record(unsettled.key, Vec::new(), now);
        if unsettled.confirmable {
            let ack = empty(MessageType::Acknowledgement, mid);
            effects.insert(0, Effect::Send(ack));
        }
    }

    /// A response on the current token: the registration's, a
    /// notification, or a poll's.
    fn on_response(&mut self, packet: Packet, now: Instant, effects: &mut Vec<Effect>) {
        // Any response ends the request's retransmission (RFC 7252 §5.2.2).
        self.pending = None;
        let code = u8::from(packet.header.code);
        if code != CONTENT {
            let code = packet.header.code;
            if u8::from(code) >> 5 >= 4 {
                warn!(
                    device = %self.device, code = %code, retry_in = ?self.poll,
                    "Device answered with an error"
                );
                effects.push(Effect::Reject(Rejection::ErrorResponse));
            } else {
                warn!(
                    device = %self.device, code = %code, retry_in = ?self.poll,
                    "Device answered without content"
                );
                effects.push(Effect::Reject(Rejection::UnexpectedResponse));
            }
            self.end(now);
            return;
        }
        let observe = uint_option(&packet, CoapOption::Observe).map(|v| (v & 0xFF_FFFF) as u32);
        let max_age = uint_option(&packet, CoapOption::MaxAge).map(Duration::from_secs);
        match (self.mode, self.phase, observe) {
            (Mode::Poll, _, _) => self.end(now),
            (Mode::Observe, Phase::Requesting { .. }, Some(v)) => {
                info!(device = %self.device, "Observation registered");
                self.phase = Phase::Observing {
                    last_heard: now,
                    max_age,
                    newest: (v, now),
                };
            }
            (Mode::Observe, Phase::Requesting { .. }, None) => {
                info!(
                    device = %self.device, poll = ?self.poll,
                    "Device does not support Observe; polling"
                );
                self.mode = Mode::Poll;
                self.end(now);
            }
            (Mode::Observe, Phase::Observing { newest, .. }, Some(v)) => {
                let fresh = is_newer(newest, (v, now));
                self.phase = Phase::Observing {
                    last_heard: now,
                    max_age,
                    newest: if fresh { (v, now) } else { newest },
                };
                if !fresh {
                    debug!(device = %self.device, observe = v, "Older notification; ignored");
                    effects.push(Effect::Reject(Rejection::Stale));
                    return;
                }
            }
            (Mode::Observe, Phase::Observing { .. }, None) => {
                // A final response: the server ended the observation (RFC 7641 §3.2).
                info!(device = %self.device, retry_in = ?self.poll, "Device ended the observation");
                self.end(now);
            }
            (Mode::Observe, Phase::Waiting { .. }, _) => {
                // Unreachable: there is no token while waiting.
                effects.push(Effect::Reject(Rejection::Stray));
                return;
            }
        }
        if block2_has_more(&packet) {
            // Block-wise transfer (RFC 7959) is not reassembled here.
            effects.push(Effect::Reject(Rejection::Blockwise));
            return;
        }
        effects.push(Effect::Ingest {
            content_format: uint_option(&packet, CoapOption::ContentFormat)
                .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
            payload: packet.payload,
        });
    }

    /// Ends the exchange: the next registration or poll waits for its time.
    fn end(&mut self, now: Instant) {
        let at = match (self.mode, self.phase) {
            (Mode::Poll, Phase::Requesting { sent }) => (sent + self.poll).max(now),
            _ => now + self.poll,
        };
        self.pending = None;
        self.token = None;
        self.phase = Phase::Waiting { at };
    }

    /// Sends a registration (observe mode) or a poll with a new token.
    fn start_request(&mut self, now: Instant) -> Vec<Effect> {
        let token = Token::from_slice(&self.random.next_u64().to_be_bytes());
        let mid = self.take_mid();
        let observe = (self.mode == Mode::Observe).then_some(0);
        match self.encode(true, mid, token, observe) {
            Ok(bytes) => {
                let timeout = self.timing.first_timeout(&mut self.random);
                self.token = Some(token);
                self.pending = Some(Pending {
                    mid,
                    bytes: bytes.clone(),
                    retransmissions: 0,
                    timeout,
                    at: now + timeout,
                });
                self.phase = Phase::Requesting { sent: now };
                debug!(device = %self.device, observe = self.mode == Mode::Observe, "Requesting");
                vec![Effect::Request(bytes)]
            }
            Err(e) => {
                warn!(device = %self.device, error = %e, "Cannot encode the request");
                self.request_failed(now);
                Vec::new()
            }
        }
    }

    /// A GET with Observe = 1 on the current observation's token (RFC 7641
    /// §3.6), non-confirmable: sent once at shutdown.
    fn deregistration(&mut self) -> Option<Vec<u8>> {
        if !matches!(self.phase, Phase::Observing { .. }) {
            return None;
        }
        let token = self.token?;
        let mid = self.take_mid();
        self.encode(false, mid, token, Some(1)).ok()
    }

    /// A GET for the resource.
    fn encode(
        &self,
        confirmable: bool,
        mid: u16,
        token: Token,
        observe: Option<u32>,
    ) -> Result<Vec<u8>, ClientError> {
        let request = Request {
            confirmable,
            observe,
            ..self.request.clone()
        };
        request.encode(mid, token.as_slice())
    }

    fn take_mid(&mut self) -> u16 {
        let mid = self.next_mid;
        self.next_mid = self.next_mid.wrapping_add(1);
        mid
    }
}

/// RFC 7641 §3.4: whether notification `new` (Observe number, arrival) is
/// newer than `old`, allowing for the 24-bit wrap-around.
fn is_newer(old: (u32, Instant), new: (u32, Instant)) -> bool {
    const HALF: u32 = 1 << 23;
    let ((v1, t1), (v2, t2)) = (old, new);
    (v1 < v2 && v2 - v1 < HALF) || (v1 > v2 && v1 - v2 > HALF) || t2 > t1 + OBSERVE_WINDOW
}

/// Whether a Block2 option says more blocks follow (its M bit).
fn block2_has_more(packet: &Packet) -> bool {
    uint_option(packet, CoapOption::Block2).is_some_and(|v| v & 0x08 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::{ACK_RANDOM_FACTOR, ACK_TIMEOUT, MAX_RETRANSMIT};
    use coap_lite::ResponseType;

    fn target(host: &str, port: u16, path: &[&str]) -> Target {
        Target {
            host: host.into(),
            port,
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn uris_parse_into_targets() {
        let cases = [
            (
                "plain",
                "coap://sensor.local/sensors/temp",
                target("sensor.local", 5683, &["sensors", "temp"]),
            ),
            (
                "port",
                "coap://10.0.0.7:61616/t",
                target("10.0.0.7", 61616, &["t"]),
            ),
            (
                "ipv6",
                "coap://[2001:db8::1]/a",
                target("2001:db8::1", 5683, &["a"]),
            ),
            (
                "ipv6 port",
                "coap://[::1]:5684/a/b",
                target("::1", 5684, &["a", "b"]),
            ),
            (
                "ipv6 zone",
                "coap://[FE80::1%25eth0]/a",
                target("fe80::1%eth0", 5683, &["a"]),
            ),
            ("root", "coap://h", target("h", 5683, &[])),
            ("root slash", "coap://h/", target("h", 5683, &[])),
            (
                "escapes",
                "coap://h/a%20b/%C3%A9",
                target("h", 5683, &["a b", "é"]),
            ),
            (
                "case",
                "COAP://Sensor-1.LAN/x",
                target("sensor-1.lan", 5683, &["x"]),
            ),
        ];
        for (name, uri, expected) in cases {
            assert_eq!(parse_uri(uri), Ok(expected), "{name}: {uri}");
        }
    }

    #[test]
    fn bad_uris_say_what_is_wrong() {
        let cases = [
            ("no scheme", "sensor.local/temp", "not a URI"),
            ("http", "http://h/a", "scheme `http://` is not supported"),
            ("coaps", "coaps://h/a", "DTLS"),
            ("no host", "coap:///a", "no host"),
            ("no host with port", "coap://:5683/a", "no host"),
            ("bad port", "coap://h:http/a", "port `http`"),
            ("port zero", "coap://h:0/a", "port `0`"),
            ("port too big", "coap://h:65536/a", "port `65536`"),
            ("empty port", "coap://h:/a", "port ``"),
            ("query", "coap://h/a?x=1", "query strings"),
            ("fragment", "coap://h/a#x", "fragment"),
            ("userinfo", "coap://u@h/a", "user information"),
            ("bare ipv6", "coap://::1/a", "in brackets"),
            ("unclosed ipv6", "coap://[::1/a", "without `]`"),
            ("bad ipv6", "coap://[1.2.3.4]/a", "not an IPv6 address"),
            (
                "junk after ipv6",
                "coap://[::1]x/a",
                "after the IPv6 address",
            ),
            ("bad host", "coap://a b/c", "not a host name"),
            ("empty segment", "coap://h/a//b", "empty segment"),
            ("trailing slash", "coap://h/a/", "empty segment"),
            ("bad escape", "coap://h/a%2", "percent-escape"),
            (
                "long segment",
                &format!("coap://h/{}", "x".repeat(256)),
                "longer than 255",
            ),
        ];
        for (name, uri, expected) in cases {
            match parse_uri(uri) {
                Err(e) => assert!(e.contains(expected), "{name}: `{e}` lacks `{expected}`"),
                Ok(t) => panic!("{name}: {uri} parsed as {t:?}"),
            }
        }
    }

    #[test]
    fn observe_numbers_order_as_rfc_7641_says() {
        let t = Instant::now();
        let later = t + Duration::from_secs(1);
        let much_later = t + OBSERVE_WINDOW + Duration::from_secs(1);
        let cases = [
            ("next", (5, t), (6, later), true),
            ("same", (5, t), (5, later), false),
            ("older", (6, t), (5, later), false),
            ("wrapped", (0xFF_FFFF, t), (1, later), true),
            ("far behind", (1, t), (0xFF_FFF0, later), false),
            ("older but after the window", (6, t), (5, much_later), true),
        ];
        for (name, old, new, expected) in cases {
            assert_eq!(is_newer(old, new), expected, "{name}");
        }
    }

    #[test]
    fn unknown_content_formats_are_rejected() {
        for n in [40, 9999, 70_000] {
            assert_eq!(
                decode_response(Some(n), b"1", "x", 0),
                Err(IngestError::UnsupportedFormat(n))
            );
        }
    }

    // The state machine, driven as the I/O loop drives it.

    const POLL: Duration = Duration::from_secs(10);

    fn observer(observe: bool, now: Instant) -> Observer {
        let t = target("127.0.0.1", 5683, &["sensors", "temp"]);
        Observer::with_random("d1", &t, observe, POLL, now, Random::from_seed(42))
    }

    /// The request in `effects`: its message id, token, Observe value.
    fn request(effects: &[Effect]) -> (u16, Vec<u8>, Option<u64>) {
        let [Effect::Request(bytes)] = effects else {
            panic!("expected one request, got {effects:?}");
        };
        let p = Packet::from_bytes(bytes).expect("request decodes");
        assert_eq!(p.header.get_type(), MessageType::Confirmable);
        assert_eq!(p.header.code, MessageClass::Request(RequestType::Get));
        let path: Vec<_> = p
            .get_option(CoapOption::UriPath)
            .expect("path")
            .iter()
            .cloned()
            .collect();
        assert_eq!(path, [b"sensors".to_vec(), b"temp".to_vec()]);
        (
            p.header.message_id,
            p.get_token().to_vec(),
            uint_option(&p, CoapOption::Observe),
        )
    }

    /// A 2.05 (or `code`) response from the device.
    fn response(
        kind: MessageType,
        mid: u16,
        token: &[u8],
        code: ResponseType,
        observe: Option<u32>,
        max_age: Option<u32>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = Packet::new();
        p.header.set_type(kind);
        p.header.code = MessageClass::Response(code);
        p.header.message_id = mid;
        p.set_token(token.to_vec());
        if let Some(v) = observe {
            p.set_observe_value(v);
        }
        p.add_option(CoapOption::ContentFormat, vec![50]);
        if let Some(a) = max_age {
            p.add_option(CoapOption::MaxAge, vec![a as u8]);
        }
        p.payload = payload.to_vec();
        p.to_bytes().expect("response encodes")
    }

    fn notification(mid: u16, token: &[u8], observe: u32, payload: &[u8]) -> Vec<u8> {
        let con = MessageType::Confirmable;
        response(
            con,
            mid,
            token,
            ResponseType::Content,
            Some(observe),
            None,
            payload,
        )
    }

    fn ingest(payload: &[u8]) -> Effect {
        Effect::Ingest {
            content_format: Some(50),
            payload: payload.to_vec(),
        }
    }

    /// Takes a datagram in as the I/O loop does: whatever it ingests is durable.
    fn take(o: &mut Observer, datagram: &[u8], now: Instant) -> Vec<Effect> {
        let mut effects = o.on_datagram(datagram, now);
        effects.extend(o.settle(true, now));
        effects
    }

    fn ack(mid: u16) -> Effect {
        Effect::Send(empty(MessageType::Acknowledgement, mid))
    }

    fn rst(mid: u16) -> Effect {
        Effect::Send(empty(MessageType::Reset, mid))
    }

    /// An observer whose registration the device accepted with Observe = 5.
    fn observing(now: Instant) -> (Observer, Vec<u8>) {
        let mut o = observer(true, now);
        let (mid, token, observe) = request(&o.on_timer(now));
        assert_eq!(observe, Some(0));
        let ack = MessageType::Acknowledgement;
        let first = response(
            ack,
            mid,
            &token,
            ResponseType::Content,
            Some(5),
            None,
            b"{}",
        );
        assert_eq!(o.on_datagram(&first, now), [ingest(b"{}")]);
        (o, token)
    }

    #[test]
    fn notifications_are_acknowledged_and_ingested_once_in_order() {
        let t = Instant::now();
        let (mut o, token) = observing(t);
        let cases: [(&str, Vec<u8>, Vec<Effect>); 5] = [
            (
                "next",
                notification(100, &token, 6, b"6"),
                vec![ingest(b"6"), ack(100)],
            ),
            (
                "retransmitted",
                notification(100, &token, 6, b"6"),
                vec![ack(100), Effect::Reject(Rejection::Duplicate)],
            ),
            (
                "late",
                notification(101, &token, 4, b"4"),
                vec![ack(101), Effect::Reject(Rejection::Stale)],
            ),
            (
                "non",
                response(
                    MessageType::NonConfirmable,
                    102,
                    &token,
                    ResponseType::Content,
                    Some(7),
                    None,
                    b"7",
                ),
                vec![ingest(b"7")],
            ),
            (
                "other token",
                notification(103, b"zz", 8, b"8"),
                vec![rst(103), Effect::Reject(Rejection::Stray)],
            ),
        ];
        for (name, datagram, expected) in cases {
            assert_eq!(take(&mut o, &datagram, t), expected, "{name}");
        }
    }

    #[test]
    fn a_confirmable_notification_is_acknowledged_only_once_durable() {
        let t = Instant::now();
        let (mut o, token) = observing(t);
        let first = notification(100, &token, 6, b"6");
        assert_eq!(o.on_datagram(&first, t), [ingest(b"6")], "no ACK yet");
        assert_eq!(o.settle(false, t), [], "refused: no ACK");
        // The device retransmits the same message: it is new again.
        assert_eq!(o.on_datagram(&first, t), [ingest(b"6")]);
        assert_eq!(o.settle(true, t), [ack(100)], "durable: acknowledged");
        assert_eq!(
            o.on_datagram(&first, t),
            [ack(100), Effect::Reject(Rejection::Duplicate)],
            "taken in once"
        );
        // A refused non-confirmable notification is not sent again: it is settled.
        let non = response(
            MessageType::NonConfirmable,
            101,
            &token,
            ResponseType::Content,
            Some(7),
            None,
            b"7",
        );
        assert_eq!(o.on_datagram(&non, t), [ingest(b"7")]);
        assert_eq!(o.settle(false, t), []);
        assert_eq!(
            o.on_datagram(&non, t),
            [Effect::Reject(Rejection::Duplicate)]
        );
    }

    #[test]
    fn a_refused_separate_response_to_a_poll_is_taken_when_sent_again() {
        let t = Instant::now();
        let mut o = observer(false, t);
        let (mid, token, _) = request(&o.on_timer(t));
        let empty_ack = empty(MessageType::Acknowledgement, mid);
        assert_eq!(o.on_datagram(&empty_ack, t), []);
        let separate = separate_content(&token, b"2");
        assert_eq!(o.on_datagram(&separate, t), [ingest(b"2")]);
        assert_eq!(o.settle(false, t), []);
        assert_eq!(take(&mut o, &separate, t), [ingest(b"2"), ack(900)]);
    }

    #[test]
    fn a_request_is_retransmitted_with_backoff_then_given_up() {
        let t = Instant::now();
        let mut o = observer(true, t);
        let (_, token, _) = request(&o.on_timer(t));
        let first = o.next_deadline() - t;
        assert!(
            (ACK_TIMEOUT..=ACK_TIMEOUT.mul_f64(ACK_RANDOM_FACTOR)).contains(&first),
            "{first:?}"
        );
        let mut now = t;
        for attempt in 1..=MAX_RETRANSMIT {
            assert_eq!(o.on_timer(now), [], "nothing before the deadline");
            let wait = o.next_deadline() - now;
            assert_eq!(
                wait,
                first * 2u32.pow(attempt - 1),
                "wait before retransmission {attempt}"
            );
            now = o.next_deadline();
            assert!(
                matches!(o.on_timer(now).as_slice(), [Effect::Send(_)]),
                "retransmission {attempt}"
            );
        }
        now = o.next_deadline();
        assert_eq!(o.on_timer(now), [], "given up");
        assert_eq!(o.next_deadline(), now + POLL);
        let (_, again, observe) = request(&o.on_timer(now + POLL));
        assert_ne!(again, token, "a new registration has a new token");
        assert_eq!(observe, Some(0));
    }

    #[test]
    fn silence_registers_again_after_poll_or_max_age() {
        let t = Instant::now();
        let (mut o, token) = observing(t);
        assert_eq!(o.next_deadline(), t + POLL);
        let with_age = response(
            MessageType::Confirmable,
            7,
            &token,
            ResponseType::Content,
            Some(6),
            Some(60),
            b"6",
        );
        take(&mut o, &with_age, t);
        let deadline = t + Duration::from_secs(60) + MAX_AGE_MARGIN;
        assert_eq!(o.next_deadline(), deadline);
        assert_eq!(o.on_timer(deadline - Duration::from_millis(1)), []);
        let (_, again, observe) = request(&o.on_timer(deadline));
        assert_ne!(again, token);
        assert_eq!(observe, Some(0));
        // The old observation's notifications are now refused.
        let old = notification(8, &token, 7, b"7");
        assert_eq!(
            o.on_datagram(&old, deadline),
            [rst(8), Effect::Reject(Rejection::Stray)]
        );
    }

    #[test]
    fn a_device_without_observe_is_polled() {
        let t = Instant::now();
        let mut o = observer(true, t);
        let (mid, token, _) = request(&o.on_timer(t));
        let plain = response(
            MessageType::Acknowledgement,
            mid,
            &token,
            ResponseType::Content,
            None,
            None,
            b"1",
        );
        let later = t + Duration::from_millis(30);
        assert_eq!(o.on_datagram(&plain, later), [ingest(b"1")]);
        assert_eq!(o.next_deadline(), t + POLL, "polls keep their rhythm");
        let (_, _, observe) = request(&o.on_timer(t + POLL));
        assert_eq!(observe, None);
    }

    /// A separate confirmable 2.05 response (message id 900) on `token`.
    fn separate_content(token: &[u8], payload: &[u8]) -> Vec<u8> {
        response(
            MessageType::Confirmable,
            900,
            token,
            ResponseType::Content,
            None,
            None,
            payload,
        )
    }

    #[test]
    fn polls_take_separate_responses() {
        let t = Instant::now();
        let mut o = observer(false, t);
        let (mid, token, observe) = request(&o.on_timer(t));
        assert_eq!(observe, None);
        let empty_ack = empty(MessageType::Acknowledgement, mid);
        assert_eq!(o.on_datagram(&empty_ack, t), []);
        assert_eq!(o.next_deadline(), t + POLL, "no more retransmissions");
        let separate = separate_content(&token, b"2");
        assert_eq!(take(&mut o, &separate, t), [ingest(b"2"), ack(900)]);
        assert_eq!(
            take(&mut o, &separate, t),
            [ack(900), Effect::Reject(Rejection::Duplicate)]
        );
    }

    #[test]
    fn errors_and_resets_end_the_exchange() {
        let t = Instant::now();
        let ack = MessageType::Acknowledgement;
        let cases = [
            (
                "not found",
                ResponseType::NotFound,
                Rejection::ErrorResponse,
            ),
            (
                "server error",
                ResponseType::InternalServerError,
                Rejection::ErrorResponse,
            ),
            ("valid", ResponseType::Valid, Rejection::UnexpectedResponse),
        ];
        for (name, code, reason) in cases {
            let mut o = observer(true, t);
            let (mid, token, _) = request(&o.on_timer(t));
            let answer = response(ack, mid, &token, code, None, None, b"");
            assert_eq!(
                o.on_datagram(&answer, t),
                [Effect::Reject(reason)],
                "{name}"
            );
            assert_eq!(o.next_deadline(), t + POLL, "{name}");
        }
        let mut o = observer(true, t);
        let (mid, _, _) = request(&o.on_timer(t));
        let reset = empty(MessageType::Reset, mid);
        assert_eq!(o.on_datagram(&reset, t), [Effect::Reject(Rejection::Reset)]);
        assert_eq!(o.next_deadline(), t + POLL);
    }

    #[test]
    fn odd_messages_are_counted_not_ingested() {
        let t = Instant::now();
        let (mut o, _) = observing(t);
        let mut get = Packet::new();
        get.header.message_id = 5;
        let get = get.to_bytes().expect("encodes");
        let cases = [
            (
                "garbage",
                vec![0xFF, 0x00],
                vec![Effect::Reject(Rejection::MalformedDatagram)],
            ),
            (
                "version 2",
                vec![0x80, 0x45, 0, 1],
                vec![Effect::Reject(Rejection::MalformedDatagram)],
            ),
            ("ping", empty(MessageType::Confirmable, 9), vec![rst(9)]),
            (
                "request",
                get,
                vec![rst(5), Effect::Reject(Rejection::MalformedDatagram)],
            ),
            (
                "late ack",
                empty(MessageType::Acknowledgement, 1),
                vec![Effect::Reject(Rejection::Stray)],
            ),
        ];
        for (name, datagram, expected) in cases {
            assert_eq!(o.on_datagram(&datagram, t), expected, "{name}");
        }
    }

    #[test]
    fn deregistration_reuses_the_token() {
        let t = Instant::now();
        assert_eq!(
            observer(true, t).deregistration(),
            None,
            "nothing to cancel"
        );
        let (mut o, token) = observing(t);
        let bytes = o.deregistration().expect("a deregistration");
        let p = Packet::from_bytes(&bytes).expect("decodes");
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.get_token(), token.as_slice());
        assert_eq!(uint_option(&p, CoapOption::Observe), Some(1));
    }
}
