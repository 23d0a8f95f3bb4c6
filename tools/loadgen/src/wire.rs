//! The protocols the generator speaks, behind one trait: what a device's
//! request looks like on the wire and how an answer is read. CoAP is the
//! only one so far; GWMP (LoRaWAN packet forwarders: PUSH_DATA answered by
//! PUSH_ACK with the same two token bytes) is the next variant of
//! [`Protocol`], with its own [`Wire`], and the generator, sink and
//! orchestrator stay as they are.

use coap_lite::RequestType;
use sluice_coap::client::{JSON, Request};

/// Protocols the generator can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// CoAP (RFC 7252): POST of a JSON reading to `/r/<device>`.
    Coap,
}

impl Protocol {
    /// The wire encoding for `devices` devices named `<prefix><n>`.
    pub fn wire(self, prefix: &str, devices: usize) -> anyhow::Result<Box<dyn Wire>> {
        match self {
            Protocol::Coap => Ok(Box::new(Coap::new(prefix, devices)?)),
        }
    }
}

/// How an answer came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted (CoAP `2.04`): the reading is durable.
    Accepted(u64),
    /// Refused or reset (CoAP: another code, or RST); the code byte.
    Refused(u64, u8),
}

/// One protocol's requests and answers, without I/O.
pub trait Wire {
    /// Writes into `out` the request of `device` carrying `body`, tagged
    /// with `tag` (so its answer can be matched), confirmable or not; returns
    /// its length.
    fn request(
        &self,
        device: usize,
        tag: u64,
        confirmable: bool,
        body: &[u8],
        out: &mut [u8],
    ) -> usize;

    /// Reads an answer to a request: its tag and outcome, or `None` for
    /// anything else (an empty ACK of a separate response, say).
    fn answer(&self, datagram: &[u8]) -> Option<Answer>;
}

/// CoAP requests: each device's header and options encoded once by the
/// project's one request builder (`sluice_coap::client::Request`), then the
/// message ID, token and payload put in per request.
pub struct Coap {
    /// Per device: the message up to and including the payload marker.
    prefixes: Vec<Vec<u8>>,
}

/// Token length: the tag, 8 bytes.
const TOKEN_LEN: usize = 8;
/// Code of `2.04 Changed`.
const CHANGED: u8 = (2 << 5) | 4;

impl Coap {
    /// Prefixes for devices `<prefix>0` … `<prefix>{devices - 1}`.
    pub fn new(prefix: &str, devices: usize) -> anyhow::Result<Coap> {
        let prefixes = (0..devices)
            .map(|n| {
                let request =
                    Request::new(RequestType::Post, ["r".to_owned(), format!("{prefix}{n}")])
                        .with_payload(JSON, b"x".to_vec());
                let mut bytes = request.encode(0, &[0; TOKEN_LEN])?;
                bytes.pop(); // the placeholder payload; the 0xFF marker stays
                Ok(bytes)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Coap { prefixes })
    }
}

impl Wire for Coap {
    fn request(
        &self,
        device: usize,
        tag: u64,
        confirmable: bool,
        body: &[u8],
        out: &mut [u8],
    ) -> usize {
        let prefix = &self.prefixes[device % self.prefixes.len()];
        let len = prefix.len() + body.len();
        if len > out.len() {
            return 0;
        }
        out[..prefix.len()].copy_from_slice(prefix);
        // RFC 7252 §3: Ver 1, T (0 CON, 1 NON), TKL; then Message ID and Token.
        out[0] = 0x40 | (u8::from(!confirmable) << 4) | TOKEN_LEN as u8;
        out[2..4].copy_from_slice(&(tag as u16).to_be_bytes());
        out[4..4 + TOKEN_LEN].copy_from_slice(&tag.to_be_bytes());
        out[prefix.len()..len].copy_from_slice(body);
        len
    }

    fn answer(&self, datagram: &[u8]) -> Option<Answer> {
        let header = Header::parse(datagram)?;
        let tag = u64::from_be_bytes(header.token.try_into().ok()?);
        match (header.kind, header.code) {
            (_, 0) => None, // empty ACK: a separate response follows
            (3, _) => Some(Answer::Refused(tag, 0)),
            (_, CHANGED) => Some(Answer::Accepted(tag)),
            (_, code) => Some(Answer::Refused(tag, code)),
        }
    }
}

/// The fixed part of a CoAP message (RFC 7252 §3), all a load tool needs to
/// read or answer: the sink answers from it without parsing options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Type: 0 CON, 1 NON, 2 ACK, 3 RST.
    pub kind: u8,
    /// Code byte (class << 5 | detail).
    pub code: u8,
    /// Message ID.
    pub mid: u16,
    /// Token.
    pub token: &'a [u8],
}

