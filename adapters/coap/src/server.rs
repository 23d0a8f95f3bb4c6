//! The CoAP server: UDP sockets, requests to events, and answers that come
//! only once the events are durable. One receive loop per socket does the
//! quick work (parse, deduplicate, route, decode) and hands submissions to a
//! fixed pool of workers through a bounded channel; when that is full the
//! device gets `5.03` at once (back-pressure), never an unbounded backlog.
//! With `durable_exchanges`, a request's `2.04` is committed with its events
//! and the unexpired answers are restored at start (see `exchange`).

use crate::config::CoapConfig;
use crate::directory::Directory;
use crate::dtls::context::Acceptor;
use crate::dtls::listener::{Inbound, Listener, Replier};
use crate::exchange::{self, Exchanges, Seen, Token};
use crate::message;
use crate::rejection::Rejection;
use crate::route::{Origin, Router, reset, status};
use coap_lite::{CoapRequest, MessageClass, MessageType, Packet, ResponseType};
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
            exchanges: Mutex::new(Exchanges::new(
                self.config.exchange_lifetime.get(),
                self.config.max_exchanges,
            )),
            router: Router::new(self.config, counters, directory),
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
                    state.router.counters.clone(),
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
    let remembered = match sink.recall(state.router.config.max_exchanges).await {
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
    /// Answers by request: in memory, restored at start from the core.
    exchanges: Mutex<Exchanges>,
    /// Routing, with the config and the counters.
    router: Router,
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
        let c = &state.router.counters;
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
    let c = &state.router.counters;
    let Ok(packet) = Packet::from_bytes(bytes) else {
        c.reject(Rejection::MalformedDatagram);
        return;
    };
    if message::marker_without_payload(bytes) {
        // A format error (RFC 7252 §3): a confirmable one is rejected with a
        // reset (§4.2), anything else ignored.
        c.reject(Rejection::MalformedDatagram);
        if packet.header.get_type() == MessageType::Confirmable {
            send(&link, origin.peer, &reset(packet.header.message_id)).await;
        }
        return;
    }
    if let Some(job) = handle(packet, origin, link, state).await
        && let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            jobs.try_send(job)
    {
        c.reject(Rejection::BacklogFull);
        let retry = state.router.config.retry_after.get();
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
    let c = &state.router.counters;
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
            send(&link, peer, &reset(packet.header.message_id)).await;
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
    match state.router.route(&mut request, &origin) {
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
        let c = &state.router.counters;
        // The answer to a success is known before the commit: it is
        // committed with the events, for retransmissions after a restart.
        let once = state
            .router
            .config
            .durable_exchanges
            .then(|| {
                let changed = status(job.reply.response.clone(), ResponseType::Changed, None, "");
                exchange::durable(
                    job.reply.peer,
                    &changed,
                    state.router.config.exchange_lifetime.get(),
                )
            })
            .flatten();
        // The bytes of that answer, to send as they are once it is durable.
        let durable_answer = once.as_ref().map(|o| o.answer.clone());
        let accepted = match once {
            Some(once) => sink.accept_once(job.events, once).await,
            None => sink.accept(job.events).await,
        };
        let reply = match accepted {
            Ok(_) => {
                Counters::add(&c.events_accepted, n);
                if let Some(bytes) = durable_answer {
                    answer(&state, &job.reply, bytes).await;
                    continue;
                }
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
                        Some(state.router.config.retry_after.get()),
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
    if let Ok(bytes) = reply.response.to_bytes() {
        answer(state, &reply, bytes).await;
    }
}

/// Sends `bytes` as the answer to `reply`'s request and remembers them.
async fn answer(state: &State, reply: &Reply, bytes: Vec<u8>) {
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
