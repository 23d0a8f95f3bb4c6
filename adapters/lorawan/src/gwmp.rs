//! The Semtech packet-forwarder UDP protocol, version 2 (GWMP,
//! `PROTOCOL.TXT` of Semtech's packet_forwarder): datagrams in both
//! directions, the `rxpk` / `stat` JSON of PUSH_DATA, the `txpk` of
//! PULL_RESP and the `txpk_ack` of TX_ACK. Pure: bytes in, typed values
//! out, and the other way round.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// The only protocol version spoken; a forwarder drops answers of any other.
pub const VERSION: u8 = 2;
/// Largest datagram read (a PUSH_DATA with many `rxpk` stays well below).
pub const MAX_DATAGRAM: usize = 65_507;

/// Datagram identifiers.
pub mod ident {
    /// Forwarder → server: received packets and status.
    pub const PUSH_DATA: u8 = 0x00;
    /// Server → forwarder: PUSH_DATA received.
    pub const PUSH_ACK: u8 = 0x01;
    /// Forwarder → server: keep-alive that opens the downlink path.
    pub const PULL_DATA: u8 = 0x02;
    /// Server → forwarder: a packet to transmit.
    pub const PULL_RESP: u8 = 0x03;
    /// Server → forwarder: PULL_DATA received.
    pub const PULL_ACK: u8 = 0x04;
    /// Forwarder → server: what became of a PULL_RESP.
    pub const TX_ACK: u8 = 0x05;
}

/// Why a datagram was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GwmpError {
    /// Shorter than its header.
    #[error("datagram of {0} bytes is shorter than its header")]
    Truncated(usize),
    /// Not protocol version 2.
    #[error("protocol version {0}, expected 2")]
    Version(u8),
    /// An identifier a forwarder does not send.
    #[error("unexpected identifier 0x{0:02x}")]
    Ident(u8),
    /// The JSON part does not parse.
    #[error("invalid JSON: {0}")]
    Json(String),
}

/// A datagram from a packet forwarder.
#[derive(Clone, Debug, PartialEq)]
pub enum Upstream {
    /// Received packets and/or a status report.
    PushData {
        /// Echoed in the PUSH_ACK.
        token: [u8; 2],
        /// The concentrator.
        gateway: [u8; 8],
        /// Its `rxpk` and `stat`.
        push: Push,
    },
    /// Keep-alive: the downlink path is the sender's address.
    PullData {
        /// Echoed in the PULL_ACK.
        token: [u8; 2],
        /// The concentrator.
        gateway: [u8; 8],
    },
    /// The fate of a PULL_RESP.
    TxAck {
        /// The PULL_RESP's token.
        token: [u8; 2],
        /// The concentrator.
        gateway: [u8; 8],
        /// `NONE` (sent) or the error.
        error: TxError,
    },
}

/// The JSON object of a PUSH_DATA.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Push {
    /// Received packets.
    #[serde(default)]
    pub rxpk: Vec<RxPk>,
    /// The gateway's status report.
    pub stat: Option<Stat>,
}

/// One received packet (`rxpk`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RxPk {
    /// Concentrator counter (µs) at the end of reception: downlinks are timed from it.
    pub tmst: u32,
    /// Centre frequency in MHz.
    pub freq: f64,
    /// IF channel.
    #[serde(default)]
    pub chan: u8,
    /// RF chain.
    #[serde(default)]
    pub rfch: u8,
    /// CRC: 1 OK, -1 failed, 0 none.
    #[serde(default = "crc_ok")]
    pub stat: i8,
    /// `LORA` or `FSK`.
    pub modu: String,
    /// `SF7BW125` for LoRa.
    pub datr: serde_json::Value,
    /// Coding rate, `4/5`.
    #[serde(default)]
    pub codr: Option<String>,
    /// Signal strength in dBm.
    pub rssi: f64,
    /// SNR in dB (LoRa only).
    #[serde(default)]
    pub lsnr: Option<f64>,
    /// Payload size in bytes.
    #[serde(default)]
    pub size: Option<usize>,
    /// The PHYPayload, base64.
    pub data: String,
}

