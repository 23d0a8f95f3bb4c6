//! The exchanges an endpoint has seen, so that a retransmitted message (same
//! peer, same message ID, within EXCHANGE_LIFETIME) gets the answer the first
//! one got and is not ingested twice (RFC 7252 §4.5). The server keys them by
//! (peer, message ID, token), the observer of one device by (message ID,
//! token). Pure: time comes in as an argument. Bounded: the oldest
//! exchanges are forgotten first.
//!
//! Across restarts: the server hands the core a [`durable`] copy of each
//! request's key and its `2.04` with the request's events, committed in the
//! same transaction, and [`Exchanges::restore`]s the unexpired ones when it
//! starts again, so a retransmission after a crash gets the original answer
//! and no new events.

use coap_lite::Packet;
use foldhash::fast::RandomState;
use sluice_adapter_common::Exchange;
use sluice_adapter_common::clock::now_ms;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A token we sent (always 8 bytes) or received (0 to 8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token {
    len: u8,
    bytes: [u8; 8],
}

impl Token {
    /// The token of these bytes (at most 8 are kept, as CoAP allows).
    pub fn from_slice(s: &[u8]) -> Token {
        let mut bytes = [0; 8];
        let len = s.len().min(8);
        bytes[..len].copy_from_slice(&s[..len]);
        Token {
            len: len as u8,
            bytes,
        }
    }

    /// The token's bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// What identifies a request at the server: the peer (address and port),
/// the message ID and the token.
pub type RequestKey = (SocketAddr, u16, Token);

/// The key of the request `response` answers (a response carries the
/// request's message ID and token).
pub fn request_key(peer: SocketAddr, response: &Packet) -> RequestKey {
    (
        peer,
        response.header.message_id,
        Token::from_slice(response.get_token()),
    )
}

/// First byte of a stored key: a request at the server. Another kind of
/// exchange of this adapter would get its own.
const KIND_REQUEST: u8 = b'r';

/// The stored form of a key: kind, address family (4 or 6), address, port,
/// message ID (both big-endian), then the token.
pub fn encode_key(key: &RequestKey) -> Vec<u8> {
    let (peer, mid, token) = key;
    let mut out = Vec::with_capacity(2 + 16 + 4 + 8);
    out.push(KIND_REQUEST);
    match peer.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&peer.port().to_be_bytes());
    out.extend_from_slice(&mid.to_be_bytes());
    out.extend_from_slice(token.as_slice());
    out
}

/// Reads a key written by [`encode_key`]; `None` for anything else.
pub fn decode_key(bytes: &[u8]) -> Option<RequestKey> {
    let (&kind, rest) = bytes.split_first()?;
    if kind != KIND_REQUEST {
        return None;
    }
    let (&family, rest) = rest.split_first()?;
    let (ip, rest) = match family {
        4 => {
            let (ip, rest) = rest.split_first_chunk::<4>()?;
            (IpAddr::V4(Ipv4Addr::from(*ip)), rest)
        }
        6 => {
            let (ip, rest) = rest.split_first_chunk::<16>()?;
            (IpAddr::V6(Ipv6Addr::from(*ip)), rest)
        }
        _ => return None,
    };
    let (port, rest) = rest.split_first_chunk::<2>()?;
    let (mid, token) = rest.split_first_chunk::<2>()?;
    if token.len() > 8 {
        return None;
    }
    Some((
        SocketAddr::new(ip, u16::from_be_bytes(*port)),
        u16::from_be_bytes(*mid),
        Token::from_slice(token),
    ))
}

/// The exchange to commit with a request's events: its key and `answer`
/// (the response to send once they are durable), kept for `lifetime`.
/// `None` if the answer cannot be encoded (then nothing can be sent either).
pub fn durable(peer: SocketAddr, answer: &Packet, lifetime: Duration) -> Option<Exchange> {
    let bytes = answer.to_bytes().ok()?;
    Some(Exchange {
        key: encode_key(&request_key(peer, answer)),
        answer: bytes,
        expires_ms: now_ms()
            .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX)),
    })
}

/// What is known about a request's (peer, message ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// First time: it is now marked in progress.
    New,
    /// The first copy is still being handled (its events are not durable
    /// yet): ignore this copy; the peer will retransmit and get the answer.
    InProgress,
    /// Already answered: send these bytes again.
    Answered(Vec<u8>),
}

/// Recently seen exchanges, in arrival order, by key (for a server: peer
/// and message ID).
#[derive(Debug)]
pub struct Exchanges<K = RequestKey> {
    lifetime: Duration,
    max: usize,
    /// Hashed with foldhash (randomly seeded, so peers cannot aim collisions),
    /// several times cheaper than the default SipHash on this hot path.
    answers: HashMap<K, Option<Vec<u8>>, RandomState>,
    /// Keys with when they expire, oldest first.
    order: VecDeque<(K, Instant)>,
}

