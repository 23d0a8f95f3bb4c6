//! One advertisement as every source hands it on: who sent it, how loud,
//! its name, and its manufacturer and service data.

use crate::mac::Mac;
use uuid::Uuid;

/// The Bluetooth base UUID's tail: 16-bit UUIDs are `0000xxxx-0000-1000-8000-00805f9b34fb`.
const BASE_UUID: u128 = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb;

/// The full UUID of a 16-bit SIG-assigned UUID.
pub const fn uuid16(short: u16) -> Uuid {
    Uuid::from_u128(BASE_UUID | ((short as u128) << 96))
}

/// The 16-bit form of `uuid`, if it is one of the SIG's.
pub fn short_uuid(uuid: &Uuid) -> Option<u16> {
    let v = uuid.as_u128();
    ((v & !(0xffff_u128 << 96)) == BASE_UUID).then_some((v >> 96) as u16)
}

/// An advertisement (with its scan response) as heard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Advertisement {
    /// When it was heard, in ms since the Unix epoch.
    pub time_ms: i64,
    /// The sender's address.
    pub address: Mac,
    /// Signal strength in dBm, if known.
    pub rssi: Option<i16>,
    /// The advertised local name, if any.
    pub local_name: Option<String>,
    /// Manufacturer-specific data by company id.
    pub manufacturer_data: Vec<(u16, Vec<u8>)>,
    /// Service data by service UUID.
    pub service_data: Vec<(Uuid, Vec<u8>)>,
}

impl Advertisement {
    /// The manufacturer data of `company`.
    pub fn manufacturer(&self, company: u16) -> Option<&[u8]> {
        self.manufacturer_data
            .iter()
            .find(|(id, _)| *id == company)
            .map(|(_, d)| d.as_slice())
    }

    /// The service data of the 16-bit service `short`.
    pub fn service(&self, short: u16) -> Option<&[u8]> {
        let uuid = uuid16(short);
        self.service_data
            .iter()
            .find(|(u, _)| *u == uuid)
            .map(|(_, d)| d.as_slice())
    }

    /// The service data of `uuid`.
    pub fn service_uuid(&self, uuid: &Uuid) -> Option<&[u8]> {
        self.service_data
            .iter()
            .find(|(u, _)| u == uuid)
            .map(|(_, d)| d.as_slice())
    }

    /// Bytes of data carried (for the `bytes_in` counter).
    pub fn data_len(&self) -> usize {
        self.manufacturer_data
            .iter()
            .map(|(_, d)| d.len())
            .sum::<usize>()
            + self
                .service_data
                .iter()
                .map(|(_, d)| d.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_uuids_round_trip() {
        let u = uuid16(0xfcd2);
        assert_eq!(u.to_string(), "0000fcd2-0000-1000-8000-00805f9b34fb");
        assert_eq!(short_uuid(&u), Some(0xfcd2));
        assert_eq!(short_uuid(&Uuid::from_u128(1)), None);
    }
}
