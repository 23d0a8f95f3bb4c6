//! Where each device was last heard from, so a downlink can find a device
//! that only ever posts to the server. Bounded: the device heard from
//! longest ago is forgotten first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Devices remembered at most (about 100 bytes each).
pub const CAPACITY: usize = 10_000;

/// Device id → the address its last accepted request came from.
#[derive(Debug, Default)]
pub struct Directory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Address and the tick it was last heard at.
    devices: HashMap<String, (SocketAddr, u64)>,
    tick: u64,
}

impl Directory {
    /// Remembers that `device` was heard from at `peer`.
    pub fn heard(&self, device: &str, peer: SocketAddr) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        if let Some(entry) = inner.devices.get_mut(device) {
            *entry = (peer, tick);
            return;
        }
        if inner.devices.len() >= CAPACITY {
            let oldest = inner
                .devices
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(d, _)| d.clone());
            if let Some(d) = oldest {
                inner.devices.remove(&d);
            }
        }
        inner.devices.insert(device.to_owned(), (peer, tick));
    }

    /// Where `device` was last heard from.
    pub fn lookup(&self, device: &str) -> Option<SocketAddr> {
        let inner = self.inner.lock().ok()?;
        inner.devices.get(device).map(|(a, _)| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn the_latest_address_wins() {
        let d = Directory::default();
        d.heard("t1", addr(1000));
        d.heard("t1", addr(1001));
        assert_eq!(d.lookup("t1"), Some(addr(1001)));
        assert_eq!(d.lookup("t2"), None);
    }

    #[test]
    fn the_device_heard_from_longest_ago_is_forgotten_first() {
        let d = Directory::default();
        for i in 0..CAPACITY {
            d.heard(&format!("d{i}"), addr(1));
        }
        d.heard("d0", addr(2)); // d0 is fresh again; d1 is now the oldest
        d.heard("new", addr(3));
        assert_eq!(d.lookup("d0"), Some(addr(2)));
        assert_eq!(d.lookup("d1"), None);
        assert_eq!(d.lookup("new"), Some(addr(3)));
    }
}