fn crc_ok() -> i8 {
    1
}

impl RxPk {
    /// The PHYPayload, if the base64 is valid.
    pub fn payload(&self) -> Option<Vec<u8>> {
        BASE64.decode(self.data.as_bytes()).ok()
    }

    /// The frequency in Hz.
    pub fn freq_hz(&self) -> u32 {
        (self.freq * 1e6).round() as u32
    }

    /// `datr` as a LoRa data rate string, if it is one.
    pub fn datr_str(&self) -> Option<&str> {
        self.datr.as_str()
    }
}

/// A gateway's status report (`stat`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Stat {
    /// Gateway time (UTC, `2014-01-12 08:59:28 GMT`).
    #[serde(default)]
    pub time: Option<String>,
    /// Latitude.
    #[serde(default)]
    pub lati: Option<f64>,
    /// Longitude.
    #[serde(default)]
    pub long: Option<f64>,
    /// Altitude in metres.
    #[serde(default)]
    pub alti: Option<f64>,
    /// Packets received.
    #[serde(default)]
    pub rxnb: u64,
    /// Packets received with a valid CRC.
    #[serde(default)]
    pub rxok: u64,
    /// Packets forwarded.
    #[serde(default)]
    pub rxfw: u64,
    /// Upstream datagrams acknowledged, in percent.
    #[serde(default)]
    pub ackr: f64,
    /// Downlinks received.
    #[serde(default)]
    pub dwnb: u64,
    /// Packets emitted.
    #[serde(default)]
    pub txnb: u64,
}

/// What a TX_ACK says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxError {
    /// Sent (`NONE`, or an empty TX_ACK as older forwarders send).
    None,
    /// `TOO_LATE`: the packet arrived after its time.
    TooLate,
    /// `TOO_EARLY`: too far ahead.
    TooEarly,
    /// `COLLISION_PACKET`: another packet holds that time.
    CollisionPacket,
    /// `COLLISION_BEACON`.
    CollisionBeacon,
    /// `TX_FREQ`: frequency not supported.
    TxFreq,
    /// `TX_POWER`: power not supported.
    TxPower,
    /// `GPS_UNLOCKED`.
    GpsUnlocked,
    /// Anything else.
    Other(String),
}

impl TxError {
    fn parse(s: &str) -> TxError {
        match s {
            "NONE" | "" => TxError::None,
            "TOO_LATE" => TxError::TooLate,
            "TOO_EARLY" => TxError::TooEarly,
            "COLLISION_PACKET" => TxError::CollisionPacket,
            "COLLISION_BEACON" => TxError::CollisionBeacon,
            "TX_FREQ" => TxError::TxFreq,
            "TX_POWER" => TxError::TxPower,
            "GPS_UNLOCKED" => TxError::GpsUnlocked,
            other => TxError::Other(other.to_owned()),
        }
    }

