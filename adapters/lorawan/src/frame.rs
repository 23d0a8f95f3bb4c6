//! Data frames (LoRaWAN 1.0.x §4): an uplink checked and opened with the
//! session (32-bit counter rebuilt, MIC with the NwkSKey, FRMPayload
//! decrypted with the AppSKey, FPort 0 with the NwkSKey), and a downlink
//! built and signed. The lorawan crate does the parsing and the crypto.

use crate::keys::Key;
use crate::session::{Counter, Session, rebuild_fcnt};
use lorawan::creator::DataPayloadCreator;
use lorawan::keys::{AES128, AppSKey, NewSKey};
use lorawan::maccommands::SerializableMacCommand;
use lorawan::parser::{DataHeader, DataPayload, FRMPayload, PhyPayload, parse};

/// What kind of frame a PHYPayload is, from its MHDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A JoinRequest.
    JoinRequest,
    /// A data uplink, confirmed or not.
    DataUp,
    /// Anything a device does not send up (downlinks, rejoin, proprietary).
    Other,
}

/// The kind of `phy`, from its first byte (MType in bits 7-5, major 0).
pub fn kind(phy: &[u8]) -> Kind {
    match phy.first().map(|b| (b >> 5, b & 0x03)) {
        Some((0b000, 0)) => Kind::JoinRequest,
        Some((0b010 | 0b100, 0)) => Kind::DataUp,
        _ => Kind::Other,
    }
}

/// The DevAddr and 16-bit counter of a data uplink, without checking it.
pub fn header(phy: &[u8]) -> Option<(u32, u16)> {
    if phy.len() < 12 {
        return None;
    }
    let addr = u32::from_le_bytes(phy.get(1..5)?.try_into().ok()?);
    let fcnt = u16::from_le_bytes(phy.get(6..8)?.try_into().ok()?);
    Some((addr, fcnt))
}

/// A data uplink that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uplink {
    /// The full 32-bit counter.
    pub fcnt: u32,
    /// Whether it must be acknowledged.
    pub confirmed: bool,
    /// FPort, if there is an FRMPayload.
    pub f_port: Option<u8>,
    /// The decrypted application payload (FPort 1-255).
    pub payload: Vec<u8>,
    /// MAC commands: FOpts, or the decrypted FRMPayload on FPort 0.
    pub mac: Vec<u8>,
    /// The device acknowledges the last confirmed downlink.
    pub ack: bool,
    /// Whether this counter was already accepted (a retransmission).
    pub repeat: bool,
}

/// Why a data uplink was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// It does not parse as a data frame.
    #[error("malformed data frame")]
    Malformed,
    /// The MIC does not match the NwkSKey and the rebuilt counter.
    #[error("wrong MIC")]
    BadMic,
    /// Its counter is not after the last one accepted.
    #[error("frame counter {fcnt} replayed (last accepted {last})")]
    Replay {
        /// 16 bits received.
        fcnt: u16,
        /// Last accepted.
        last: u32,
    },
}

/// Checks and opens a data uplink of `session`.
pub fn open_uplink(phy: &[u8], session: &Session) -> Result<Uplink, FrameError> {
    let (_, wire) = header(phy).ok_or(FrameError::Malformed)?;
    let (fcnt, repeat) = match rebuild_fcnt(session.fcnt_up, wire) {
        Counter::Next(f) => (f, false),
        Counter::Repeat(f) => (f, true),
        Counter::Replay { fcnt, last } => return Err(FrameError::Replay { fcnt, last }),
    };
    let Ok(PhyPayload::Data(DataPayload::Encrypted(enc))) = parse(phy.to_vec()) else {
        return Err(FrameError::Malformed);
    };
    let nwk = AES128(session.nwk_skey.0);
    let app = AES128(session.app_skey.0);
    if !enc.validate_mic(&nwk, fcnt) {
        return Err(FrameError::BadMic);
    }
    let confirmed = enc.is_confirmed();
    let fhdr = enc.fhdr();
    let ack = fhdr.fctrl().ack();
    let fopts_len = usize::from(fhdr.fopts_len());
    let fopts = phy
        .get(8..8 + fopts_len)
        .ok_or(FrameError::Malformed)?
        .to_vec();
    let f_port = enc.f_port();
    let dec = enc
        .decrypt(Some(&nwk), Some(&app), fcnt)
        .map_err(|_| FrameError::Malformed)?;
    let (payload, mac) = match dec.frm_payload() {
        FRMPayload::Data(d) => (d.to_vec(), fopts),
        FRMPayload::MACCommands(m) => (Vec::new(), m.data().to_vec()),
        FRMPayload::None => (Vec::new(), fopts),
    };
    Ok(Uplink {
        fcnt,
        confirmed,
        f_port,
        payload,
        mac,
        ack,
        repeat,
    })
}

