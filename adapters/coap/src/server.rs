//! The CoAP server: UDP sockets, requests to events, and answers that come
//! only once the events are durable. One receive loop per socket does the
//! quick work (parse, deduplicate, route, decode) and hands submissions to a
//! fixed pool of workers through a bounded channel; when that is full the
//! device gets `5.03` at once (back-pressure), never an unbounded backlog.
//! With `durable_exchanges`, a request's `2.04` is committed with its events
//! and the unexpired answers are restored at start (see `exchange`).

use crate::block1::{self, Assembler, Block, Step};
use crate::config::CoapConfig;
use crate::directory::Directory;
use crate::dtls::context::Acceptor;
use crate::dtls::listener::{Inbound, Listener, Replier};
use crate::exchange::{self, Exchanges, Seen, Token};
use crate::option::{self, OptionError, encode_uint, uint_option};
use crate::path::{self, PathError, Resource};
use crate::payload::{self, Format};
use crate::rate::RateLimit;
use crate::rejection::Rejection;
use coap_lite::{
    CoapOption, CoapRequest, ContentFormat, MessageClass, MessageType, Packet, RequestType,
    ResponseType,
};
use sluice_adapter_common::clock::now_ms;
use sluice_adapter_common::{Counters, RefusalReason, Shutdown, Sink};
use sluice_event::Event;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Submissions waiting for a worker; beyond this, devices get `5.03`.
const BACKLOG: usize = 1024;
/// Workers awaiting durability at once: enough to fill group commits.
const WORKERS: usize = 128;
/// Socket receive buffer asked for.
const RECEIVE_BUFFER: usize = 1 << 20;
/// The largest datagram read (coap-lite's limit with its `udp` feature).
const MAX_DATAGRAM: usize = 65_535;
/// Block1 uploads in progress at once; each holds up to `max_payload`.
const MAX_UPLOADS: usize = 64;

/// Decrypted messages from every DTLS session waiting for the server.
const SECURE_BACKLOG: usize = 1024;

/// The bound sockets, ready to serve.
pub struct Bound {
    sockets: Vec<Arc<UdpSocket>>,
    secure: Vec<Listener>,
    config: CoapConfig,
}

impl Bound {
    /// Binds every `listen` address (IPv6 sockets are IPv6-only, so
    /// `0.0.0.0:5683` and `[::]:5683` can be bound together). A failure
    /// names the address.
    ///
    /// The DTLS listeners' keys and certificates are read here too; a
    /// failure names the file.
    pub fn bind(config: CoapConfig) -> Result<Bound, (SocketAddr, std::io::Error)> {
        let mut sockets = Vec::new();
        for addr in &config.listen {
            let socket = bind_one(*addr).map_err(|e| (*addr, e))?;
            sockets.push(Arc::new(socket));
        }
        let mut secure = Vec::new();
        if let Some(dtls) = &config.dtls {
            let first = dtls
                .listen
                .first()
                .copied()
                .unwrap_or(([0, 0, 0, 0], 0).into());
            let acceptor =
                Acceptor::new(dtls).map_err(|e| (first, std::io::Error::other(e.to_string())))?;
            for addr in &dtls.listen {
                let socket = bind_one(*addr).map_err(|e| (*addr, e))?;
                secure.push(Listener::new(socket, acceptor.clone(), dtls));
            }
        }
        Ok(Bound {
            sockets,
            secure,
            config,
        })
    }