    /// The forwarder's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            TxError::None => "NONE",
            TxError::TooLate => "TOO_LATE",
            TxError::TooEarly => "TOO_EARLY",
            TxError::CollisionPacket => "COLLISION_PACKET",
            TxError::CollisionBeacon => "COLLISION_BEACON",
            TxError::TxFreq => "TX_FREQ",
            TxError::TxPower => "TX_POWER",
            TxError::GpsUnlocked => "GPS_UNLOCKED",
            TxError::Other(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct TxAckJson {
    txpk_ack: Option<TxAckInner>,
}

#[derive(Deserialize)]
struct TxAckInner {
    #[serde(default)]
    error: Option<String>,
}

/// Parses a datagram from a forwarder.
pub fn parse(datagram: &[u8]) -> Result<Upstream, GwmpError> {
    if datagram.len() < 4 {
        return Err(GwmpError::Truncated(datagram.len()));
    }
    if datagram[0] != VERSION {
        return Err(GwmpError::Version(datagram[0]));
    }
    let token = [datagram[1], datagram[2]];
    let id = datagram[3];
    let gateway = || -> Result<[u8; 8], GwmpError> {
        datagram
            .get(4..12)
            .and_then(|g| g.try_into().ok())
            .ok_or(GwmpError::Truncated(datagram.len()))
    };
    match id {
        ident::PUSH_DATA => {
            let gateway = gateway()?;
            let push: Push = serde_json::from_slice(&datagram[12..])
                .map_err(|e| GwmpError::Json(e.to_string()))?;
            Ok(Upstream::PushData {
                token,
                gateway,
                push,
            })
        }
        ident::PULL_DATA => Ok(Upstream::PullData {
            token,
            gateway: gateway()?,
        }),
        ident::TX_ACK => {
            let gateway = gateway()?;
            let json = &datagram[12..];
            let error = if json.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
                TxError::None
            } else {
                let ack: TxAckJson =
                    serde_json::from_slice(json).map_err(|e| GwmpError::Json(e.to_string()))?;
                TxError::parse(
                    ack.txpk_ack
                        .and_then(|a| a.error)
                        .as_deref()
                        .unwrap_or("NONE"),
                )
            };
            Ok(Upstream::TxAck {
                token,
                gateway,
                error,
            })
        }
        other => Err(GwmpError::Ident(other)),
    }
}

/// A PUSH_ACK or PULL_ACK: version, the token echoed, the identifier.
pub fn ack(token: [u8; 2], id: u8) -> [u8; 4] {
    [VERSION, token[0], token[1], id]
}

/// A packet to transmit (`txpk`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxPk {
    /// Send at once (false: at `tmst`).
    pub imme: bool,
    /// Concentrator counter (µs) to send at.
    pub tmst: u32,
    /// Centre frequency in MHz.
    pub freq: f64,
    /// RF chain.
    pub rfch: u8,
    /// Power in dBm.
    pub powe: u8,
    /// `LORA`.
    pub modu: String,
    /// `SF12BW125`.
    pub datr: String,
    /// `4/5`.
    pub codr: String,
    /// Inverted polarity: true for every downlink to a device.
    pub ipol: bool,
    /// Payload size.
    pub size: usize,
    /// The PHYPayload, base64.
    pub data: String,
    /// No CRC on downlinks.
    pub ncrc: bool,
}

impl TxPk {
    /// A LoRa downlink of `phy` at `tmst`, `freq_hz`, `datr`, `powe` dBm.
    pub fn lora(phy: &[u8], tmst: u32, freq_hz: u32, datr: String, powe: u8) -> TxPk {
        TxPk {
            imme: false,
            tmst,
            freq: f64::from(freq_hz) / 1e6,
            rfch: 0,
            powe,
            modu: "LORA".into(),
            datr,
            codr: "4/5".into(),
            ipol: true,
            size: phy.len(),
            data: BASE64.encode(phy),
            ncrc: true,
        }
    }
}

#[derive(Serialize)]
struct PullRespJson<'a> {
    txpk: &'a TxPk,
}

/// A PULL_RESP datagram carrying `txpk`, under `token`.
pub fn pull_resp(token: [u8; 2], txpk: &TxPk) -> Vec<u8> {
    let mut out = vec![VERSION, token[0], token[1], ident::PULL_RESP];
    // Serializing plain fields cannot fail.
    if let Ok(json) = serde_json::to_vec(&PullRespJson { txpk }) {
        out.extend_from_slice(&json);
    }
    out
}

/// A PUSH_DATA datagram (what a forwarder sends; the demo's concentrator and tests use it).
pub fn push_data(token: [u8; 2], gateway: [u8; 8], json: &str) -> Vec<u8> {
    let mut out = vec![VERSION, token[0], token[1], ident::PUSH_DATA];
    out.extend_from_slice(&gateway);
    out.extend_from_slice(json.as_bytes());
    out
}

/// The `rxpk` JSON a forwarder would send for `phy` (demo and tests).
pub fn rxpk_json(phy: &[u8], tmst: u32, freq_mhz: f64, datr: &str, rssi: i32, lsnr: f64) -> String {
    format!(
        r#"{{"rxpk":[{{"tmst":{tmst},"chan":0,"rfch":0,"freq":{freq_mhz},"stat":1,"modu":"LORA","datr":"{datr}","codr":"4/5","rssi":{rssi},"lsnr":{lsnr},"size":{},"data":"{}"}}]}}"#,
        phy.len(),
        BASE64.encode(phy)
    )
}