/// A MAC command as raw CID and payload, for the crate's frame builder.
struct RawCommand<'a>(&'a [u8]);

impl SerializableMacCommand for RawCommand<'_> {
    fn payload_bytes(&self) -> &[u8] {
        &self.0[1..]
    }
    fn cid(&self) -> u8 {
        self.0[0]
    }
    fn payload_len(&self) -> usize {
        self.0.len() - 1
    }
}

/// What a downlink carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DownFrame {
    /// Acknowledges the uplink it answers.
    pub ack: bool,
    /// Must be acknowledged by the device.
    pub confirmed: bool,
    /// FPort and application payload, if any.
    pub data: Option<(u8, Vec<u8>)>,
    /// MAC commands for FOpts, each CID then payload (at most 15 bytes).
    pub mac: Vec<Vec<u8>>,
}

/// Builds and signs a downlink for `session` with counter `fcnt_down`.
pub fn build_downlink(session: &Session, fcnt_down: u32, frame: &DownFrame) -> Option<Vec<u8>> {
    let mut creator = DataPayloadCreator::new();
    let mut fctrl = lorawan::parser::FCtrl::new(0, false);
    if frame.ack {
        fctrl.set_ack();
    }
    creator
        .set_uplink(false)
        .set_confirmed(frame.confirmed)
        .set_dev_addr(&session.dev_addr.to_le_bytes())
        .set_fctrl(&fctrl)
        .set_fcnt(fcnt_down);
    let payload: &[u8] = match &frame.data {
        Some((port, data)) => {
            creator.set_f_port(*port);
            data
        }
        None => &[],
    };
    let raw: Vec<RawCommand> = frame
        .mac
        .iter()
        .filter(|c| !c.is_empty())
        .map(|c| RawCommand(c))
        .collect();
    let cmds: Vec<&dyn SerializableMacCommand> = raw
        .iter()
        .map(|c| c as &dyn SerializableMacCommand)
        .collect();
    let nwk = NewSKey::from(session.nwk_skey.0);
    let app = AppSKey::from(session.app_skey.0);
    creator
        .build(payload, &cmds, &nwk, &app)
        .ok()
        .map(<[u8]>::to_vec)
}