    /// The addresses actually bound (port 0 resolved).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .chain(self.secure.iter().filter_map(Listener::local_addr))
            .collect()
    }

    /// Serves until shutdown; then stops reading and lets the workers
    /// finish. Devices whose requests are accepted are noted in `directory`.
    pub async fn serve<S: Sink>(
        self,
        sink: S,
        counters: Arc<Counters>,
        directory: Arc<Directory>,
        mut shutdown: Shutdown,
    ) {
        let state = Arc::new(State {
            directory,
            exchanges: Mutex::new(Exchanges::new(
                self.config.exchange_lifetime.get(),
                self.config.max_exchanges,
            )),
            rate: Mutex::new(RateLimit::new(self.config.rate_per_device)),
            uploads: Mutex::new(Assembler::new(
                MAX_UPLOADS,
                self.config.max_payload.bytes() as usize,
                self.config.exchange_lifetime.get(),
            )),
            counters,
            config: self.config,
        });
        restore(&sink, &state).await;
        let (tx, rx) = mpsc::channel::<Job>(BACKLOG);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..WORKERS {
            tasks.spawn(work(rx.clone(), sink.clone(), state.clone()));
        }
        for addr in self.sockets.iter().filter_map(|s| s.local_addr().ok()) {
            tracing::info!(address = %addr, "CoAP server listening");
        }
        let mut loops = tokio::task::JoinSet::new();
        for socket in self.sockets {
            loops.spawn(receive(socket, tx.clone(), state.clone()));
        }
        let mut listeners = tokio::task::JoinSet::new();
        if !self.secure.is_empty() {
            let (decrypted, rx) = mpsc::channel(SECURE_BACKLOG);
            for listener in self.secure {
                listeners.spawn(listener.run(
                    decrypted.clone(),
                    state.counters.clone(),
                    shutdown.clone(),
                ));
            }
            loops.spawn(receive_secure(rx, tx.clone(), state.clone()));
        }
        drop(tx);
        shutdown.wait().await;
        loops.abort_all();
        while loops.join_next().await.is_some() {}
        // The receive loops held the only senders: the workers drain and stop.
        while tasks.join_next().await.is_some() {}
        // Sessions end once the workers have sent their answers.
        while listeners.join_next().await.is_some() {}
        tracing::info!("CoAP server stopped");
    }
}

/// Loads the answers committed before a restart into the exchange cache,
/// before the first request is read. If the core cannot say, the server
/// starts without them (logged): it serves, as before a restart it would.
async fn restore<S: Sink>(sink: &S, state: &State) {
    let remembered = match sink.recall(state.config.max_exchanges).await {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(error = %error, "CoAP exchanges from before the restart are not restored");
            return;
        }
    };
    if remembered.is_empty() {
        return;
    }
    let (now, now_ms) = (Instant::now(), now_ms());
    let Ok(mut x) = state.exchanges.lock() else {
        return;
    };
    let mut restored = 0;
    for r in remembered {
        let Some(key) = exchange::decode_key(&r.exchange.key) else {
            continue;
        };
        let remaining =
            Duration::from_millis(r.exchange.expires_ms.saturating_sub(now_ms).max(0) as u64);
        x.restore(key, r.exchange.answer, remaining, now);
        restored += 1;
    }
    tracing::info!(exchanges = restored, "CoAP exchanges restored");
}

/// One UDP socket, non-blocking, with a large receive buffer.
fn bind_one(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    // Room for bursts while the loop is busy (the kernel caps it at rmem_max).
    let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Shared by the receive loops and the workers.
struct State {
    directory: Arc<Directory>,
    /// Answers by request: in memory, restored at start from the core.
    exchanges: Mutex<Exchanges>,
    rate: Mutex<RateLimit>,
    /// Block1 uploads in progress, by peer and path.
    uploads: Mutex<Assembler<(SocketAddr, Vec<Vec<u8>>)>>,
    counters: Arc<Counters>,
    config: CoapConfig,
}

/// Events to make durable, and how to answer once they are.
struct Job {
    events: Vec<Event>,
    reply: Reply,
}

/// Where and how to answer one request.
struct Reply {
    link: Link,
    peer: SocketAddr,
    /// The response, prepared from the request (ACK for CON, NON for NON).
    response: Packet,
}

/// Who sent a request.
#[derive(Clone, Debug)]
struct Origin {
    peer: SocketAddr,
    /// The DTLS identity the peer proved; `None` in clear.
    identity: Option<Arc<str>>,
}

/// How answers reach a peer: the plain socket, or its DTLS session.
#[derive(Clone, Debug)]
enum Link {
    Plain(Arc<UdpSocket>),
    Secure(Replier),
}

impl Link {
    async fn send(&self, bytes: Vec<u8>, peer: SocketAddr) {
        match self {
            Link::Plain(socket) => {
                let _ = socket.send_to(&bytes, peer).await;
            }
            Link::Secure(session) => {
                session.send(bytes);
            }
        }
    }
}

async fn receive(socket: Arc<UdpSocket>, jobs: mpsc::Sender<Job>, state: Arc<State>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; keep serving.
                tracing::debug!(error = %e, "CoAP receive error");
                continue;
            }
        };
        let c = &state.counters;
        Counters::add(&c.messages_in, 1);
        Counters::add(&c.bytes_in, n as u64);
        let origin = Origin {
            peer,
            identity: None,
        };
        dispatch(
            &buf[..n],
            origin,
            Link::Plain(socket.clone()),
            &jobs,
            &state,
        )
        .await;
    }
}

