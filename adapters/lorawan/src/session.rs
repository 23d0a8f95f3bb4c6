//! A device's session (address, session keys, frame counters) and its
//! durable form, plus the 32-bit uplink frame counter rebuilt from the 16
//! bits on the wire (LoRaWAN 1.0.x §4.3.1.5: MAX_FCNT_GAP 16384).
//!
//! Sessions and used DevNonces are stored through the sink as adapter
//! state under keys `s<DevEUI>` and `n<DevEUI><DevNonce>`; each change is
//! committed before the answer that depends on it goes out.

use crate::keys::{Eui64, Key};

/// Largest forward jump of the uplink counter accepted (LoRaWAN 1.0.x).
pub const MAX_FCNT_GAP: u32 = 16_384;
/// Format of a stored session; a change of layout bumps it.
const SESSION_FORMAT: u8 = 1;

/// A device's current session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Its address.
    pub dev_addr: u32,
    /// Network session key: MICs and FPort 0.
    pub nwk_skey: Key,
    /// Application session key: FRMPayload on FPort 1-223.
    pub app_skey: Key,
    /// The last uplink counter accepted, if any.
    pub fcnt_up: Option<u32>,
    /// The next downlink counter to use.
    pub fcnt_down: u32,
}

/// How an uplink's 16-bit counter relates to the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A new frame with this full counter.
    Next(u32),
    /// The same counter as the last frame accepted: a retransmission (or a replay).
    Repeat(u32),
    /// Older than the last frame accepted, or too far ahead: rejected.
    Replay {
        /// The 16 bits received.
        fcnt: u16,
        /// The last counter accepted.
        last: u32,
    },
}

/// Rebuilds the full uplink counter from `wire` given the last accepted one.
pub fn rebuild_fcnt(last: Option<u32>, wire: u16) -> Counter {
    let Some(last) = last else {
        return Counter::Next(u32::from(wire));
    };
    let diff = u32::from(wire.wrapping_sub(last as u16));
    if diff == 0 {
        Counter::Repeat(last)
    } else if diff < MAX_FCNT_GAP {
        match last.checked_add(diff) {
            Some(full) => Counter::Next(full),
            None => Counter::Replay { fcnt: wire, last },
        }
    } else {
        Counter::Replay { fcnt: wire, last }
    }
}

impl Session {
    /// The stored form: format, address, keys, counters.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(46);
        out.push(SESSION_FORMAT);
        out.extend_from_slice(&self.dev_addr.to_be_bytes());
        out.extend_from_slice(&self.nwk_skey.0);
        out.extend_from_slice(&self.app_skey.0);
        match self.fcnt_up {
            Some(f) => {
                out.push(1);
                out.extend_from_slice(&f.to_be_bytes());
            }
            None => out.extend_from_slice(&[0, 0, 0, 0, 0]),
        }
        out.extend_from_slice(&self.fcnt_down.to_be_bytes());
        out
    }

    /// Reads a stored session; `None` if it is not in this format.
    pub fn decode(bytes: &[u8]) -> Option<Session> {
        if bytes.len() != 46 || bytes[0] != SESSION_FORMAT {
            return None;
        }
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
        };
        let key_at =
            |i: usize| -> Option<Key> { Some(Key(bytes.get(i..i + 16)?.try_into().ok()?)) };
        Some(Session {
            dev_addr: u32_at(1)?,
            nwk_skey: key_at(5)?,
            app_skey: key_at(21)?,
            fcnt_up: (bytes[37] == 1).then(|| u32_at(38)).flatten(),
            fcnt_down: u32_at(42)?,
        })
    }
}

/// The state key of `dev_eui`'s session.
pub fn session_key(dev_eui: Eui64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(b's');
    k.extend_from_slice(&dev_eui.0);
    k
}

/// The state key of a DevNonce `dev_eui` has used.
pub fn nonce_key(dev_eui: Eui64, nonce: u16) -> Vec<u8> {
    let mut k = Vec::with_capacity(11);
    k.push(b'n');
    k.extend_from_slice(&dev_eui.0);
    k.extend_from_slice(&nonce.to_be_bytes());
    k
}

/// What a stored state key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredKey {
    /// A device's session.
    Session(Eui64),
    /// A used DevNonce.
    Nonce(Eui64, u16),
}

/// Reads a state key written by [`session_key`] or [`nonce_key`].
pub fn parse_key(key: &[u8]) -> Option<StoredKey> {
    let eui = |b: &[u8]| -> Option<Eui64> { Some(Eui64(b.get(1..9)?.try_into().ok()?)) };
    match (key.first(), key.len()) {
        (Some(b's'), 9) => Some(StoredKey::Session(eui(key)?)),
        (Some(b'n'), 11) => Some(StoredKey::Nonce(
            eui(key)?,
            u16::from_be_bytes([key[9], key[10]]),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcnt_rebuilds_across_the_16_bit_rollover_and_rejects_replays() {
        assert_eq!(rebuild_fcnt(None, 7), Counter::Next(7));
        assert_eq!(rebuild_fcnt(Some(7), 8), Counter::Next(8));
        assert_eq!(rebuild_fcnt(Some(0xffff), 0x0000), Counter::Next(0x1_0000));
        assert_eq!(
            rebuild_fcnt(Some(0x1_fff0), 0x0005),
            Counter::Next(0x2_0005)
        );
        assert_eq!(rebuild_fcnt(Some(8), 8), Counter::Repeat(8));
        assert_eq!(
            rebuild_fcnt(Some(8), 7),
            Counter::Replay { fcnt: 7, last: 8 }
        );
        assert_eq!(
            rebuild_fcnt(Some(8), 8 + 16_384),
            Counter::Replay {
                fcnt: 16_392,
                last: 8
            }
        );
        assert_eq!(rebuild_fcnt(Some(8), 8 + 16_383), Counter::Next(16_391));
    }

    #[test]
    fn a_session_round_trips_through_its_stored_form() {
        let s = Session {
            dev_addr: 0x2601_1b01,
            nwk_skey: Key([1; 16]),
            app_skey: Key([2; 16]),
            fcnt_up: Some(70_000),
            fcnt_down: 3,
        };
        assert_eq!(Session::decode(&s.encode()), Some(s.clone()));
        let fresh = Session { fcnt_up: None, ..s };
        assert_eq!(Session::decode(&fresh.encode()), Some(fresh));
        assert_eq!(Session::decode(&[9; 46]), None);
        let eui = Eui64([1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parse_key(&session_key(eui)), Some(StoredKey::Session(eui)));
        assert_eq!(
            parse_key(&nonce_key(eui, 0xbeef)),
            Some(StoredKey::Nonce(eui, 0xbeef))
        );
    }
}
