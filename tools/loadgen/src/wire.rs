//! The protocols the generator speaks, behind one trait: what a device's
//! request looks like on the wire and how an answer is read. CoAP (a JSON
//! POST answered `2.04` once durable) and GWMP (a LoRaWAN packet forwarder's
//! PUSH_DATA carrying an ABP device's uplink, answered by PUSH_ACK with the
//! same two token bytes).

use crate::reading::{write_body, write_lpp};
use coap_lite::RequestType;
use lorawan::creator::DataPayloadCreator;
use lorawan::keys::{AppSKey, NewSKey};
use sluice_coap::client::{JSON, Request};
use sluice_lorawan::gwmp;

/// Protocols the generator can speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// CoAP (RFC 7252): POST of a JSON reading to `/r/<device>`.
    Coap,
    /// GWMP v2 (Semtech UDP packet forwarder): PUSH_DATA with one `rxpk`,
    /// an unconfirmed uplink of an ABP device ([`AbpDevice::of`]).
    Gwmp,
}

impl Protocol {
    /// The wire encoding for `devices` devices: CoAP devices named
    /// `<prefix><n>`, GWMP devices [`AbpDevice::of`]`(first + n)`.
    pub fn wire(self, prefix: &str, first: u32, devices: usize) -> anyhow::Result<Box<dyn Wire>> {
        match self {
            Protocol::Coap => Ok(Box::new(Coap::new(prefix, devices)?)),
            Protocol::Gwmp => Ok(Box::new(Gwmp::new(first, devices)?)),
        }
    }
}

/// How an answer came back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted. CoAP `2.04`: the reading is durable. GWMP PUSH_ACK: the
    /// datagram was received, nothing more (not durability).
    Accepted(u64),
    /// Refused or reset (CoAP: another code, or RST); the code byte.
    Refused(u64, u8),
}

/// One protocol's requests and answers, without I/O.
pub trait Wire {
    /// Writes into `out` the body of a device's reading number `seq` sent at
    /// `sent_us` (Unix µs); by default the JSON of [`write_body`].
    fn body(&self, out: &mut Vec<u8>, seq: u64, sent_us: u64) {
        write_body(out, seq, sent_us);
    }

    /// Writes into `out` the request of `device`'s reading number `seq`
    /// carrying `body`, tagged with `tag` (so its answer can be matched),
    /// confirmable or not; returns its length (0: it did not fit).
    fn request(
        &self,
        device: usize,
        seq: u64,
        tag: u64,
        confirmable: bool,
        body: &[u8],
        out: &mut [u8],
    ) -> usize;

    /// Reads an answer to a request: its tag and outcome, or `None` for
    /// anything else (an empty ACK of a separate response, say).
    fn answer(&self, datagram: &[u8]) -> Option<Answer>;

    /// How many low bits of a tag come back in an answer (64: all of it).
    fn tag_bits(&self) -> u32 {
        64
    }
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
        _seq: u64,
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

/// One simulated ABP device of the GWMP generator; everything derived from
/// its index, so the orchestrator writes the same devices into the
/// gateway's `[lorawan]` config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbpDevice {
    /// DevEUI: `5e` then the index (the device id upstream, as 16 hex digits).
    pub dev_eui: [u8; 8],
    /// DevAddr: the index + 1 (NwkID 0, as `net_id = "000000"` gives).
    pub dev_addr: u32,
    /// NwkSKey: `4e` repeated, the index in the last four bytes.
    pub nwk_skey: [u8; 16],
    /// AppSKey: `a5` repeated, the index in the last four bytes.
    pub app_skey: [u8; 16],
}

impl AbpDevice {
    /// Device number `index` (below 2^25 - 1, the DevAddrs of NwkID 0).
    pub fn of(index: u32) -> AbpDevice {
        let key = |fill: u8| {
            let mut key = [fill; 16];
            key[12..].copy_from_slice(&index.to_be_bytes());
            key
        };
        let mut dev_eui = [0u8; 8];
        dev_eui[0] = 0x5e;
        dev_eui[4..].copy_from_slice(&index.to_be_bytes());
        AbpDevice {
            dev_eui,
            dev_addr: index + 1,
            nwk_skey: key(0x4e),
            app_skey: key(0xa5),
        }
    }

    /// Its `[[lorawan.devices]]` entry, in profile `profile`.
    pub fn config(&self, profile: &str) -> String {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!(
            "[[lorawan.devices]]\ndev_eui = \"{}\"\nactivation = \"abp\"\nprofile = \"{profile}\"\ndev_addr = \"{:08x}\"\nnwk_skey = \"{}\"\napp_skey = \"{}\"\n",
            hex(&self.dev_eui),
            self.dev_addr,
            hex(&self.nwk_skey),
            hex(&self.app_skey)
        )
    }
}

/// GWMP requests: each a PUSH_DATA (token = the tag's low 16 bits) from one
/// gateway, one `rxpk` holding an unconfirmed data uplink, FPort 1, FCnt =
/// the device's sequence number, the body (Cayenne LPP, [`write_lpp`])
/// encrypted with the AppSKey and signed with the NwkSKey. The answer is
/// PUSH_ACK, which the gateway sends on receipt, before any check or
/// commit: it says the datagram arrived, not that the reading is durable,
/// so what counts is what arrives upstream.
pub struct Gwmp {
    devices: Vec<AbpDevice>,
}