impl<'a> Header<'a> {
    /// Reads the header of a version 1 message.
    pub fn parse(datagram: &'a [u8]) -> Option<Header<'a>> {
        let first = *datagram.first()?;
        let tkl = usize::from(first & 0x0f);
        if first >> 6 != 1 || tkl > 8 {
            return None;
        }
        Some(Header {
            kind: (first >> 4) & 3,
            code: *datagram.get(1)?,
            mid: u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]),
            token: datagram.get(4..4 + tkl)?,
        })
    }
}

/// Writes the sink's answer to a request into `out`: a piggybacked ACK
/// `2.04` for a CON, a NON `2.04` for a NON (with message ID `mid_for_non`);
/// returns its length, or `None` if the message deserves no answer.
pub fn changed_answer(request: &Header<'_>, mid_for_non: u16, out: &mut [u8]) -> Option<usize> {
    let (kind, mid) = match request.kind {
        0 => (2u8, request.mid),
        1 => (1u8, mid_for_non),
        _ => return None,
    };
    if request.code == 0 || request.code >> 5 != 0 {
        return None; // an empty message or a response: not a request
    }
    let len = 4 + request.token.len();
    out[0] = 0x40 | (kind << 4) | request.token.len() as u8;
    out[1] = CHANGED;
    out[2..4].copy_from_slice(&mid.to_be_bytes());
    out[4..len].copy_from_slice(request.token);
    Some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use coap_lite::{MessageClass, MessageType, Packet, ResponseType};

    fn request(confirmable: bool) -> Vec<u8> {
        let coap = Coap::new("bench-", 3).expect("wire");
        let mut out = [0u8; 256];
        let n = coap.request(
            2,
            0x0102_0304_0506_0708,
            confirmable,
            br#"{"seq":1}"#,
            &mut out,
        );
        out[..n].to_vec()
    }

    #[test]
    fn requests_decode_as_the_builder_would_write_them() {
        for confirmable in [true, false] {
            let p = Packet::from_bytes(&request(confirmable)).expect("coap");
            let kind = if confirmable {
                MessageType::Confirmable
            } else {
                MessageType::NonConfirmable
            };
            assert_eq!(p.header.get_type(), kind);
            assert_eq!(p.header.code, MessageClass::Request(RequestType::Post));
            assert_eq!(p.header.message_id, 0x0708);
            assert_eq!(p.get_token(), &[1, 2, 3, 4, 5, 6, 7, 8]);
            let path: Vec<_> = p
                .get_option(coap_lite::CoapOption::UriPath)
                .expect("path")
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect();
            assert_eq!(path, ["r", "bench-2"]);
            assert_eq!(p.payload, br#"{"seq":1}"#);
        }
    }

    #[test]
    fn the_sink_answers_con_with_a_piggybacked_ack_and_non_with_non() {
        let con = request(true);
        let mut out = [0u8; 64];
        let n = changed_answer(&Header::parse(&con).expect("header"), 9, &mut out).expect("answer");
        let p = Packet::from_bytes(&out[..n]).expect("coap");
        assert_eq!(p.header.get_type(), MessageType::Acknowledgement);
        assert_eq!(p.header.code, MessageClass::Response(ResponseType::Changed));
        assert_eq!(p.header.message_id, 0x0708);
        let coap = Coap::new("bench-", 3).expect("wire");
        assert_eq!(
            coap.answer(&out[..n]),
            Some(Answer::Accepted(0x0102_0304_0506_0708))
        );

        let non = request(false);
        let n = changed_answer(&Header::parse(&non).expect("header"), 9, &mut out).expect("answer");
        let p = Packet::from_bytes(&out[..n]).expect("coap");
        assert_eq!(p.header.get_type(), MessageType::NonConfirmable);
        assert_eq!(p.header.message_id, 9);
    }

    #[test]
    fn answers_other_than_changed_are_refusals() {
        let coap = Coap::new("d", 1).expect("wire");
        // ACK 5.03 with an 8-byte token.
        let mut busy = vec![0x68, (5 << 5) | 3, 0, 1];
        busy.extend_from_slice(&7u64.to_be_bytes());
        assert_eq!(coap.answer(&busy), Some(Answer::Refused(7, (5 << 5) | 3)));
        // An empty ACK (separate response follows) has no token: not an answer yet.
        assert_eq!(coap.answer(&[0x60, 0, 0, 1]), None);
        // Not CoAP version 1.
        assert_eq!(
            coap.answer(&[0x28, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7]),
            None
        );
    }

    #[test]
    fn no_answer_to_empty_messages_or_responses() {
        let mut out = [0u8; 16];
        let ping = Header::parse(&[0x40, 0, 0, 1]).expect("header");
        assert_eq!(changed_answer(&ping, 0, &mut out), None);
        let response = Header::parse(&[0x40, CHANGED, 0, 1]).expect("header");
        assert_eq!(changed_answer(&response, 0, &mut out), None);
    }
}
