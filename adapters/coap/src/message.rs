//! Message-format rules of RFC 7252 §3 that coap-lite's parser lets through,
//! checked on the datagram as it arrived.

/// Whether the datagram has a payload marker (`0xFF`) with nothing after
/// it, which §3 says "MUST be processed as a message format error"
/// (coap-lite reads it as an empty payload). `false` for anything it cannot
/// walk: the parser judges those.
pub fn marker_without_payload(datagram: &[u8]) -> bool {
    empty_payload(datagram).unwrap_or(false)
}

fn empty_payload(datagram: &[u8]) -> Option<bool> {
    let token_length = usize::from(datagram.first()? & 0x0f);
    let mut at = 4 + token_length;
    while at < datagram.len() {
        let byte = datagram[at];
        if byte == 0xff {
            return Some(at + 1 == datagram.len());
        }
        at += 1;
        // Option delta, then length: each a nibble, 13 and 14 mean one or
        // two more bytes follow (§3.1); 15 is reserved.
        at += extension(byte >> 4)?;
        let length = match byte & 0x0f {
            13 => usize::from(*datagram.get(at)?) + 13,
            14 => {
                usize::from(u16::from_be_bytes([
                    *datagram.get(at)?,
                    *datagram.get(at + 1)?,
                ])) + 269
            }
            15 => return None,
            n => usize::from(n),
        };
        at += extension(byte & 0x0f)? + length;
    }
    Some(false)
}

/// How many bytes extend a delta or length nibble.
fn extension(nibble: u8) -> Option<usize> {
    match nibble {
        13 => Some(1),
        14 => Some(2),
        15 => None,
        _ => Some(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(datagram: &[u8], expected: bool) {
        assert_eq!(
            marker_without_payload(datagram),
            expected,
            "{datagram:02x?}"
        );
    }

    #[test]
    fn rfc7252_3_a_marker_must_be_followed_by_a_payload() {
        // v1 CON TKL 1, POST, MID 1; token; Uri-Path "r"; marker; no payload.
        check(&[0x41, 0x02, 0, 1, 7, 0xb1, b'r', 0xff], true);
        // The same with a payload.
        check(&[0x41, 0x02, 0, 1, 7, 0xb1, b'r', 0xff, b'1'], false);
        // No marker, no payload.
        check(&[0x41, 0x02, 0, 1, 7, 0xb1, b'r'], false);
        // An option value ending in 0xff is not a marker.
        check(&[0x41, 0x02, 0, 1, 7, 0xb1, 0xff], false);
        // A token of 0xff is not a marker.
        check(&[0x41, 0x02, 0, 1, 0xff], false);
        // Extended delta (13 + 40 = option 65 after 12) and length (13 + 2 = 15 bytes).
        let mut long = vec![0x40, 0x02, 0, 1, 0xdd, 40, 2];
        long.extend([0xff; 15]);
        check(&long, false);
        long.push(0xff);
        check(&long, true);
        // Extended length of two bytes (269 + 1 = 270 bytes).
        let mut longer = vec![0x40, 0x02, 0, 1, 0x0e, 0, 1];
        longer.extend([b'x'; 270]);
        longer.push(0xff);
        check(&longer, true);
        // Reserved nibbles and truncation: left to the parser.
        check(&[0x40, 0x02, 0, 1, 0xf0], false);
        check(&[0x40, 0x02, 0, 1, 0x0d], false);
        check(&[], false);
    }
}