impl<K: Hash + Eq + Copy> Exchanges<K> {
    /// Remembers exchanges for `lifetime`, at most `max` at once.
    pub fn new(lifetime: Duration, max: usize) -> Exchanges<K> {
        Exchanges {
            lifetime,
            max: max.max(1),
            answers: HashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Looks the message up, registering it as in progress if it is new.
    pub fn begin(&mut self, key: K, now: Instant) -> Seen {
        match self.lookup(&key, now) {
            Some(seen) => seen,
            None => {
                self.insert(key, None, now + self.lifetime);
                Seen::New
            }
        }
    }

    /// What is known about `key`, without registering it.
    pub fn lookup(&mut self, key: &K, now: Instant) -> Option<Seen> {
        self.expire(now);
        match self.answers.get(key)? {
            Some(bytes) => Some(Seen::Answered(bytes.clone())),
            None => Some(Seen::InProgress),
        }
    }

    /// Records a message handled at once, with its answer (empty: none sent).
    pub fn record(&mut self, key: K, answer: Vec<u8>, now: Instant) {
        self.insert(key, Some(answer), now + self.lifetime);
    }

    /// Remembers `key` until `expires` (never before those already remembered).
    fn insert(&mut self, key: K, answer: Option<Vec<u8>>, expires: Instant) {
        while self.answers.len() >= self.max {
            let Some((old, _)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&old);
        }
        self.answers.insert(key, answer);
        self.order.push_back((key, expires));
    }

    /// Brings back an answered exchange remembered from before a restart,
    /// to be forgotten `remaining` after `now`. Call in order of expiry,
    /// before new exchanges arrive.
    pub fn restore(&mut self, key: K, answer: Vec<u8>, remaining: Duration, now: Instant) {
        self.insert(key, Some(answer), now + remaining.min(self.lifetime));
    }

    /// Records the answer sent for a message registered by [`Exchanges::begin`].
    pub fn answer(&mut self, key: &K, bytes: Vec<u8>) {
        if let Some(slot) = self.answers.get_mut(key) {
            *slot = Some(bytes);
        }
    }

    /// How many exchanges are remembered.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(key, expires)) = self.order.front() {
            if now < expires {
                break;
            }
            self.order.pop_front();
            self.answers.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn key(port: u16, mid: u16) -> RequestKey {
        (peer(port), mid, Token::from_slice(&mid.to_be_bytes()))
    }

    #[test]
    fn stored_keys_read_back_for_both_address_families() {
        let v4 = (peer(5683), 0x1234, Token::from_slice(&[1, 2, 3]));
        assert_eq!(
            encode_key(&v4),
            [b'r', 4, 127, 0, 0, 1, 0x16, 0x33, 0x12, 0x34, 1, 2, 3]
        );
        let v6: RequestKey = (
            "[2001:db8::1]:40000".parse().expect("address"),
            7,
            Token::from_slice(&[]),
        );
        for k in [v4, v6] {
            assert_eq!(decode_key(&encode_key(&k)), Some(k));
        }
        assert_eq!(
            decode_key(&[b'o', 4, 127, 0, 0, 1, 0, 1, 0, 1]),
            None,
            "another kind"
        );
        assert_eq!(decode_key(&[b'r', 4, 127, 0]), None, "truncated");
        assert_eq!(decode_key(&[b'r', 5]), None, "no such family");
    }

    #[test]
    fn a_restored_exchange_answers_until_its_remaining_lifetime_ends() {
        let t0 = Instant::now();
        let mut x: Exchanges = Exchanges::new(Duration::from_secs(247), 100);
        x.restore(key(1, 7), vec![0x60, 0x44], Duration::from_secs(10), t0);
        assert_eq!(
            x.begin(key(1, 7), t0 + Duration::from_secs(9)),
            Seen::Answered(vec![0x60, 0x44])
        );
        assert_eq!(
            x.begin(key(1, 7), t0 + Duration::from_secs(10)),
            Seen::New,
            "expired"
        );
    }

    #[test]
    fn a_retransmission_gets_the_same_answer_until_the_lifetime_ends() {
        let t0 = Instant::now();
        let mut x: Exchanges = Exchanges::new(Duration::from_secs(247), 100);
        assert_eq!(x.begin(key(1, 7), t0), Seen::New);
        assert_eq!(
            x.begin(key(1, 7), t0),
            Seen::InProgress,
            "still being handled"
        );
        x.answer(&key(1, 7), vec![0x60, 0x44]);
        assert_eq!(
            x.begin(key(1, 7), t0 + Duration::from_secs(10)),
            Seen::Answered(vec![0x60, 0x44])
        );
        assert_eq!(
            x.begin(key(2, 7), t0),
            Seen::New,
            "another peer, another exchange"
        );
        assert_eq!(x.begin(key(1, 8), t0), Seen::New, "another message id");
        assert_eq!(
            x.begin(key(1, 7), t0 + Duration::from_secs(247)),
            Seen::New,
            "expired"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_when_full() {
        let t0 = Instant::now();
        let mut x: Exchanges = Exchanges::new(Duration::from_secs(247), 2);
        for mid in 1..=3 {
            assert_eq!(x.begin(key(1, mid), t0), Seen::New);
        }
        assert_eq!(x.len(), 2);
        assert_eq!(x.begin(key(1, 3), t0), Seen::InProgress);
        assert_eq!(x.begin(key(1, 1), t0), Seen::New, "forgotten");
    }
}
