//! CoAP options: unsigned-integer values (RFC 7252 §3.2: big-endian, at
//! most four bytes, without leading zeros), shared by the server and the
//! observer; and the server's rules for the options of a request (RFC 7252
//! §5.4 and the table of §5.10): which it recognises, their lengths, which
//! may repeat. coap-lite keeps every option it parses (unknown numbers
//! too) and checks no length, so the rules are applied here.

use coap_lite::{CoapOption, Packet};
use std::collections::LinkedList;

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

/// What the server does with an option in a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Read and acted on.
    Read,
    /// Recognised and deliberately without effect (a critical one is safe to
    /// ignore: e.g. Uri-Host, since every host name is this gateway).
    Ignored,
    /// Critical and not implemented: treated as unrecognised (`4.02`).
    Refused,
    /// A proxy option: `5.05 Proxying Not Supported`.
    Proxy,
}

/// One row of RFC 7252 §5.10 (and RFC 7959 §2.1, RFC 7967, RFC 8613).
struct Rule {
    number: u16,
    name: &'static str,
    repeatable: bool,
    min: usize,
    max: usize,
    what: Use,
}

const fn rule(
    number: u16,
    name: &'static str,
    repeatable: bool,
    min: usize,
    max: usize,
    what: Use,
) -> Rule {
    Rule {
        number,
        name,
        repeatable,
        min,
        max,
        what,
    }
}

/// Every option the server recognises in a request. Critical options not
/// listed (odd numbers) get `4.02`; elective ones (even) are ignored.
const RULES: &[Rule] = &[
    // Conditional requests make no sense for appending readings: refused.
    rule(1, "If-Match", true, 0, 8, Use::Refused),
    rule(3, "Uri-Host", false, 1, 255, Use::Ignored),
    rule(4, "ETag", true, 1, 8, Use::Ignored),
    rule(5, "If-None-Match", false, 0, 0, Use::Refused),
    rule(6, "Observe", false, 0, 3, Use::Ignored),
    rule(7, "Uri-Port", false, 0, 2, Use::Ignored),
    rule(8, "Location-Path", true, 0, 255, Use::Ignored),
    // No OSCORE here: RFC 8613 §8.2 treats it as an unrecognised option.
    rule(9, "OSCORE", false, 0, 255, Use::Refused),
    rule(11, "Uri-Path", true, 0, 255, Use::Read),
    rule(12, "Content-Format", false, 0, 2, Use::Read),
    rule(14, "Max-Age", false, 0, 4, Use::Ignored),
    // A query would select something the readings resources do not have:
    // refusing it is better than dropping what it says. Discovery takes it
    // (see `check_request`).
    rule(15, "Uri-Query", true, 0, 255, Use::Refused),
    rule(17, "Accept", false, 0, 2, Use::Ignored),
    rule(20, "Location-Query", true, 0, 255, Use::Ignored),
    // Answers are small and sent whole, which RFC 7959 §2.4 allows.
    rule(23, "Block2", false, 0, 3, Use::Ignored),
    rule(27, "Block1", false, 0, 3, Use::Read),
    rule(28, "Size2", false, 0, 4, Use::Ignored),
    rule(35, "Proxy-Uri", false, 1, 1034, Use::Proxy),
    rule(39, "Proxy-Scheme", false, 1, 255, Use::Proxy),
    rule(60, "Size1", false, 0, 4, Use::Read),
    rule(258, "No-Response", false, 0, 1, Use::Ignored),
];

/// Why an option makes the request unacceptable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionError {
    /// A critical option that is unknown, not implemented, of a length out
    /// of range, or repeated though not repeatable (RFC 7252 §5.4.1, §5.4.3,
    /// §5.4.5): `4.02 Bad Option` for a confirmable request, a reset for a
    /// non-confirmable one.
    BadOption {
        /// The option number.
        number: u16,
        /// What is wrong, for the diagnostic payload.
        why: String,
    },
    /// Proxy-Uri or Proxy-Scheme: `5.05 Proxying Not Supported`.
    Proxy {
        /// The option number.
        number: u16,
    },
}

