//! The concentrators the server has heard from: where to send each one's
//! downlinks (the address of its last PULL_DATA), which are live (heard
//! within [`LIVE`]), so the deduplication window can close as soon as every
//! live one has reported a frame, and each one's last `stat` report as
//! health figures. Bounded: past [`MAX_GATEWAYS`] the stalest is forgotten.

use crate::gwmp::Stat;
use crate::keys::Eui64;
use sluice_adapter_common::{Counters, Figures};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A concentrator silent for longer is not waited for. Packet forwarders
/// send PULL_DATA every 10 s by default, so this spans three of them.
pub const LIVE: Duration = Duration::from_secs(30);
/// Concentrators remembered at most.
pub const MAX_GATEWAYS: usize = 256;

struct Gateway {
    heard: Instant,
    downlink: Option<SocketAddr>,
}

/// The concentrators heard from.
#[derive(Default)]
pub struct Gateways {
    known: HashMap<Eui64, Gateway>,
}

impl Gateways {
    /// `eui` sent a datagram now; a PULL_DATA names its downlink address.
    pub fn heard(
        &mut self,
        eui: Eui64,
        pull_from: Option<SocketAddr>,
        now: Instant,
        counters: &Counters,
    ) {
        if let Some(g) = self.known.get_mut(&eui) {
            g.heard = now;
            if pull_from.is_some() {
                g.downlink = pull_from;
            }
            return;
        }
        if self.known.len() >= MAX_GATEWAYS
            && let Some(stalest) = self
                .known
                .iter()
                .min_by_key(|(_, g)| g.heard)
                .map(|(e, _)| *e)
        {
            self.known.remove(&stalest);
            counters.forget(&stalest.hex());
        }
        self.known.insert(
            eui,
            Gateway {
                heard: now,
                downlink: pull_from,
            },
        );
    }

    /// Where `eui`'s downlinks go: the address of its last PULL_DATA.
    pub fn downlink(&self, eui: &Eui64) -> Option<SocketAddr> {
        self.known.get(eui).and_then(|g| g.downlink)
    }

    /// How many concentrators were heard within [`LIVE`] of `now`.
    pub fn live(&self, now: Instant) -> usize {
        self.known
            .values()
            .filter(|g| now.saturating_duration_since(g.heard) < LIVE)
            .count()
    }
}

/// A `stat` report as health figures.
pub fn figures(stat: &Stat) -> Figures {
    let mut f = Figures::from([
        ("rx_received", stat.rxnb as f64),
        ("rx_ok", stat.rxok as f64),
        ("rx_forwarded", stat.rxfw as f64),
        ("ack_ratio", stat.ackr),
        ("downlinks_received", stat.dwnb as f64),
        ("tx_sent", stat.txnb as f64),
        ("reported_ms", sluice_adapter_common::clock::now_ms() as f64),
    ]);
    if let (Some(lat), Some(lon)) = (stat.lati, stat.long) {
        f.insert("latitude", lat);
        f.insert("longitude", lon);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eui(n: u8) -> Eui64 {
        Eui64([n; 8])
    }

    #[test]
    fn a_pull_data_sets_the_downlink_path_and_a_push_keeps_it() {
        let c = Counters::default();
        let mut g = Gateways::default();
        let now = Instant::now();
        let addr: SocketAddr = "127.0.0.1:1700".parse().expect("address");
        g.heard(eui(1), None, now, &c);
        assert_eq!(g.downlink(&eui(1)), None);
        g.heard(eui(1), Some(addr), now, &c);
        g.heard(eui(1), None, now, &c);
        assert_eq!(g.downlink(&eui(1)), Some(addr));
    }

    #[test]
    fn only_recently_heard_gateways_are_live() {
        let c = Counters::default();
        let mut g = Gateways::default();
        let start = Instant::now();
        g.heard(eui(1), None, start, &c);
        g.heard(eui(2), None, start + LIVE / 2, &c);
        assert_eq!(g.live(start + LIVE / 2), 2);
        assert_eq!(g.live(start + LIVE), 1);
        assert_eq!(g.live(start + LIVE * 2), 0);
    }

    #[test]
    fn past_the_bound_the_stalest_is_forgotten_with_its_figures() {
        let c = Counters::default();
        let mut g = Gateways::default();
        let start = Instant::now();
        for i in 0..MAX_GATEWAYS {
            let eui = Eui64((i as u64).to_be_bytes());
            g.heard(eui, None, start + Duration::from_millis(i as u64), &c);
        }
        let first = Eui64(0u64.to_be_bytes());
        c.report(&first.hex(), Figures::from([("rx_ok", 1.0)]));
        g.heard(eui(0xff), None, start + Duration::from_secs(1), &c);
        assert_eq!(g.known.len(), MAX_GATEWAYS);
        assert!(!g.known.contains_key(&first));
        assert!(c.snapshot().peers.is_empty());
    }
}
