//! Why the BLE adapter drops an advertisement or a reading, one counter each.

use crate::decode::DecodeError;
use sluice_adapter_common::{Rejection, Stage};

/// A counted reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BleRejection {
    /// The source handed more than the adapter could take; dropped.
    SourceOverflow,
    /// A replay line that is not a valid advertisement.
    BadReplayLine,
    /// Wrong length for its format.
    Malformed,
    /// A format version or frame type not read.
    Unsupported,
    /// A BTHome object id not defined (the rest of the frame is unreadable).
    UnknownObject,
    /// The configured format is not in the advertisement.
    Absent,
    /// Encrypted BTHome without a bind key.
    NoKey,
    /// Encrypted BTHome whose MIC fails (wrong key, forged or corrupted).
    BadMic,
    /// A repeat of the last accepted measurement.
    Duplicate,
    /// Within the device's minimum interval.
    TooSoon,
    /// No submitter could take the readings in time; dropped.
    OutboxFull,
    /// A GATT read or write failed or timed out.
    Gatt,
}

impl From<DecodeError> for BleRejection {
    fn from(e: DecodeError) -> BleRejection {
        match e {
            DecodeError::Length { .. } => BleRejection::Malformed,
            DecodeError::Unsupported(_) => BleRejection::Unsupported,
            DecodeError::UnknownObject(_) => BleRejection::UnknownObject,
            DecodeError::NoKey => BleRejection::NoKey,
            DecodeError::BadMic => BleRejection::BadMic,
            DecodeError::Absent(_) => BleRejection::Absent,
        }
    }
}

impl Rejection for BleRejection {
    fn stage(self) -> Stage {
        match self {
            BleRejection::SourceOverflow | BleRejection::BadReplayLine => Stage::Receive,
            BleRejection::Malformed
            | BleRejection::Unsupported
            | BleRejection::UnknownObject
            | BleRejection::Absent => Stage::Decode,
            BleRejection::NoKey | BleRejection::BadMic => Stage::Authenticate,
            BleRejection::Duplicate => Stage::Exchange,
            BleRejection::TooSoon => Stage::Route,
            BleRejection::OutboxFull => Stage::Ingest,
            BleRejection::Gatt => Stage::Device,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            BleRejection::SourceOverflow => "source-overflow",
            BleRejection::BadReplayLine => "bad-replay-line",
            BleRejection::Malformed => "malformed",
            BleRejection::Unsupported => "unsupported",
            BleRejection::UnknownObject => "unknown-object",
            BleRejection::Absent => "format-absent",
            BleRejection::NoKey => "no-bind-key",
            BleRejection::BadMic => "bad-mic",
            BleRejection::Duplicate => "duplicate",
            BleRejection::TooSoon => "min-interval",
            BleRejection::OutboxFull => "outbox-full",
            BleRejection::Gatt => "gatt",
        }
    }
}
