//! The `coaps` socket: datagrams are sorted by peer into sessions, one task
//! each (bounded by `max_sessions`), and what the sessions decrypt goes out
//! as [`Inbound`] messages through one bounded channel. Answers go back
//! through the session they came from ([`Replier`]).

use super::config::DtlsConfig;
use super::context::Acceptor;
use super::session::{Session, SessionError};
use crate::rejection::Rejection;
use sluice_adapter_common::{Counters, Shutdown};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Datagrams queued for one session before more are dropped (DTLS
/// retransmits its flights, CoAP its requests).
const INBOX: usize = 64;
/// Answers queued for one session.
const REPLIES: usize = 64;
/// The largest datagram read.
const MAX_DATAGRAM: usize = 65_535;

/// A CoAP message that arrived in clear through a session.
pub struct Inbound {
    /// The message's bytes.
    pub bytes: Vec<u8>,
    /// Who sent it.
    pub peer: SocketAddr,
    /// Who the peer proved to be: its PSK identity or certificate Common Name.
    pub identity: Arc<str>,
    /// How to answer it.
    pub reply: Replier,
}

/// Sends answers through one session.
#[derive(Clone, Debug)]
pub struct Replier(mpsc::Sender<Vec<u8>>);

impl Replier {
    /// Queues an answer; `false` if the session is gone or swamped (the
    /// peer will retransmit).
    pub fn send(&self, message: Vec<u8>) -> bool {
        self.0.try_send(message).is_ok()
    }
}

/// A bound `coaps` socket and the context its sessions share.
pub struct Listener {
    socket: Arc<UdpSocket>,
    acceptor: Acceptor,
    max_sessions: usize,
    idle_timeout: Duration,
    handshake_timeout: Duration,
}

/// What the listener keeps of a session.
struct Handle {
    inbox: mpsc::Sender<Vec<u8>>,
    open: Arc<AtomicBool>,
}

impl Listener {
    /// A listener on `socket` with `acceptor`'s keys.
    pub fn new(socket: UdpSocket, acceptor: Acceptor, config: &DtlsConfig) -> Listener {
        Listener {
            socket: Arc::new(socket),
            acceptor,
            max_sessions: config.max_sessions,
            idle_timeout: config.idle_timeout.get(),
            handshake_timeout: config.handshake_timeout.get(),
        }
    }

    /// The address bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.socket.local_addr().ok()
    }

    /// Serves until shutdown, then lets the sessions send the answers still
    /// in flight (they end once every [`Replier`] is gone).
    pub async fn run(
        self,
        messages: mpsc::Sender<Inbound>,
        counters: Arc<Counters>,
        mut shutdown: Shutdown,
    ) {
        let mut sessions: HashMap<SocketAddr, Handle> = HashMap::new();
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        if let Some(addr) = self.local_addr() {
            tracing::info!(address = %addr, "CoAP DTLS listener listening");
        }
        loop {
            let (n, peer) = tokio::select! {
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "CoAP DTLS receive error");
                        continue;
                    }
                },
                _ = shutdown.wait() => break,
            };
            Counters::add(&counters.messages_in, 1);
            Counters::add(&counters.bytes_in, n as u64);
            let datagram = buf[..n].to_vec();
            let hello = is_client_hello(&datagram);
            if let Some(handle) = sessions.get(&peer)
                && !handle.inbox.is_closed()
                // A new ClientHello on an open session: the device restarted.
                && !(hello && handle.open.load(Ordering::Relaxed))
            {
                if handle.inbox.try_send(datagram).is_err() {
                    counters.reject(Rejection::BacklogFull);
                }
                continue;
            }
            if !hello {
                counters.reject(Rejection::NoSession);
                continue;
            }
            while tasks.try_join_next().is_some() {}
            if sessions.len() >= self.max_sessions {
                sessions.retain(|_, h| !h.inbox.is_closed());
            }
            if sessions.len() >= self.max_sessions {
                counters.reject(Rejection::TooManySessions);
                continue;
            }
            let session = match Session::accept(&self.acceptor, peer) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "CoAP DTLS session not created");
                    continue;
                }
            };
            let (inbox, rx) = mpsc::channel(INBOX);
            let _ = inbox.try_send(datagram);
            let open = Arc::new(AtomicBool::new(false));
            tasks.spawn(
                Task {
                    session,
                    peer,
                    socket: self.socket.clone(),
                    messages: messages.clone(),
                    counters: counters.clone(),
                    idle_timeout: self.idle_timeout,
                    handshake_timeout: self.handshake_timeout,
                    open: open.clone(),
                }
                .run(rx),
            );
            sessions.insert(peer, Handle { inbox, open });
        }
        drop(sessions);
        drop(messages);
        while tasks.join_next().await.is_some() {}
        tracing::info!("CoAP DTLS listener stopped");
    }
}