/// Messages that arrived through DTLS sessions, decrypted.
async fn receive_secure(
    mut decrypted: mpsc::Receiver<Inbound>,
    jobs: mpsc::Sender<Job>,
    state: Arc<State>,
) {
    while let Some(m) = decrypted.recv().await {
        let origin = Origin {
            peer: m.peer,
            identity: Some(m.identity),
        };
        dispatch(&m.bytes, origin, Link::Secure(m.reply), &jobs, &state).await;
    }
}

/// One message, however it arrived: answered at once, or handed to a worker.
async fn dispatch(
    bytes: &[u8],
    origin: Origin,
    link: Link,
    jobs: &mpsc::Sender<Job>,
    state: &State,
) {
    let c = &state.counters;
    let Ok(packet) = Packet::from_bytes(bytes) else {
        c.reject(Rejection::MalformedDatagram);
        return;
    };
    if let Some(job) = handle(packet, origin, link, state).await
        && let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            jobs.try_send(job)
    {
        c.reject(Rejection::BacklogFull);
        let retry = state.config.retry_after.get();
        let reply = job.reply.with_status(
            ResponseType::ServiceUnavailable,
            Some(retry),
            "busy, retry later",
        );
        finish(state, reply).await;
    }
}

/// The quick part of a request: everything up to the events to submit. Answers
/// directly whatever needs no durability; returns the job otherwise.
async fn handle(packet: Packet, origin: Origin, link: Link, state: &State) -> Option<Job> {
    let peer = origin.peer;
    let c = &state.counters;
    if packet.header.get_version() != 1 {
        // RFC 7252 §3: unknown versions are silently ignored (coap-lite
        // parses them).
        c.reject(Rejection::MalformedDatagram);
        return None;
    }
    let kind = packet.header.get_type();
    if !matches!(packet.header.code, MessageClass::Request(_))
        || !matches!(kind, MessageType::Confirmable | MessageType::NonConfirmable)
    {
        // ACKs, resets and responses from devices, or empty pings.
        if kind == MessageType::Confirmable {
            // A CON ping (empty message) gets a reset, as RFC 7252 §4.3 says.
            let mut rst = Packet::new();
            rst.header.set_type(MessageType::Reset);
            rst.header.code = MessageClass::Empty;
            rst.header.message_id = packet.header.message_id;
            send(&link, peer, &rst).await;
        }
        c.reject(Rejection::NotARequest);
        return None;
    }
    let key = (
        peer,
        packet.header.message_id,
        Token::from_slice(packet.get_token()),
    );
    let seen = match state.exchanges.lock() {
        Ok(mut x) => x.begin(key, Instant::now()),
        Err(_) => Seen::New,
    };
    match seen {
        Seen::New => {}
        Seen::InProgress => {
            c.reject(Rejection::Duplicate);
            return None;
        }
        Seen::Answered(bytes) => {
            c.reject(Rejection::Duplicate);
            link.send(bytes, peer).await;
            return None;
        }
    }
    let mut request = CoapRequest::from_packet(packet, peer);
    let response = request.response.as_ref()?.message.clone();
    let reply = |response| Reply {
        link: link.clone(),
        peer,
        response,
    };
    match route(&mut request, &origin, state) {
        Ok(events) => Some(Job {
            events,
            reply: reply(request.response.map(|r| r.message).unwrap_or(response)),
        }),
        Err(answer) => {
            let answer =
                answer.into_packet(request.response.map(|r| r.message).unwrap_or(response));
            finish(state, reply(answer)).await;
            None
        }
    }
}

