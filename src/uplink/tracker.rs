//! Which publish is in flight under which packet id: the uplink's protocol
//! state, apart from the socket (as rumqttc keeps `MqttState` apart from its
//! event loop). Pure and unit-tested.
//!
//! rumqttc's `publish()` returns no packet id, so publishes are registered
//! here *before* they are handed to the client, and paired with
//! `Outgoing::Publish(pkid)` events in order. When the broker answers a
//! reconnect with `session_present = false`, rumqttc silently drops every
//! publish it had not seen acknowledged: [`BatchTracker::connection_reset`]
//! forgets them all, and the queue makes their records due again.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// What a QoS 1 publish carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// A batch of queue records.
    Batch {
        /// Queue sequence numbers of its records, deleted on PUBACK.
        seqs: Vec<i64>,
    },
    /// A retained status message (birth).
    Status,
    /// A reply to a command.
    Reply,
}

/// Pairs publishes with packet ids and acknowledgements.
#[derive(Debug, Default)]
pub struct BatchTracker {
    /// Handed to the client, packet id not yet known, in order.
    unnumbered: VecDeque<Sent>,
    /// Written to the network under a packet id (and when), awaiting PUBACK.
    numbered: HashMap<u16, (Sent, Instant)>,
}

impl BatchTracker {
    /// Registers a QoS 1 publish about to be handed to the client.
    pub fn queued(&mut self, sent: Sent) {
        self.unnumbered.push_back(sent);
    }

    /// Takes back the last registration when handing it to the client failed.
    pub fn unqueue_last(&mut self) -> Option<Sent> {
        self.unnumbered.pop_back()
    }

    /// The client wrote a publish with `pkid`. Packet id 0 is QoS 0 (not
    /// tracked); a packet id already in flight is a retransmission.
    pub fn outgoing_publish(&mut self, pkid: u16) {
        if pkid == 0 || self.numbered.contains_key(&pkid) {
            return;
        }
        if let Some(sent) = self.unnumbered.pop_front() {
            self.numbered.insert(pkid, (sent, Instant::now()));
        }
    }

    /// The broker acknowledged `pkid`; returns what that publish carried
    /// and how long after it was written.
    pub fn puback(&mut self, pkid: u16) -> Option<(Sent, Duration)> {
        self.numbered
            .remove(&pkid)
            .map(|(sent, at)| (sent, at.elapsed()))
    }

    /// The connection dropped what it had not seen acknowledged; returns how
    /// many batches were lost that way (their records will be sent again).
    pub fn connection_reset(&mut self) -> usize {
        self.unnumbered
            .drain(..)
            .chain(self.numbered.drain().map(|(_, (s, _))| s))
            .filter(|s| matches!(s, Sent::Batch { .. }))
            .count()
    }

    /// Batches handed out and not yet acknowledged.
    pub fn batches_in_flight(&self) -> usize {
        self.unnumbered
            .iter()
            .chain(self.numbered.values().map(|(s, _)| s))
            .filter(|s| matches!(s, Sent::Batch { .. }))
            .count()
    }

    /// Whether nothing at all awaits an acknowledgement.
    pub fn is_idle(&self) -> bool {
        self.unnumbered.is_empty() && self.numbered.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: &[i64]) -> Sent {
        Sent::Batch {
            seqs: seqs.to_vec(),
        }
    }

    #[test]
    fn publishes_pair_with_packet_ids_in_order() {
        let mut t = BatchTracker::default();
        t.queued(Sent::Status);
        t.queued(batch(&[1, 2]));
        t.queued(batch(&[3]));
        t.outgoing_publish(1);
        t.outgoing_publish(2);
        t.outgoing_publish(3);
        assert_eq!(t.batches_in_flight(), 2);
        assert_eq!(t.puback(3).map(|(s, _)| s), Some(batch(&[3])));
        assert_eq!(t.puback(1).map(|(s, _)| s), Some(Sent::Status));
        assert_eq!(t.puback(2).map(|(s, _)| s), Some(batch(&[1, 2])));
        assert!(t.is_idle());
    }

    #[test]
    fn qos0_and_retransmissions_do_not_consume_registrations() {
        let mut t = BatchTracker::default();
        t.queued(batch(&[1]));
        t.outgoing_publish(0); // a QoS 0 health message
        t.outgoing_publish(7);
        t.queued(batch(&[2]));
        t.outgoing_publish(7); // DUP retransmission after a resumed session
        assert_eq!(t.puback(7).map(|(s, _)| s), Some(batch(&[1])));
        t.outgoing_publish(8);
        assert_eq!(t.puback(8).map(|(s, _)| s), Some(batch(&[2])));
    }

    #[test]
    fn unknown_or_repeated_acks_are_ignored() {
        let mut t = BatchTracker::default();
        t.queued(batch(&[1]));
        t.outgoing_publish(1);
        assert_eq!(t.puback(2).map(|(s, _)| s), None);
        assert_eq!(t.puback(1).map(|(s, _)| s), Some(batch(&[1])));
        assert_eq!(t.puback(1).map(|(s, _)| s), None);
    }

    #[test]
    fn reset_forgets_everything_and_counts_lost_batches() {
        let mut t = BatchTracker::default();
        t.queued(Sent::Status);
        t.queued(batch(&[1]));
        t.queued(batch(&[2]));
        t.outgoing_publish(1);
        t.outgoing_publish(2);
        t.queued(batch(&[3]));
        assert_eq!(t.connection_reset(), 3);
        assert!(t.is_idle());
        // Packet ids restart after a clean session; old ones must not match.
        t.queued(batch(&[1]));
        t.outgoing_publish(1);
        assert_eq!(t.puback(1).map(|(s, _)| s), Some(batch(&[1])));
    }

    #[test]
    fn a_failed_hand_over_is_taken_back() {
        let mut t = BatchTracker::default();
        t.queued(batch(&[1]));
        t.queued(batch(&[2]));
        assert_eq!(t.unqueue_last(), Some(batch(&[2])));
        t.outgoing_publish(1);
        assert_eq!(t.puback(1).map(|(s, _)| s), Some(batch(&[1])));
    }
}