/// The simulated packet forwarder's gateway EUI.
pub const GATEWAY_EUI: [u8; 8] = [0x5e, 0x1c, 0xe0, 0, 0, 0, 0, 1];

impl Gwmp {
    /// Devices [`AbpDevice::of`]`(first)` … `(first + devices - 1)`.
    pub fn new(first: u32, devices: usize) -> anyhow::Result<Gwmp> {
        let count = u32::try_from(devices)?;
        let last = first
            .checked_add(count)
            .filter(|&end| end < (1 << 25) - 1)
            .ok_or_else(|| anyhow::anyhow!("device numbers {first}+{devices} out of range"))?;
        Ok(Gwmp {
            devices: (first..last).map(AbpDevice::of).collect(),
        })
    }
}

impl Wire for Gwmp {
    fn body(&self, out: &mut Vec<u8>, seq: u64, sent_us: u64) {
        write_lpp(out, seq, sent_us);
    }

    fn request(
        &self,
        device: usize,
        seq: u64,
        tag: u64,
        _confirmable: bool,
        body: &[u8],
        out: &mut [u8],
    ) -> usize {
        let d = &self.devices[device % self.devices.len()];
        let mut creator = DataPayloadCreator::new();
        creator
            .set_uplink(true)
            .set_confirmed(false)
            .set_dev_addr(&d.dev_addr.to_le_bytes())
            .set_fcnt(seq as u32)
            .set_f_port(1);
        let Ok(phy) = creator.build(
            body,
            &[],
            &NewSKey::from(d.nwk_skey),
            &AppSKey::from(d.app_skey),
        ) else {
            return 0;
        };
        // tmst: the concentrator's µs counter; any value will do here.
        let json = gwmp::rxpk_json(phy, seq as u32, 868.1, "SF7BW125", -60, 9.5);
        let datagram = gwmp::push_data((tag as u16).to_be_bytes(), GATEWAY_EUI, &json);
        if datagram.len() > out.len() {
            return 0;
        }
        out[..datagram.len()].copy_from_slice(&datagram);
        datagram.len()
    }

    fn answer(&self, datagram: &[u8]) -> Option<Answer> {
        match datagram {
            [gwmp::VERSION, t0, t1, gwmp::ident::PUSH_ACK, ..] => {
                Some(Answer::Accepted(u64::from(u16::from_be_bytes([*t0, *t1]))))
            }
            _ => None,
        }
    }

    fn tag_bits(&self) -> u32 {
        16
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
            1,
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
    fn gwmp_uplinks_check_with_the_devices_keys_and_count_up() {
        use lorawan::keys::AES128;
        use lorawan::parser::{DataHeader, DataPayload, FRMPayload, PhyPayload, parse};
        let wire = Gwmp::new(40, 3).expect("wire");
        let device = AbpDevice::of(42);
        let mut body = Vec::new();
        wire.body(&mut body, 7, 1_764_000_000_123_456);
        let mut out = [0u8; 1500];
        let n = wire.request(2, 7, 0x1_2345, false, &body, &mut out);
        assert!(n > 12);
        assert_eq!(out[..4], [2, 0x23, 0x45, gwmp::ident::PUSH_DATA]);
        assert_eq!(out[4..12], GATEWAY_EUI);
        let push = match gwmp::parse(&out[..n]).expect("gwmp") {
            gwmp::Upstream::PushData { push, .. } => push,
            other => panic!("not PUSH_DATA: {other:?}"),
        };
        let phy = push.rxpk[0].payload().expect("base64");
        let Ok(PhyPayload::Data(DataPayload::Encrypted(frame))) = parse(phy) else {
            panic!("not a data uplink");
        };
        assert!(frame.is_uplink() && !frame.is_confirmed());
        assert_eq!(frame.fhdr().fcnt(), 7);
        assert_eq!(frame.f_port(), Some(1));
        assert_eq!(
            frame.fhdr().dev_addr().as_ref(),
            &device.dev_addr.to_le_bytes()
        );
        let (nwk, app) = (AES128(device.nwk_skey), AES128(device.app_skey));
        assert!(frame.validate_mic(&nwk, 7));
        let plain = frame
            .decrypt(Some(&nwk), Some(&app), 7)
            .expect("decryption");
        let FRMPayload::Data(data) = plain.frm_payload() else {
            panic!("no data");
        };
        assert_eq!(data, &body[..]);
        // PUSH_ACK carries the token back: the tag's low 16 bits.
        assert_eq!(
            wire.answer(&[2, 0x23, 0x45, gwmp::ident::PUSH_ACK]),
            Some(Answer::Accepted(0x2345))
        );
        assert_eq!(wire.answer(&[2, 0x23, 0x45, gwmp::ident::PULL_ACK]), None);
        assert_eq!(wire.tag_bits(), 16);
    }

    #[test]
    fn abp_devices_differ_and_their_config_names_them() {
        let (a, b) = (AbpDevice::of(0), AbpDevice::of(1));
        assert_ne!(
            (a.dev_addr, a.nwk_skey, a.dev_eui),
            (b.dev_addr, b.nwk_skey, b.dev_eui)
        );
        let text = b.config("bench");
        assert!(text.contains(r#"dev_eui = "5e00000000000001""#), "{text}");
        assert!(text.contains(r#"dev_addr = "00000002""#), "{text}");
        assert!(
            text.contains(r#"app_skey = "a5a5a5a5a5a5a5a5a5a5a5a500000001""#),
            "{text}"
        );
        assert!(Gwmp::new(u32::MAX, 2).is_err());
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
