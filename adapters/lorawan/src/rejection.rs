//! Why the LoRaWAN adapter turned a datagram or a frame away: one counter each.

use sluice_adapter_common::{Rejection, Stage};

/// A reason for rejecting a datagram, a frame, or a downlink attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Shorter than the GWMP header.
    Truncated,
    /// Not GWMP version 2.
    WrongVersion,
    /// A GWMP identifier a forwarder does not send.
    UnknownIdent,
    /// PUSH_DATA or TX_ACK JSON that does not parse.
    InvalidJson,
    /// `rxpk` data that is not base64, or a CRC the concentrator says failed.
    BadPacket,
    /// Not a LoRa data rate of the region.
    BadDataRate,
    /// A frame that does not parse, or a kind devices do not send up.
    MalformedFrame,
    /// A data frame from a DevAddr no device has.
    UnknownDevAddr,
    /// A JoinRequest from a DevEUI not configured for OTAA.
    UnknownDevEui,
    /// A JoinRequest whose JoinEUI is not the device's.
    WrongJoinEui,
    /// The MIC does not match.
    BadMic,
    /// An uplink counter not after the last accepted.
    ReplayedFcnt,
    /// A DevNonce the device has used before.
    ReplayedDevNonce,
    /// The last frame again (a retransmission): acknowledged again, not ingested.
    Retransmission,
    /// MAC commands after an unknown CID were not read.
    UnknownMacCommand,
    /// A MAC command that is counted and ignored.
    IgnoredMacCommand,
    /// A downlink was ready after its receive windows had passed.
    TooLate,
    /// The concentrator refused a downlink (TX_ACK error).
    TxRefused,
    /// No PULL_DATA from the gateway yet: nowhere to send a downlink.
    NoDownlinkPath,
    /// The core refused the events or state.
    Refused,
    /// More frames waiting than the adapter holds.
    Busy,
}

impl Rejection for Reject {
    fn stage(self) -> Stage {
        use Reject::*;
        match self {
            Truncated | WrongVersion | UnknownIdent | BadPacket => Stage::Receive,
            InvalidJson | BadDataRate | MalformedFrame | UnknownMacCommand | IgnoredMacCommand => {
                Stage::Decode
            }
            BadMic => Stage::Authenticate,
            UnknownDevAddr | UnknownDevEui | WrongJoinEui | NoDownlinkPath => Stage::Route,
            ReplayedFcnt | ReplayedDevNonce | Retransmission | TooLate | TxRefused => {
                Stage::Exchange
            }
            Refused | Busy => Stage::Ingest,
        }
    }

    fn reason(self) -> &'static str {
        use Reject::*;
        match self {
            Truncated => "truncated",
            WrongVersion => "wrong-version",
            UnknownIdent => "unknown-ident",
            InvalidJson => "invalid-json",
            BadPacket => "bad-packet",
            BadDataRate => "bad-data-rate",
            MalformedFrame => "malformed-frame",
            UnknownDevAddr => "unknown-dev-addr",
            UnknownDevEui => "unknown-dev-eui",
            WrongJoinEui => "wrong-join-eui",
            BadMic => "bad-mic",
            ReplayedFcnt => "replayed-fcnt",
            ReplayedDevNonce => "replayed-dev-nonce",
            Retransmission => "retransmission",
            UnknownMacCommand => "unknown-mac-command",
            IgnoredMacCommand => "ignored-mac-command",
            TooLate => "too-late",
            TxRefused => "tx-refused",
            NoDownlinkPath => "no-downlink-path",
            Refused => "refused",
            Busy => "busy",
        }
    }
}
