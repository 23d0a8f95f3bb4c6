//! Serial line settings for tokio-serial, and open errors that say what to do.

use crate::config::{BusConfig, Parity};
use crate::rtu::Framing;
use std::path::Path;

/// The framing `bus` configures.
pub fn framing(bus: &BusConfig) -> Framing {
    Framing {
        baud: bus.baud,
        data_bits: bus.data_bits,
        parity: bus.parity,
        stop_bits: bus.stop_bits,
    }
}

/// tokio-serial's settings for `path` with `framing` (raw mode, no flow control).
pub fn builder(path: &Path, framing: Framing) -> tokio_serial::SerialPortBuilder {
    let data_bits = match framing.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match framing.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = match framing.stop_bits {
        2 => tokio_serial::StopBits::Two,
        _ => tokio_serial::StopBits::One,
    };
    tokio_serial::new(path.to_string_lossy(), framing.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(tokio_serial::FlowControl::None)
}

/// An open error in words that name the device and the likely cause.
pub fn describe(path: &Path, error: tokio_serial::Error) -> String {
    let hint = match error.kind {
        tokio_serial::ErrorKind::NoDevice => " (missing or unplugged?)",
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::NotFound) => {
            " (no such device: unplugged?)"
        }
        tokio_serial::ErrorKind::Io(std::io::ErrorKind::PermissionDenied) => {
            " (permission denied: is the gateway's user in the `dialout` group?)"
        }
        _ => "",
    };
    format!(
        "serial device {}: {}{hint}",
        path.display(),
        error.description
    )
}