/// For tests and the demo: a device's data uplink, built with the crate.
pub fn build_uplink(
    dev_addr: u32,
    nwk_skey: &Key,
    app_skey: &Key,
    fcnt: u32,
    confirmed: bool,
    f_port: u8,
    payload: &[u8],
) -> Option<Vec<u8>> {
    let mut creator = DataPayloadCreator::new();
    creator
        .set_uplink(true)
        .set_confirmed(confirmed)
        .set_dev_addr(&dev_addr.to_le_bytes())
        .set_fcnt(fcnt)
        .set_f_port(f_port);
    let nwk = NewSKey::from(nwk_skey.0);
    let app = AppSKey::from(app_skey.0);
    if f_port == 0 {
        // On FPort 0 the payload is one MAC command, encrypted with the NwkSKey.
        let command = RawCommand(payload);
        let cmds: [&dyn SerializableMacCommand; 1] = [&command];
        return creator
            .build(&[], &cmds, &nwk, &app)
            .ok()
            .map(<[u8]>::to_vec);
    }
    creator
        .build(payload, &[], &nwk, &app)
        .ok()
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session {
            dev_addr: 0x0102_0304,
            nwk_skey: Key([2; 16]),
            app_skey: Key([1; 16]),
            fcnt_up: None,
            fcnt_down: 0,
        }
    }

    /// The lorawan crate's own documented vector: an unconfirmed uplink
    /// from DevAddr 01020304, FCnt 1, FPort 1, payload "hello" under
    /// AppSKey 01..01 and NwkSKey 02..02.
    /// lora-packet's README vector: an unconfirmed uplink from DevAddr
    /// 49BE7DF1, FCnt 2, FPort 1, payload "test" under AppSKey
    /// EC925802AE430CA77FD3DD73CB2CC588 and NwkSKey 44024241ED4CE9A68C6A8BC055233FD3.
    #[test]
    fn known_answer_uplink_from_the_lora_packet_readme() {
        let phy = [
            0x40, // MHDR: unconfirmed data up
            0xf1, 0x7d, 0xbe, 0x49, // DevAddr 49be7df1, little-endian
            0x00, // FCtrl: no FOpts
            0x02, 0x00, // FCnt 2
            0x01, // FPort 1
            0x95, 0x43, 0x78, 0x76, // FRMPayload, encrypted
            0x2b, 0x11, 0xff, 0x0d, // MIC
        ];
        let session = Session {
            dev_addr: 0x49be_7df1,
            nwk_skey: Key([
                0x44, 0x02, 0x42, 0x41, 0xed, 0x4c, 0xe9, 0xa6, 0x8c, 0x6a, 0x8b, 0xc0, 0x55, 0x23,
                0x3f, 0xd3,
            ]),
            app_skey: Key([
                0xec, 0x92, 0x58, 0x02, 0xae, 0x43, 0x0c, 0xa7, 0x7f, 0xd3, 0xdd, 0x73, 0xcb, 0x2c,
                0xc5, 0x88,
            ]),
            fcnt_up: Some(1),
            fcnt_down: 0,
        };
        assert_eq!(header(&phy), Some((0x49be_7df1, 2)));
        let up = open_uplink(&phy, &session).expect("opens");
        assert_eq!((up.fcnt, up.f_port, up.confirmed), (2, Some(1), false));
        assert_eq!(up.payload, b"test");
        let mut bad = phy;
        bad[16] ^= 0x80;
        assert_eq!(open_uplink(&bad, &session), Err(FrameError::BadMic));
    }

    #[test]
    fn known_answer_uplink_from_the_lorawan_crate_docs() {
        let phy = [
            0x40, 0x04, 0x03, 0x02, 0x01, 0x80, 0x01, 0x00, 0x01, 0xa6, 0x94, 0x64, 0x26, 0x15,
            0xd6, 0xc3, 0xb5, 0x82,
        ];
        let up = open_uplink(&phy, &session()).expect("opens");
        assert_eq!((up.fcnt, up.f_port, up.confirmed), (1, Some(1), false));
        assert_eq!(up.payload, b"hello");
        let mut bad = phy;
        bad[17] ^= 1;
        assert_eq!(open_uplink(&bad, &session()), Err(FrameError::BadMic));
    }

    #[test]
    fn counters_are_rebuilt_replays_refused_and_fport_0_opened_with_the_nwkskey() {
        let s = session();
        let mut later = s.clone();
        later.fcnt_up = Some(0x1_fffe);
        let phy = build_uplink(
            s.dev_addr,
            &s.nwk_skey,
            &s.app_skey,
            0x2_0003,
            true,
            0,
            &[0x02],
        )
        .expect("built");
        let up = open_uplink(&phy, &later).expect("rebuilt across the rollover");
        assert_eq!(
            (up.fcnt, up.confirmed, up.mac.clone()),
            (0x2_0003, true, vec![0x02])
        );
        later.fcnt_up = Some(0x2_0004);
        assert_eq!(
            open_uplink(&phy, &later),
            Err(FrameError::Replay {
                fcnt: 3,
                last: 0x2_0004
            })
        );
        assert_eq!(open_uplink(&phy[..10], &s), Err(FrameError::Malformed));
    }

    #[test]
    fn a_downlink_acknowledges_and_carries_fopts() {
        let s = session();
        let frame = DownFrame {
            ack: true,
            mac: vec![vec![0x02, 12, 1]],
            data: Some((5, b"on".to_vec())),
            ..DownFrame::default()
        };
        let phy = build_downlink(&s, 7, &frame).expect("built");
        assert_eq!(phy[0] >> 5, 0b011, "unconfirmed data down");
        assert_eq!(phy[5], 0x20 | 3, "ACK and FOptsLen 3");
        assert_eq!(u16::from_le_bytes([phy[6], phy[7]]), 7);
        assert_eq!(&phy[8..11], &[0x02, 12, 1]);
    }
}
