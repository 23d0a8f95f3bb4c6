//! The replay format: one advertisement per line, as JSON.
//!
//! ```json
//! {"time": 12.5, "address": "C7:3B:0A:11:22:33", "rssi": -71, "name": "Ruuvi 2233",
//!  "manufacturer_data": {"0x0499": "0512fc5394c37c0004fffc040cac364200cdcbb8334c884f"},
//!  "service_data": {"fcd2": "4002ca0903bf13"}}
//! ```
//!
//! `time` is in seconds from any origin (only differences pace a replay);
//! company ids are `0x`-hex or decimal; service UUIDs are 16-bit hex
//! (`fcd2`) or full; data is hex. Only `address` is required.

use crate::advertisement::Advertisement;
use crate::config::parse_uuid;
use crate::mac::Mac;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One line as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    time: Option<f64>,
    address: Mac,
    #[serde(default)]
    rssi: Option<i16>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    manufacturer_data: BTreeMap<String, String>,
    #[serde(default)]
    service_data: BTreeMap<String, String>,
}

/// Why a line is not an advertisement.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON of the right shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// A company id that is not a 16-bit number.
    #[error("company id `{0}` is not a 16-bit number (`0x0499` or `1177`)")]
    Company(String),
    /// A service UUID that is not one.
    #[error("{0}")]
    Uuid(String),
    /// Data that is not hex.
    #[error("data of `{0}` is not hex")]
    Hex(String),
}

/// One replayed advertisement and its time in the file, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// Seconds from the file's origin, if given.
    pub time: Option<f64>,
    /// The advertisement (its `time_ms` is set when it is replayed).
    pub advertisement: Advertisement,
}

/// Parses one line.
pub fn parse_line(text: &str) -> Result<Recorded, LineError> {
    let line: Line = serde_json::from_str(text)?;
    let mut ad = Advertisement {
        time_ms: 0,
        address: line.address,
        rssi: line.rssi,
        local_name: line.name,
        ..Advertisement::default()
    };
    for (company, data) in line.manufacturer_data {
        let id = match company
            .strip_prefix("0x")
            .or_else(|| company.strip_prefix("0X"))
        {
            Some(h) => u16::from_str_radix(h, 16),
            None => company.parse(),
        }
        .map_err(|_| LineError::Company(company.clone()))?;
        let bytes = hex::decode(&data).map_err(|_| LineError::Hex(company))?;
        ad.manufacturer_data.push((id, bytes));
    }
    for (service, data) in line.service_data {
        let uuid = parse_uuid(&service).map_err(LineError::Uuid)?;
        let bytes = hex::decode(&data).map_err(|_| LineError::Hex(service))?;
        ad.service_data.push((uuid, bytes));
    }
    Ok(Recorded {
        time: line.time,
        advertisement: ad,
    })
}

/// Writes `ad` heard at `time` seconds as one line (the demo writes its
/// script with this, and it is what a capture tool should produce).
pub fn to_line(time: f64, ad: &Advertisement) -> String {
    let mut m = serde_json::Map::new();
    m.insert("time".into(), serde_json::json!(time));
    m.insert("address".into(), serde_json::json!(ad.address.to_string()));
    if let Some(r) = ad.rssi {
        m.insert("rssi".into(), serde_json::json!(r));
    }
    if let Some(n) = &ad.local_name {
        m.insert("name".into(), serde_json::json!(n));
    }
    if !ad.manufacturer_data.is_empty() {
        let md: serde_json::Map<String, serde_json::Value> = ad
            .manufacturer_data
            .iter()
            .map(|(c, d)| (format!("{c:#06x}"), serde_json::json!(hex::encode(d))))
            .collect();
        m.insert("manufacturer_data".into(), md.into());
    }
    if !ad.service_data.is_empty() {
        let sd: serde_json::Map<String, serde_json::Value> = ad
            .service_data
            .iter()
            .map(|(u, d)| {
                let key = crate::advertisement::short_uuid(u)
                    .map_or_else(|| u.to_string(), |s| format!("{s:04x}"));
                (key, serde_json::json!(hex::encode(d)))
            })
            .collect();
        m.insert("service_data".into(), sd.into());
    }
    serde_json::Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advertisement::uuid16;

    #[test]
    fn a_full_line() {
        let r = parse_line(
            r#"{"time": 12.5, "address": "c7:3b:0a:11:22:33", "rssi": -71, "name": "Ruuvi 2233",
                "manufacturer_data": {"0x0499": "0512FC", "76": "0215"},
                "service_data": {"fcd2": "40", "0000181a-0000-1000-8000-00805f9b34fb": "00"}}"#,
        )
        .expect("line");
        assert_eq!(r.time, Some(12.5));
        let ad = r.advertisement;
        assert_eq!(ad.address.to_string(), "C7:3B:0A:11:22:33");
        assert_eq!(ad.rssi, Some(-71));
        assert_eq!(ad.manufacturer(0x0499), Some(&[0x05, 0x12, 0xfc][..]));
        assert_eq!(ad.manufacturer(76), Some(&[0x02, 0x15][..]));
        assert_eq!(ad.service(0xfcd2), Some(&[0x40][..]));
        assert_eq!(ad.service_uuid(&uuid16(0x181a)), Some(&[0x00][..]));
        let mut again = parse_line(&to_line(12.5, &ad))
            .expect("round trip")
            .advertisement;
        let mut ad = ad;
        for a in [&mut again, &mut ad] {
            a.manufacturer_data.sort();
            a.service_data.sort();
        }
        assert_eq!(again, ad);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(matches!(parse_line("{}"), Err(LineError::Json(_))));
        assert!(matches!(
            parse_line(r#"{"address": "nope"}"#),
            Err(LineError::Json(_))
        ));
        assert!(matches!(
            parse_line(
                r#"{"address": "00:11:22:33:44:55", "manufacturer_data": {"0x10000": "00"}}"#
            ),
            Err(LineError::Company(_))
        ));
        assert!(matches!(
            parse_line(r#"{"address": "00:11:22:33:44:55", "service_data": {"fcd2": "0g"}}"#),
            Err(LineError::Hex(_))
        ));
        assert!(matches!(
            parse_line(r#"{"address": "00:11:22:33:44:55", "colour": 1}"#),
            Err(LineError::Json(_))
        ));
    }
}