impl std::fmt::Display for OptionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OptionError::BadOption { why, .. } => f.write_str(why),
            OptionError::Proxy { number } => {
                write!(f, "option {number} ({}): not a proxy", name_of(*number))
            }
        }
    }
}

fn name_of(number: u16) -> &'static str {
    RULES
        .iter()
        .find(|r| r.number == number)
        .map_or("unknown", |r| r.name)
}

/// Whether an option number is critical (RFC 7252 §5.4.6: odd numbers).
pub fn is_critical(number: u16) -> bool {
    number & 1 == 1
}

/// Checks a request's options against [`RULES`]. An elective option that
/// must be ignored (unknown, length out of range, or a repetition of a
/// non-repeatable one) is removed from the packet, so nothing later reads
/// it; the numbers removed are returned. A critical one fails the request.
/// `discovery`: the request is for `/.well-known/core`, where Uri-Query
/// is a filter (RFC 6690 §4.1) that may be ignored: the full list is a
/// superset of any filtered one.
pub fn check_request(packet: &mut Packet, discovery: bool) -> Result<Vec<u16>, OptionError> {
    let mut ignored = Vec::new();
    let mut trimmed: Vec<(u16, LinkedList<Vec<u8>>)> = Vec::new();
    for (&number, values) in packet.options() {
        if values.is_empty() {
            continue;
        }
        let critical = is_critical(number);
        let problem = match RULES.iter().find(|r| r.number == number) {
            None => Some(format!("option {number} is not recognised")),
            Some(rule) => {
                let bad_length = values
                    .iter()
                    .map(Vec::len)
                    .find(|len| !(rule.min..=rule.max).contains(len));
                if let Some(len) = bad_length {
                    Some(format!(
                        "option {number} ({}): length {len} is out of range {}-{}",
                        rule.name, rule.min, rule.max
                    ))
                } else if !rule.repeatable && values.len() > 1 {
                    if !critical {
                        // Only the repetitions are ignored (RFC 7252 §5.4.5).
                        let first = values.iter().take(1).cloned().collect();
                        trimmed.push((number, first));
                        ignored.push(number);
                        continue;
                    }
                    Some(format!("option {number} ({}) is repeated", rule.name))
                } else {
                    match rule.what {
                        Use::Read | Use::Ignored => None,
                        Use::Refused if discovery && number == 15 => None,
                        Use::Refused => {
                            Some(format!("option {number} ({}) is not supported", rule.name))
                        }
                        Use::Proxy => return Err(OptionError::Proxy { number }),
                    }
                }
            }
        };
        match problem {
            None => {}
            Some(why) if critical => return Err(OptionError::BadOption { number, why }),
            Some(_) => {
                trimmed.push((number, LinkedList::new()));
                ignored.push(number);
            }
        }
    }
    for (number, values) in trimmed {
        packet.set_option(CoapOption::from(number), values);
    }
    Ok(ignored)
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

    /// A request with these (number, value) options.
    fn request(options: &[(u16, &[u8])]) -> Packet {
        let mut p = Packet::new();
        for (number, value) in options {
            p.add_option(CoapOption::from(*number), value.to_vec());
        }
        p
    }

    /// Checks `options`; `Ok` holds the options ignored.
    fn check(options: &[(u16, &[u8])], expected: Result<&[u16], OptionError>) {
        let mut p = request(options);
        assert_eq!(
            check_request(&mut p, false),
            expected.map(<[u16]>::to_vec),
            "{options:?}"
        );
    }

    fn bad(number: u16, why: &str) -> Result<&'static [u16], OptionError> {
        Err(OptionError::BadOption {
            number,
            why: why.to_owned(),
        })
    }

    #[test]
    fn rfc7252_5_4_1_critical_and_elective() {
        check(&[(11, b"r"), (11, b"dev")], Ok(&[]));
        check(&[(2049, b"")], bad(2049, "option 2049 is not recognised"));
        check(
            &[(65001, b"x")],
            bad(65001, "option 65001 is not recognised"),
        );
        check(&[(2048, b"x")], Ok(&[2048]));
        check(&[(292, b"x")], Ok(&[292]));
        check(&[(1, b"")], bad(1, "option 1 (If-Match) is not supported"));
        check(
            &[(5, b"")],
            bad(5, "option 5 (If-None-Match) is not supported"),
        );
        check(&[(9, b"")], bad(9, "option 9 (OSCORE) is not supported"));
        check(
            &[(15, b"a=1")],
            bad(15, "option 15 (Uri-Query) is not supported"),
        );
        check(&[(3, b"gw"), (7, &[0x16, 0x33]), (23, &[0x02])], Ok(&[]));
        check(&[(6, b""), (17, &[50]), (258, &[2]), (4, b"tag")], Ok(&[]));
    }

    #[test]
    fn rfc7252_5_7_proxy_options() {
        check(
            &[(35, b"coap://elsewhere/r/x")],
            Err(OptionError::Proxy { number: 35 }),
        );
        check(&[(39, b"coap")], Err(OptionError::Proxy { number: 39 }));
        check(
            &[(35, b"")],
            bad(35, "option 35 (Proxy-Uri): length 0 is out of range 1-1034"),
        );
    }

    #[test]
    fn rfc7252_5_4_3_lengths_out_of_range() {
        check(
            &[(3, b"")],
            bad(3, "option 3 (Uri-Host): length 0 is out of range 1-255"),
        );
        check(
            &[(11, &[b'a'; 256])],
            bad(11, "option 11 (Uri-Path): length 256 is out of range 0-255"),
        );
        check(
            &[(27, &[0, 0, 0, 0x12])],
            bad(27, "option 27 (Block1): length 4 is out of range 0-3"),
        );
        check(
            &[(7, &[0, 0, 1])],
            bad(7, "option 7 (Uri-Port): length 3 is out of range 0-2"),
        );
        check(
            &[(5, b"x")],
            bad(5, "option 5 (If-None-Match): length 1 is out of range 0-0"),
        );
        // Elective: ignored, and gone from the packet.
        check(&[(12, &[0, 0, 50])], Ok(&[12]));
        check(&[(14, &[1, 2, 3, 4, 5])], Ok(&[14]));
        check(&[(60, &[1, 2, 3, 4, 5])], Ok(&[60]));
        check(&[(4, b"")], Ok(&[4]));
        check(&[(4, b"123456789")], Ok(&[4]));
        check(&[(6, &[1, 2, 3, 4])], Ok(&[6]));
        check(&[(28, &[1, 2, 3, 4, 5])], Ok(&[28]));
        let mut p = request(&[(12, &[0, 0, 50])]);
        assert!(check_request(&mut p, false).is_ok());
        assert_eq!(uint_option(&p, CoapOption::ContentFormat), None);
    }

    #[test]
    fn rfc7252_5_4_5_repeated_non_repeatable() {
        check(
            &[(27, &[0x0a]), (27, &[0x1a])],
            bad(27, "option 27 (Block1) is repeated"),
        );
        check(
            &[(3, b"a"), (3, b"b")],
            bad(3, "option 3 (Uri-Host) is repeated"),
        );
        // Elective: the repetitions are ignored, the first kept.
        let mut p = request(&[(12, &[50]), (12, &[0])]);
        assert_eq!(check_request(&mut p, false), Ok(vec![12]));
        assert_eq!(uint_option(&p, CoapOption::ContentFormat), Some(50));
    }

    #[test]
    fn rfc6690_4_1_discovery_takes_a_query() {
        let mut p = request(&[
            (11, b".well-known"),
            (11, b"core"),
            (15, b"rt=sluice.readings"),
        ]);
        assert_eq!(check_request(&mut p, true), Ok(vec![]));
        assert!(check_request(&mut p, false).is_err());
    }
}