/// A direct answer: no events to submit.
enum Answer {
    /// A status with a diagnostic payload and optional Max-Age.
    Status(ResponseType, &'static str, Option<Duration>),
    /// A status with a diagnostic built from the request.
    Diagnostic(ResponseType, String),
    /// `2.31 Continue` with the Block1 option echoed (RFC 7959 §2.3).
    Continue(Block),
    /// `4.13` with Size1: the largest body taken (RFC 7959 §2.9.3).
    TooLarge(u64),
    /// A reset instead of a response: a non-confirmable request rejected
    /// (RFC 7252 §4.3).
    Reset,
    /// `2.05` with this link-format payload.
    Links(String),
}

impl Answer {
    fn into_packet(self, response: Packet) -> Packet {
        match self {
            Answer::Status(code, why, max_age) => status(response, code, max_age, why),
            Answer::Diagnostic(code, why) => status(response, code, None, &why),
            Answer::Continue(block) => {
                let mut p = status(response, ResponseType::Continue, None, "");
                p.add_option(CoapOption::Block1, block.encode());
                p
            }
            Answer::TooLarge(limit) => {
                let mut p = status(
                    response,
                    ResponseType::RequestEntityTooLarge,
                    None,
                    &format!("payload too large (max {limit} bytes)"),
                );
                p.add_option(
                    CoapOption::Size1,
                    encode_uint(u32::try_from(limit).unwrap_or(u32::MAX)),
                );
                p
            }
            Answer::Reset => {
                let mut rst = Packet::new();
                rst.header.set_type(MessageType::Reset);
                rst.header.code = MessageClass::Empty;
                rst.header.message_id = response.header.message_id;
                rst
            }
            Answer::Links(links) => {
                let mut p = status(response, ResponseType::Content, None, "");
                p.set_content_format(ContentFormat::ApplicationLinkFormat);
                p.payload = links.into_bytes();
                p
            }
        }
    }
}

/// Checks options, path, method, device, size and rate; assembles Block1
/// uploads; decodes the payload. The response to the last block of an
/// upload gets its Block1 option here.
fn route(
    request: &mut CoapRequest<SocketAddr>,
    origin: &Origin,
    state: &State,
) -> Result<Vec<Event>, Answer> {
    let peer = origin.peer;
    let c = &state.counters;
    let config = &state.config;
    let confirmable = request.message.header.get_type() == MessageType::Confirmable;
    let segments: Vec<Vec<u8>> = request
        .message
        .get_option(CoapOption::UriPath)
        .map(|list| list.iter().cloned().collect())
        .unwrap_or_default();
    let discovery = segments == [b".well-known".as_slice(), b"core"];
    match option::check_request(&mut request.message, discovery) {
        Ok(ignored) if !ignored.is_empty() => {
            tracing::debug!(peer = %peer, options = ?ignored, "Elective options ignored");
        }
        Ok(_) => {}
        Err(OptionError::Proxy { number }) => {
            c.reject(Rejection::Proxy);
            return Err(Answer::Diagnostic(
                ResponseType::ProxyingNotSupported,
                OptionError::Proxy { number }.to_string(),
            ));
        }
        Err(e) => {
            c.reject(Rejection::BadOption);
            return Err(if confirmable {
                Answer::Diagnostic(ResponseType::BadOption, e.to_string())
            } else {
                Answer::Reset
            });
        }
    }
    let method = *request.get_method();
    let (device, name) = match path::resource(&segments, &config.path) {
        Ok(Resource::WellKnownCore) if method == RequestType::Get => {
            return Err(Answer::Links(links(config)));
        }
        Ok(Resource::WellKnownCore) => {
            return Err(Answer::Status(
                ResponseType::MethodNotAllowed,
                "GET only",
                None,
            ));
        }
        Ok(Resource::Readings { device, name }) => (device, name),
        Err(PathError::NotFound) => {
            c.reject(Rejection::UnknownPath);
            return Err(Answer::Status(
                ResponseType::NotFound,
                "no such resource",
                None,
            ));
        }
        Err(e) => {
            c.reject(match e {
                PathError::BadName(_) => Rejection::BadName,
                _ => Rejection::BadDevice,
            });
            return Err(Answer::Diagnostic(ResponseType::BadRequest, e.to_string()));
        }
    };
    if !matches!(method, RequestType::Post | RequestType::Put) {
        c.reject(Rejection::Method);
        return Err(Answer::Status(
            ResponseType::MethodNotAllowed,
            "POST or PUT readings",
            None,
        ));
    }
    let any_device = config.dtls.as_ref().is_some_and(|d| d.any_device);
    if let Some(identity) = &origin.identity
        && !any_device
        && **identity != *device
    {
        c.reject(Rejection::IdentityMismatch);
        return Err(Answer::Diagnostic(
            ResponseType::Forbidden,
            format!("DTLS identity `{identity}` may not post for device `{device}`"),
        ));
    }
    if !config.allow.is_empty() && !config.allow.contains(&device) {
        c.reject(Rejection::NotAllowed);
        return Err(Answer::Status(
            ResponseType::Forbidden,
            "device not allowed",
            None,
        ));
    }
    if let Some(block) = assemble(request, peer, segments, state)?
        && let Some(response) = request.response.as_mut()
    {
        response
            .message
            .add_option(CoapOption::Block1, block.encode());
    }
    // Counted per whole request: the blocks of one upload are one request.
    let allowed = state
        .rate
        .lock()
        .map(|mut r| r.allow(&device, Instant::now()))
        .unwrap_or(true);
    if !allowed {
        c.reject(Rejection::RateLimited);
        return Err(Answer::Status(
            ResponseType::TooManyRequests,
            "too many requests",
            Some(Duration::from_secs(1)),
        ));
    }
    let payload = &request.message.payload;
    let format = match uint_option(&request.message, CoapOption::ContentFormat) {
        None if payload.first() == Some(&b'{') => Format::Json,
        None => Format::Text,
        Some(number) => match u16::try_from(number).ok().and_then(Format::from_number) {
            Some(f) => f,
            None => {
                c.reject(Rejection::UnsupportedFormat);
                return Err(Answer::Diagnostic(
                    ResponseType::UnsupportedContentFormat,
                    format!("content format {number} is not supported (use 0, 50, 60, 110 or 112)"),
                ));
            }
        },
    };
    let now = now_ms();
    match payload::decode(format, payload, &name, now) {
        Ok(samples) => {
            state.directory.heard(&device, peer);
            Ok(payload::to_events(&device, samples, now))
        }
        Err(e) => {
            c.reject(Rejection::Malformed);
            Err(Answer::Diagnostic(ResponseType::BadRequest, e.to_string()))
        }
    }
}

/// Checks the payload size and takes a Block1 block (RFC 7959). Answers an
/// intermediate block with `2.31`; on the last one, replaces the payload by
/// the whole body and returns the block to echo.
fn assemble(
    request: &mut CoapRequest<SocketAddr>,
    peer: SocketAddr,
    segments: Vec<Vec<u8>>,
    state: &State,
) -> Result<Option<Block>, Answer> {
    let c = &state.counters;
    let max = state.config.max_payload.bytes();
    let message = &mut request.message;
    // Size1 announces the whole body (RFC 7959 §4): refuse early.
    if uint_option(message, CoapOption::Size1).is_some_and(|size| size > max)
        || message.payload.len() as u64 > max
    {
        c.reject(Rejection::PayloadTooLarge);
        return Err(Answer::TooLarge(max));
    }
    let Some(raw) = message.get_first_option(CoapOption::Block1) else {
        return Ok(None);
    };
    let block = Block::parse(raw).map_err(|e| {
        c.reject(Rejection::Block);
        Answer::Diagnostic(ResponseType::BadRequest, e.to_string())
    })?;
    let now = Instant::now();
    let mut uploads = state
        .uploads
        .lock()
        .map_err(|_| Answer::Status(ResponseType::InternalServerError, "block state", None))?;
    for _ in 0..uploads.expire(now) {
        c.reject(Rejection::BlockExpired);
    }
    match uploads.offer((peer, segments), block, &message.payload, now) {
        Ok(Step::Continue(block)) => Err(Answer::Continue(block)),
        Ok(Step::Complete(body, block)) => {
            message.payload = body;
            Ok(Some(block))
        }
        Err(refused) => Err(match refused {
            block1::Refused::Incomplete => {
                c.reject(Rejection::BlockIncomplete);
                Answer::Status(
                    ResponseType::RequestEntityIncomplete,
                    "block out of sequence: start again from block 0",
                    None,
                )
            }
            block1::Refused::TooLarge => {
                c.reject(Rejection::PayloadTooLarge);
                Answer::TooLarge(max)
            }
            block1::Refused::BadSize => {
                c.reject(Rejection::Block);
                Answer::Status(
                    ResponseType::BadRequest,
                    "block payload does not match its SZX",
                    None,
                )
            }
            block1::Refused::Busy => {
                c.reject(Rejection::BlockBusy);
                Answer::Status(
                    ResponseType::ServiceUnavailable,
                    "too many uploads, retry later",
                    Some(state.config.retry_after.get()),
                )
            }
        }),
    }
}

/// The worker: makes a submission durable, then answers.
async fn work<S: Sink>(
    jobs: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    sink: S,
    state: Arc<State>,
) {
    loop {
        let Some(job) = jobs.lock().await.recv().await else {
            return;
        };
        let n = job.events.len() as u64;
        let c = &state.counters;
        // The answer to a success is known before the commit: it is
        // committed with the events, for retransmissions after a restart.
        let once = state
            .config
            .durable_exchanges
            .then(|| {
                let changed = status(job.reply.response.clone(), ResponseType::Changed, None, "");
                exchange::durable(
                    job.reply.peer,
                    &changed,
                    state.config.exchange_lifetime.get(),
                )
            })
            .flatten();
        let accepted = match once {
            Some(once) => sink.accept_once(job.events, once).await,
            None => sink.accept(job.events).await,
        };
        let reply = match accepted {
            Ok(_) => {
                Counters::add(&c.events_accepted, n);
                job.reply.with_status(ResponseType::Changed, None, "")
            }
            Err(refusal) => {
                Counters::add(&c.events_refused, n);
                tracing::warn!(peer = %job.reply.peer, error = %refusal.message, "CoAP readings refused by the queue");
                match refusal.reason {
                    RefusalReason::Busy { retry_after } => job.reply.with_status(
                        ResponseType::ServiceUnavailable,
                        Some(retry_after),
                        "queue full, retry later",
                    ),
                    RefusalReason::TooLarge => job.reply.with_status(
                        ResponseType::RequestEntityTooLarge,
                        None,
                        "too large for the queue",
                    ),
                    RefusalReason::Unavailable => job.reply.with_status(
                        ResponseType::ServiceUnavailable,
                        Some(state.config.retry_after.get()),
                        "storage unavailable",
                    ),
                }
            }
        };
        finish(&state, reply).await;
    }
}

impl Reply {
    /// The same reply, its response set to `code` (see [`status`]).
    fn with_status(self, code: ResponseType, max_age: Option<Duration>, diagnostic: &str) -> Reply {
        Reply {
            response: status(self.response, code, max_age, diagnostic),
            ..self
        }
    }
}

/// Sends an answer and remembers it for retransmissions.
async fn finish(state: &State, reply: Reply) {
    let Ok(bytes) = reply.response.to_bytes() else {
        return;
    };
    if let Ok(mut x) = state.exchanges.lock() {
        x.answer(
            &exchange::request_key(reply.peer, &reply.response),
            bytes.clone(),
        );
    }
    reply.link.send(bytes, reply.peer).await;
}

async fn send(link: &Link, peer: SocketAddr, packet: &Packet) {
    if let Ok(bytes) = packet.to_bytes() {
        link.send(bytes, peer).await;
    }
}

/// The response with `code`, a diagnostic payload (for errors) and Max-Age.
fn status(
    mut response: Packet,
    code: ResponseType,
    max_age: Option<Duration>,
    diagnostic: &str,
) -> Packet {
    response.header.code = MessageClass::Response(code);
    if let Some(age) = max_age {
        let secs = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        response.clear_option(CoapOption::MaxAge);
        response.add_option(CoapOption::MaxAge, encode_uint(secs));
    }
    if !diagnostic.is_empty() {
        response.payload = diagnostic.as_bytes().to_vec();
    }
    response
}

/// `/.well-known/core` (RFC 6690): the readings collection, and the allowed devices.
fn links(config: &CoapConfig) -> String {
    let formats = "ct=\"0 50 60 110 112\"";
    let mut links = vec![format!(
        "</{}>;rt=\"sluice.readings\";{formats};title=\"POST readings to /{}/<device>\"",
        config.path, config.path
    )];
    for device in &config.allow {
        links.push(format!(
            "</{}/{device}>;rt=\"sluice.readings\";{formats}",
            config.path
        ));
    }
    links.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_core_lists_the_collection_and_allowed_devices() {
        let config = CoapConfig {
            allow: vec!["t1".into()],
            ..CoapConfig::default()
        };
        let l = links(&config);
        assert!(
            l.starts_with("</r>;rt=\"sluice.readings\";ct=\"0 50 60 110 112\""),
            "{l}"
        );
        assert!(
            l.ends_with(",</r/t1>;rt=\"sluice.readings\";ct=\"0 50 60 110 112\""),
            "{l}"
        );
    }
}
