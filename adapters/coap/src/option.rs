//! Unsigned-integer option values (RFC 7252 §3.2): big-endian, at most four
//! bytes, without leading zeros. Shared by the server and the observer.

use coap_lite::{CoapOption, Packet};

/// The value of an unsigned-integer option, if present and at most 4 bytes.
pub fn uint_option(packet: &Packet, option: CoapOption) -> Option<u64> {
    let raw = packet.get_first_option(option)?;
    (raw.len() <= 4).then(|| raw.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// An unsigned-integer option value, encoded.
pub fn encode_uint(n: u32) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes[skip..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_without_leading_zeros() {
        assert_eq!(encode_uint(0), Vec::<u8>::new());
        assert_eq!(encode_uint(5), vec![5]);
        assert_eq!(encode_uint(300), vec![1, 44]);
        for n in [0, 5, 300, 70_000, u32::MAX] {
            let mut p = Packet::new();
            p.add_option(CoapOption::MaxAge, encode_uint(n));
            assert_eq!(uint_option(&p, CoapOption::MaxAge), Some(u64::from(n)));
        }
        let mut p = Packet::new();
        p.add_option(CoapOption::MaxAge, vec![1, 2, 3, 4, 5]);
        assert_eq!(
            uint_option(&p, CoapOption::MaxAge),
            None,
            "longer than 4 bytes"
        );
    }
}