/// A PULL_DATA datagram (demo and tests).
pub fn pull_data(token: [u8; 2], gateway: [u8; 8]) -> Vec<u8> {
    let mut out = vec![VERSION, token[0], token[1], ident::PULL_DATA];
    out.extend_from_slice(&gateway);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: [u8; 8] = [0xaa, 0x55, 0x5a, 0, 0, 0, 0, 1];

    #[test]
    fn protocol_txt_push_data_example_parses() {
        // The rxpk/stat example of PROTOCOL.TXT §4, one packet.
        let json = r#"{"rxpk":[{"time":"2013-03-31T16:21:17.528002Z","tmst":3512348611,
          "chan":2,"rfch":0,"freq":866.349812,"stat":1,"modu":"LORA","datr":"SF7BW125",
          "codr":"4/6","rssi":-35,"lsnr":5.1,"size":32,
          "data":"-DS4CGaDCdG+48eJNM3Vai-zDpsR71Pn9CPA9uCON84"}],
          "stat":{"time":"2014-01-12 08:59:28 GMT","lati":46.24000,"long":3.25230,"alti":145,
          "rxnb":2,"rxok":2,"rxfw":2,"ackr":100.0,"dwnb":2,"txnb":2}}"#;
        let d = push_data([1, 2], GW, json);
        let Upstream::PushData {
            token,
            gateway,
            push,
        } = parse(&d).expect("parses")
        else {
            panic!("not PUSH_DATA")
        };
        assert_eq!((token, gateway), ([1, 2], GW));
        assert_eq!(push.rxpk[0].tmst, 3512348611);
        assert_eq!(push.rxpk[0].freq_hz(), 866_349_812);
        assert_eq!(push.rxpk[0].datr_str(), Some("SF7BW125"));
        assert_eq!(push.stat.expect("stat").rxok, 2);
    }

    #[test]
    fn pull_data_and_tx_ack_parse() {
        assert_eq!(
            parse(&pull_data([9, 8], GW)),
            Ok(Upstream::PullData {
                token: [9, 8],
                gateway: GW
            })
        );
        let mut d = vec![2, 7, 7, ident::TX_ACK];
        d.extend_from_slice(&GW);
        assert!(matches!(
            parse(&d),
            Ok(Upstream::TxAck {
                error: TxError::None,
                ..
            })
        ));
        d.extend_from_slice(br#"{"txpk_ack":{"error":"TOO_LATE"}}"#);
        assert!(matches!(
            parse(&d),
            Ok(Upstream::TxAck {
                error: TxError::TooLate,
                ..
            })
        ));
    }

    #[test]
    fn bad_datagrams_are_typed_errors() {
        assert_eq!(parse(&[2, 0]), Err(GwmpError::Truncated(2)));
        assert_eq!(
            parse(&[1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(GwmpError::Version(1))
        );
        assert_eq!(parse(&[2, 0, 0, 0x09]), Err(GwmpError::Ident(9)));
        assert_eq!(parse(&[2, 0, 0, 0x02, 1, 2]), Err(GwmpError::Truncated(6)));
        assert!(matches!(
            parse(&push_data([0, 0], GW, "{not json")),
            Err(GwmpError::Json(_))
        ));
    }

    #[test]
    fn pull_resp_carries_the_txpk_with_inverted_polarity() {
        let txpk = TxPk::lora(&[1, 2, 3], 1_000, 869_525_000, "SF12BW125".into(), 14);
        let d = pull_resp([5, 6], &txpk);
        assert_eq!(&d[..4], &[2, 5, 6, ident::PULL_RESP]);
        let v: serde_json::Value = serde_json::from_slice(&d[4..]).expect("json");
        assert_eq!(v["txpk"]["freq"], 869.525);
        assert_eq!(v["txpk"]["ipol"], true);
        assert_eq!(v["txpk"]["data"], "AQID");
        assert_eq!(ack([5, 6], ident::PUSH_ACK), [2, 5, 6, 1]);
    }
}
