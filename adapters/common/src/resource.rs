//! What an adapter claims on the machine (ports, serial lines, Bluetooth
//! controllers), so that `sluice check` can refuse two adapters that would
//! fight over one, and start-up errors can name what could not be opened.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One thing on the machine that only one adapter may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A UDP port on an address (`0.0.0.0` and `::` mean every address).
    Udp(SocketAddr),
    /// A TCP port on an address.
    Tcp(SocketAddr),
    /// A serial device such as `/dev/ttyUSB0`.
    Serial(PathBuf),
    /// A Bluetooth controller such as `hci0`.
    Bluetooth(String),
}

impl Resource {
    /// Whether `self` and `other` cannot both be held: the same serial device
    /// or controller, or the same protocol and port on overlapping addresses
    /// (a wildcard address overlaps every address of its family). Port 0
    /// asks the system for a free port, so it never collides.
    pub fn collides_with(&self, other: &Resource) -> bool {
        match (self, other) {
            (Resource::Udp(a), Resource::Udp(b)) | (Resource::Tcp(a), Resource::Tcp(b)) => {
                a.port() != 0
                    && a.port() == b.port()
                    && a.is_ipv4() == b.is_ipv4()
                    && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
            }
            (Resource::Serial(a), Resource::Serial(b)) => a == b,
            (Resource::Bluetooth(a), Resource::Bluetooth(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Udp(a) => write!(f, "UDP {a}"),
            Resource::Tcp(a) => write!(f, "TCP {a}"),
            Resource::Serial(p) => write!(f, "serial device {}", p.display()),
            Resource::Bluetooth(c) => write!(f, "Bluetooth controller {c}"),
        }
    }
}

/// A resource together with the config key that asks for it (relative to
/// the adapter's section, e.g. `listen[0]`), so a collision can point at
/// both lines of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Key below the adapter's section.
    pub key: String,
    /// What is claimed.
    pub resource: Resource,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(s: &str) -> Resource {
        Resource::Udp(s.parse().expect("address"))
    }

    #[test]
    fn collisions() {
        let cases = [
            (udp("0.0.0.0:5683"), udp("127.0.0.1:5683"), true),
            (udp("127.0.0.1:5683"), udp("127.0.0.1:5683"), true),
            (udp("127.0.0.1:5683"), udp("127.0.0.2:5683"), false),
            (udp("127.0.0.1:5683"), udp("127.0.0.1:5684"), false),
            (udp("[::]:5683"), udp("0.0.0.0:5683"), false),
            (udp("[::]:5683"), udp("[::1]:5683"), true),
            (udp("127.0.0.1:0"), udp("127.0.0.1:0"), false),
            (
                udp("127.0.0.1:1700"),
                Resource::Tcp("127.0.0.1:1700".parse().expect("address")),
                false,
            ),
            (
                Resource::Serial("/dev/ttyUSB0".into()),
                Resource::Serial("/dev/ttyUSB0".into()),
                true,
            ),
            (
                Resource::Bluetooth("hci0".into()),
                Resource::Bluetooth("hci1".into()),
                false,
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.collides_with(&b), expected, "{a} vs {b}");
            assert_eq!(b.collides_with(&a), expected, "{b} vs {a}");
        }
    }
}