/// A DTLS handshake record (type 22, epoch 0) carrying a ClientHello (type 1).
fn is_client_hello(datagram: &[u8]) -> bool {
    datagram.len() > 13 && datagram[0] == 22 && datagram[3..5] == [0, 0] && datagram[13] == 1
}

/// One session's task.
struct Task {
    session: Session,
    peer: SocketAddr,
    socket: Arc<UdpSocket>,
    messages: mpsc::Sender<Inbound>,
    counters: Arc<Counters>,
    idle_timeout: Duration,
    handshake_timeout: Duration,
    open: Arc<AtomicBool>,
}

impl Task {
    async fn run(mut self, mut inbox: mpsc::Receiver<Vec<u8>>) {
        let (replies_tx, mut replies) = mpsc::channel::<Vec<u8>>(REPLIES);
        let mut replier = Some(Replier(replies_tx));
        let mut deadline = Instant::now() + self.handshake_timeout;
        loop {
            tokio::select! {
                datagram = inbox.recv(), if replier.is_some() => {
                    let Some(datagram) = datagram else {
                        // The listener stopped: only answers in flight remain.
                        replier = None;
                        continue;
                    };
                    let Some(reply) = replier.clone() else { continue };
                    if !self.receive(datagram, reply).await {
                        return;
                    }
                    if self.session.is_open() {
                        deadline = Instant::now() + self.idle_timeout;
                    }
                }
                reply = replies.recv() => {
                    let Some(message) = reply else { return };
                    if let Err(e) = self.session.send(&message) {
                        tracing::debug!(peer = %self.peer, error = %e, "CoAP DTLS answer not sent");
                        return;
                    }
                    self.flush().await;
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if self.session.is_open() {
                        tracing::debug!(peer = %self.peer, "CoAP DTLS session idle, closing");
                        self.session.close();
                        self.flush().await;
                    } else {
                        self.counters.reject(Rejection::Handshake);
                        tracing::warn!(peer = %self.peer, "CoAP DTLS handshake timed out");
                    }
                    return;
                }
            }
        }
    }

    /// Feeds one datagram to the session and hands on what it decrypted.
    /// `false` once the session is over.
    async fn receive(&mut self, datagram: Vec<u8>, reply: Replier) -> bool {
        let received = self.session.receive(datagram);
        self.flush().await;
        let received = match received {
            Ok(r) => r,
            Err(SessionError::Closed) => return false,
            Err(e @ (SessionError::Handshake(_) | SessionError::NoIdentity)) => {
                self.counters.reject(Rejection::Handshake);
                tracing::warn!(peer = %self.peer, error = %e, "CoAP DTLS handshake failed");
                return false;
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, error = %e, "CoAP DTLS session ended");
                return false;
            }
        };
        let Some(identity) = self.session.identity().map(Arc::<str>::from) else {
            return true;
        };
        if received.established {
            self.open.store(true, Ordering::Relaxed);
            tracing::debug!(peer = %self.peer, identity = %identity, "CoAP DTLS session established");
        }
        for bytes in received.messages {
            let inbound = Inbound {
                bytes,
                peer: self.peer,
                identity: identity.clone(),
                reply: reply.clone(),
            };
            if self.messages.send(inbound).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn flush(&mut self) {
        for datagram in self.session.outgoing() {
            let _ = self.socket.send_to(&datagram, self.peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hellos_are_told_from_other_records() {
        // type 22 (handshake), version fe fd, epoch 0, sequence 0, length, then msg type 1.
        let mut hello = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 1];
        hello.extend([0; 49]);
        assert!(is_client_hello(&hello));
        let mut later_epoch = hello.clone();
        later_epoch[4] = 1;
        assert!(!is_client_hello(&later_epoch));
        let mut application = hello.clone();
        application[0] = 23;
        assert!(!is_client_hello(&application));
        assert!(!is_client_hello(&hello[..13]));
    }
}
