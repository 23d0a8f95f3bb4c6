//! Why a request got no usable answer: one variant per counter, counted per
//! device and reason (`adapters.modbus.devices.<id>` in health) and for
//! the adapter as a whole (`adapters.modbus.rejected`).

use crate::rtu::Unanswered;
use sluice_adapter_common::{Rejection, Stage};
use std::fmt;

/// A Modbus exception code (application protocol §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// 01: the device does not implement the function.
    IllegalFunction,
    /// 02: an address the device does not have.
    IllegalAddress,
    /// 03: a value the device does not accept.
    IllegalValue,
    /// 04: the device failed while acting on the request.
    DeviceFailure,
    /// 05: accepted, but it will take long (counted, not a success).
    Acknowledge,
    /// 06: the device is busy; try again.
    Busy,
    /// 08: the device's memory failed its parity check.
    MemoryParity,
    /// 0A: a gateway has no path to the device.
    GatewayPath,
    /// 0B: the device behind a gateway did not answer it.
    GatewayTarget,
    /// Any other code.
    Other(u8),
}

impl Exception {
    /// The exception of code `code`.
    pub fn from_code(code: u8) -> Exception {
        match code {
            1 => Exception::IllegalFunction,
            2 => Exception::IllegalAddress,
            3 => Exception::IllegalValue,
            4 => Exception::DeviceFailure,
            5 => Exception::Acknowledge,
            6 => Exception::Busy,
            8 => Exception::MemoryParity,
            0x0a => Exception::GatewayPath,
            0x0b => Exception::GatewayTarget,
            other => Exception::Other(other),
        }
    }

    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Exception::IllegalFunction => 1,
            Exception::IllegalAddress => 2,
            Exception::IllegalValue => 3,
            Exception::DeviceFailure => 4,
            Exception::Acknowledge => 5,
            Exception::Busy => 6,
            Exception::MemoryParity => 8,
            Exception::GatewayPath => 0x0a,
            Exception::GatewayTarget => 0x0b,
            Exception::Other(code) => code,
        }
    }

    /// The counter's reason: `exception-illegal-address`, ….
    pub fn reason(self) -> &'static str {
        match self {
            Exception::IllegalFunction => "exception-illegal-function",
            Exception::IllegalAddress => "exception-illegal-address",
            Exception::IllegalValue => "exception-illegal-value",
            Exception::DeviceFailure => "exception-device-failure",
            Exception::Acknowledge => "exception-acknowledge",
            Exception::Busy => "exception-busy",
            Exception::MemoryParity => "exception-memory-parity",
            Exception::GatewayPath => "exception-gateway-path",
            Exception::GatewayTarget => "exception-gateway-target",
            Exception::Other(_) => "exception-other",
        }
    }
}

impl From<tokio_modbus::ExceptionCode> for Exception {
    fn from(code: tokio_modbus::ExceptionCode) -> Exception {
        Exception::from_code(code.into())
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self
            .reason()
            .trim_start_matches("exception-")
            .replace('-', " ");
        write!(f, "exception {:02X} ({text})", self.code())
    }
}

/// Why one request of a poll or a write got no usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// No answer within the response timeout.
    Timeout,
    /// An answer whose CRC did not match (RTU).
    Crc,
    /// Bytes that made no whole frame (RTU).
    Garbled,
    /// A frame for another unit or function, or of the wrong length.
    Mismatch,
    /// The device answered with an exception.
    Exception(Exception),
    /// The serial port could not be opened (missing, unplugged, busy) or
    /// the TCP connection could not be made.
    Unreachable,
    /// The serial port or the connection failed while in use.
    LinkLost,
}

impl Fault {
    /// Whether the device answered at all (an exception is an answer: the
    /// device is there).
    pub fn answered(self) -> bool {
        matches!(self, Fault::Exception(_))
    }

    /// Whether repeating the request may help.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Fault::Timeout
                | Fault::Crc
                | Fault::Garbled
                | Fault::Mismatch
                | Fault::Exception(Exception::Busy)
        )
    }

    /// The fault behind bytes that arrived without making an answer in time.
    pub fn from_unanswered(u: Unanswered) -> Fault {
        match u {
            Unanswered::Silence => Fault::Timeout,
            Unanswered::Crc => Fault::Crc,
            Unanswered::Garbled => Fault::Garbled,
        }
    }
}

impl Rejection for Fault {
    fn stage(self) -> Stage {
        match self {
            Fault::Crc | Fault::Garbled | Fault::Mismatch => Stage::Receive,
            Fault::Timeout | Fault::Exception(_) | Fault::Unreachable | Fault::LinkLost => {
                Stage::Device
            }
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Fault::Timeout => "timeout",
            Fault::Crc => "crc",
            Fault::Garbled => "garbled",
            Fault::Mismatch => "mismatch",
            Fault::Exception(e) => e.reason(),
            Fault::Unreachable => "unreachable",
            Fault::LinkLost => "link-lost",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Timeout => f.write_str("no answer in time"),
            Fault::Crc => f.write_str("an answer with a bad CRC"),
            Fault::Garbled => f.write_str("a broken frame"),
            Fault::Mismatch => f.write_str("an answer that does not match the request"),
            Fault::Exception(e) => e.fmt(f),
            Fault::Unreachable => f.write_str("the bus or connection cannot be opened"),
            Fault::LinkLost => f.write_str("the bus or connection failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_stage_and_reason() {
        assert_eq!(Fault::Timeout.key(), "device/timeout");
        assert_eq!(Fault::Crc.key(), "receive/crc");
        assert_eq!(
            Fault::Exception(Exception::from_code(2)).key(),
            "device/exception-illegal-address"
        );
        assert_eq!(
            Fault::Exception(Exception::from_code(0x42)).key(),
            "device/exception-other"
        );
        assert_eq!(Fault::Unreachable.key(), "device/unreachable");
    }

    #[test]
    fn codes_round_trip_and_read_well() {
        for code in 0..=255u8 {
            assert_eq!(Exception::from_code(code).code(), code);
        }
        assert_eq!(
            Exception::Busy.to_string(),
            "exception 06 (busy)".to_owned()
        );
        assert_eq!(
            Exception::IllegalAddress.to_string(),
            "exception 02 (illegal address)"
        );
    }

    #[test]
    fn only_exceptions_are_answers_and_busy_is_worth_a_retry() {
        assert!(Fault::Exception(Exception::IllegalAddress).answered());
        assert!(!Fault::Timeout.answered());
        assert!(Fault::Exception(Exception::Busy).retryable());
        assert!(!Fault::Exception(Exception::IllegalAddress).retryable());
        assert!(!Fault::Unreachable.retryable());
    }
}
