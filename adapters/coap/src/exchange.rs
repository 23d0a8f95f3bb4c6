//! The exchanges an endpoint has seen, so that a retransmitted message (same
//! peer, same message ID, within EXCHANGE_LIFETIME) gets the answer the first
//! one got and is not ingested twice (RFC 7252 §4.5). The server keys them by
//! (peer, message ID), the observer of one device by (message ID, token).
//! Pure: time comes in as an argument. Bounded: the oldest exchanges are
//! forgotten first.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
pub struct Exchanges<K = (SocketAddr, u16)> {
    lifetime: Duration,
    max: usize,
    answers: HashMap<K, Option<Vec<u8>>>,
    order: VecDeque<(K, Instant)>,
}

impl<K: Hash + Eq + Copy> Exchanges<K> {
    /// Remembers exchanges for `lifetime`, at most `max` at once.
    pub fn new(lifetime: Duration, max: usize) -> Exchanges<K> {
        Exchanges {
            lifetime,
            max: max.max(1),
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Looks the message up, registering it as in progress if it is new.
    pub fn begin(&mut self, key: K, now: Instant) -> Seen {
        match self.lookup(&key, now) {
            Some(seen) => seen,
            None => {
                self.insert(key, None, now);
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
        self.insert(key, Some(answer), now);
    }

    fn insert(&mut self, key: K, answer: Option<Vec<u8>>, now: Instant) {
        while self.answers.len() >= self.max {
            let Some((old, _)) = self.order.pop_front() else {
                break;
            };
            self.answers.remove(&old);
        }
        self.answers.insert(key, answer);
        self.order.push_back((key, now));
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
        while let Some(&(key, at)) = self.order.front() {
            if now.duration_since(at) < self.lifetime {
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

    #[test]
    fn a_retransmission_gets_the_same_answer_until_the_lifetime_ends() {
        let t0 = Instant::now();
        let mut x: Exchanges = Exchanges::new(Duration::from_secs(247), 100);
        assert_eq!(x.begin((peer(1), 7), t0), Seen::New);
        assert_eq!(
            x.begin((peer(1), 7), t0),
            Seen::InProgress,
            "still being handled"
        );
        x.answer(&(peer(1), 7), vec![0x60, 0x44]);
        assert_eq!(
            x.begin((peer(1), 7), t0 + Duration::from_secs(10)),
            Seen::Answered(vec![0x60, 0x44])
        );
        assert_eq!(
            x.begin((peer(2), 7), t0),
            Seen::New,
            "another peer, another exchange"
        );
        assert_eq!(x.begin((peer(1), 8), t0), Seen::New, "another message id");
        assert_eq!(
            x.begin((peer(1), 7), t0 + Duration::from_secs(247)),
            Seen::New,
            "expired"
        );
    }

    #[test]
    fn the_oldest_are_forgotten_when_full() {
        let t0 = Instant::now();
        let mut x: Exchanges = Exchanges::new(Duration::from_secs(247), 2);
        for mid in 1..=3 {
            assert_eq!(x.begin((peer(1), mid), t0), Seen::New);
        }
        assert_eq!(x.len(), 2);
        assert_eq!(x.begin((peer(1), 3), t0), Seen::InProgress);
        assert_eq!(x.begin((peer(1), 1), t0), Seen::New, "forgotten");
    }
}
