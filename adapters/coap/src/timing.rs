//! CoAP transmission parameters (RFC 7252 §4.8) and the times derived from
//! them (§4.8.2), in one place for the server, the observer, the client and
//! the demo. [`Transmission`] lets a caller shorten the timing (tests, the
//! demo) without a second set of constants.

use sluice_adapter_common::Random;
use std::time::Duration;

/// ACK_TIMEOUT: the shortest first wait for an acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// ACK_RANDOM_FACTOR: the first wait is ACK_TIMEOUT times a random factor
/// in `[1, ACK_RANDOM_FACTOR]`.
pub const ACK_RANDOM_FACTOR: f64 = 1.5;
/// MAX_RETRANSMIT: retransmissions of a confirmable message before giving up.
pub const MAX_RETRANSMIT: u32 = 4;
/// MAX_LATENCY: the longest a datagram is assumed to travel.
pub const MAX_LATENCY: Duration = Duration::from_secs(100);
/// PROCESSING_DELAY: how long a peer may take to acknowledge (ACK_TIMEOUT).
pub const PROCESSING_DELAY: Duration = ACK_TIMEOUT;
/// MAX_TRANSMIT_SPAN: first to last transmission of a confirmable message,
/// `ACK_TIMEOUT × (2^MAX_RETRANSMIT − 1) × ACK_RANDOM_FACTOR` = 45 s.
pub const MAX_TRANSMIT_SPAN: Duration =
    Duration::from_millis(ACK_TIMEOUT.as_millis() as u64 * ((1 << MAX_RETRANSMIT) - 1) * 3 / 2);
/// MAX_TRANSMIT_WAIT: first transmission to giving up on an acknowledgement,
/// `ACK_TIMEOUT × (2^(MAX_RETRANSMIT + 1) − 1) × ACK_RANDOM_FACTOR` = 93 s.
pub const MAX_TRANSMIT_WAIT: Duration = Duration::from_millis(
    ACK_TIMEOUT.as_millis() as u64 * ((1 << (MAX_RETRANSMIT + 1)) - 1) * 3 / 2,
);
/// EXCHANGE_LIFETIME: how long a message id identifies a retransmission,
/// `MAX_TRANSMIT_SPAN + 2 × MAX_LATENCY + PROCESSING_DELAY` = 247 s.
pub const EXCHANGE_LIFETIME: Duration = Duration::from_millis(
    MAX_TRANSMIT_SPAN.as_millis() as u64
        + 2 * MAX_LATENCY.as_millis() as u64
        + PROCESSING_DELAY.as_millis() as u64,
);
/// NON_LIFETIME: how long a non-confirmable message id identifies a
/// duplicate, `MAX_TRANSMIT_SPAN + MAX_LATENCY` = 145 s.
pub const NON_LIFETIME: Duration =
    Duration::from_millis(MAX_TRANSMIT_SPAN.as_millis() as u64 + MAX_LATENCY.as_millis() as u64);

/// How one endpoint retransmits confirmable messages: RFC 7252's values by
/// default; tests and the demo shorten them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transmission {
    /// ACK_TIMEOUT.
    pub ack_timeout: Duration,
    /// ACK_RANDOM_FACTOR (at least 1).
    pub ack_random_factor: f64,
    /// MAX_RETRANSMIT.
    pub max_retransmit: u32,
}

impl Default for Transmission {
    /// RFC 7252 §4.8.
    fn default() -> Transmission {
        Transmission {
            ack_timeout: ACK_TIMEOUT,
            ack_random_factor: ACK_RANDOM_FACTOR,
            max_retransmit: MAX_RETRANSMIT,
        }
    }
}

impl Transmission {
    /// The wait before the first retransmission, drawn from
    /// `[ack_timeout, ack_timeout × ack_random_factor]`; it doubles after each.
    pub fn first_timeout(&self, random: &mut Random) -> Duration {
        let spread = self
            .ack_timeout
            .mul_f64((self.ack_random_factor - 1.0).max(0.0));
        random.jitter(self.ack_timeout, spread)
    }

    /// The longest wait from the first transmission to giving up
    /// (MAX_TRANSMIT_WAIT for these parameters).
    pub fn max_transmit_wait(&self) -> Duration {
        let rounds = (1u32 << (self.max_retransmit + 1).min(31)) - 1;
        self.ack_timeout
            .mul_f64(self.ack_random_factor.max(1.0))
            .saturating_mul(rounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_times_are_rfc_7252_section_4_8_2() {
        assert_eq!(MAX_TRANSMIT_SPAN, Duration::from_secs(45));
        assert_eq!(MAX_TRANSMIT_WAIT, Duration::from_secs(93));
        assert_eq!(EXCHANGE_LIFETIME, Duration::from_secs(247));
        assert_eq!(NON_LIFETIME, Duration::from_secs(145));
        assert_eq!(
            Transmission::default().max_transmit_wait(),
            MAX_TRANSMIT_WAIT
        );
    }

    #[test]
    fn the_first_timeout_is_between_ack_timeout_and_its_random_factor() {
        let t = Transmission::default();
        let mut random = Random::from_seed(3);
        for _ in 0..1000 {
            let d = t.first_timeout(&mut random);
            assert!(
                (ACK_TIMEOUT..=ACK_TIMEOUT.mul_f64(1.5)).contains(&d),
                "{d:?}"
            );
        }
    }
}
