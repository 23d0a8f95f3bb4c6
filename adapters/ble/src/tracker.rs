//! What the gateway remembers of each device it has heard: the last
//! measurement it accepted (to drop the repeats a sensor sends of one
//! measurement), when (to hold a minimum interval), and when it was last
//! heard (to report it gone after a silence). No I/O and no clock: times
//! come in with each call, so tests drive it with any times they like.
//!
//! The hazard it guards against: a sensor repeats each measurement in
//! several advertisements (BTHome and Xiaomi firmware do so by design,
//! Ruuvi tags advertise faster than they measure), and BlueZ is asked to
//! report every one; without this each reading would go upstream several
//! times. Memory is a small fixed record per device heard; only devices of
//! the config are tracked, so a crowd of phones costs nothing.

use crate::mac::Mac;
use std::collections::HashMap;
use std::sync::Arc;

/// One device's memory.
#[derive(Clone, Debug)]
pub struct Tracked {
    /// Its device id.
    pub id: Arc<str>,
    /// Its profile (index into the device map).
    pub profile: u16,
    /// Whether it is reported present.
    pub present: bool,
    /// The packet id or measurement sequence of the last accepted reading.
    last_packet: Option<u32>,
    /// When a reading was last accepted, in ms.
    last_accepted_ms: Option<i64>,
    /// When it was last heard, in ms.
    last_heard_ms: i64,
}

/// What to do with one decoded advertisement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new measurement: publish it.
    Accept,
    /// The same packet id or sequence as the last accepted one.
    Duplicate,
    /// Within the device's minimum interval of the last accepted reading.
    TooSoon,
}

/// Every device heard, by address.
#[derive(Debug, Default)]
pub struct Tracker {
    devices: HashMap<Mac, Tracked>,
}

impl Tracker {
    /// An empty tracker.
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Notes that `mac` was heard at `now_ms`; `id` makes its id the first
    /// time. Returns its record and whether it just appeared (first heard,
    /// or heard again after it was reported gone).
    pub fn heard(
        &mut self,
        mac: Mac,
        profile: u16,
        now_ms: i64,
        id: impl FnOnce() -> Arc<str>,
    ) -> (&mut Tracked, bool) {
        let t = self.devices.entry(mac).or_insert_with(|| Tracked {
            id: id(),
            profile,
            present: false,
            last_packet: None,
            last_accepted_ms: None,
            last_heard_ms: now_ms,
        });
        t.last_heard_ms = t.last_heard_ms.max(now_ms);
        let appeared = !t.present;
        t.present = true;
        (t, appeared)
    }

    /// Devices present but silent for longer than their timeout at `now_ms`
    /// (given per profile): now reported gone, returned with their ids.
    pub fn expire(&mut self, now_ms: i64, timeout_ms: impl Fn(u16) -> i64) -> Vec<Arc<str>> {
        let mut gone = Vec::new();
        for t in self.devices.values_mut() {
            if t.present && now_ms - t.last_heard_ms > timeout_ms(t.profile) {
                t.present = false;
                gone.push(t.id.clone());
            }
        }
        gone
    }

    /// Devices remembered.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether no device was heard yet.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

impl Tracked {
    /// Judges a measurement with `packet` id (if the format has one) at
    /// `now_ms`, and remembers it if accepted.
    pub fn judge(&mut self, packet: Option<u32>, now_ms: i64, min_interval_ms: i64) -> Verdict {
        if packet.is_some() && packet == self.last_packet {
            return Verdict::Duplicate;
        }
        if let Some(last) = self.last_accepted_ms
            && now_ms - last < min_interval_ms
        {
            return Verdict::TooSoon;
        }
        self.last_packet = packet;
        self.last_accepted_ms = Some(now_ms);
        Verdict::Accept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = Mac([1, 2, 3, 4, 5, 6]);
    const B: Mac = Mac([1, 2, 3, 4, 5, 7]);

    fn id(s: &str) -> impl FnOnce() -> Arc<str> + '_ {
        move || Arc::from(s)
    }

    #[test]
    fn repeats_of_one_packet_are_duplicates_until_it_changes() {
        let mut t = Tracker::new();
        let (d, appeared) = t.heard(A, 0, 0, id("a"));
        assert!(appeared);
        assert_eq!(d.judge(Some(7), 0, 0), Verdict::Accept);
        let (d, appeared) = t.heard(A, 0, 100, id("a"));
        assert!(!appeared);
        assert_eq!(d.judge(Some(7), 100, 0), Verdict::Duplicate);
        assert_eq!(d.judge(Some(8), 200, 0), Verdict::Accept);
        // A counter that wrapped or restarted is new again.
        assert_eq!(d.judge(Some(7), 300, 0), Verdict::Accept);
        // Formats without a packet id are never duplicates.
        assert_eq!(d.judge(None, 400, 0), Verdict::Accept);
        assert_eq!(d.judge(None, 400, 0), Verdict::Accept);
    }

    #[test]
    fn the_minimum_interval_holds_per_device() {
        let mut t = Tracker::new();
        assert_eq!(
            t.heard(A, 0, 0, id("a")).0.judge(Some(1), 0, 1000),
            Verdict::Accept
        );
        assert_eq!(
            t.heard(B, 0, 10, id("b")).0.judge(Some(1), 10, 1000),
            Verdict::Accept
        );
        assert_eq!(
            t.heard(A, 0, 999, id("a")).0.judge(Some(2), 999, 1000),
            Verdict::TooSoon
        );
        // A dropped measurement is not remembered: its repeat after the interval is taken.
        assert_eq!(
            t.heard(A, 0, 1000, id("a")).0.judge(Some(2), 1000, 1000),
            Verdict::Accept
        );
    }

    #[test]
    fn silence_longer_than_the_timeout_reports_gone_once_and_reappears() {
        let mut t = Tracker::new();
        t.heard(A, 0, 0, id("a"));
        t.heard(B, 1, 0, id("b"));
        let timeout = |p: u16| if p == 0 { 1000 } else { 5000 };
        assert!(
            t.expire(1000, timeout).is_empty(),
            "exactly the timeout is not longer"
        );
        assert_eq!(t.expire(1001, timeout), vec![Arc::<str>::from("a")]);
        assert!(t.expire(2000, timeout).is_empty(), "gone once");
        assert_eq!(t.expire(5001, timeout), vec![Arc::<str>::from("b")]);
        let (_, appeared) = t.heard(A, 0, 6000, id("a"));
        assert!(appeared, "heard again after gone");
        assert_eq!(t.len(), 2);
    }
}
