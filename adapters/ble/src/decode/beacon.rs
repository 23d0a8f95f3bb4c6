//! Presence beacons: Apple's iBeacon (manufacturer data of `0x004C`,
//! type `0x02`, length `0x15`) and Google's Eddystone (service data of
//! `0xFEAA`: UID, URL and TLM frames;
//! <https://github.com/google/eddystone/blob/master/protocol-specification.md>).
//! Their identity goes in the readings; that the beacon is heard is the
//! presence event.

use super::{DecodeError, Decoded, Format, Measurement, Quantity};

/// Apple's company id.
pub const APPLE: u16 = 0x004c;
/// Eddystone's 16-bit service UUID.
pub const EDDYSTONE: u16 = 0xfeaa;

/// iBeacon: `02 15`, proximity UUID (16), major (2), minor (2), measured power (1).
pub fn ibeacon(d: &[u8]) -> Result<Decoded, DecodeError> {
    if d.len() != 23 {
        return Err(DecodeError::Length {
            format: "ibeacon",
            len: d.len(),
        });
    }
    if d[..2] != [0x02, 0x15] {
        return Err(DecodeError::Unsupported("ibeacon"));
    }
    let uuid =
        uuid::Uuid::from_slice(&d[2..18]).map_err(|_| DecodeError::Unsupported("ibeacon"))?;
    Ok(Decoded {
        format: Some(Format::Ibeacon),
        readings: vec![
            Measurement {
                name: "uuid",
                value: Quantity::Text(uuid.to_string()),
                unit: "",
            },
            Measurement::number("major", f64::from(u16::from_be_bytes([d[18], d[19]])), ""),
            Measurement::number("minor", f64::from(u16::from_be_bytes([d[20], d[21]])), ""),
            Measurement::number("measured_power", f64::from(d[22] as i8), "dBm"),
        ],
        packet_id: None,
        raw: None,
    })
}

/// URL scheme prefixes (Eddystone-URL).
const SCHEMES: [&str; 4] = ["http://www.", "https://www.", "http://", "https://"];
/// URL expansions for bytes 0x00–0x0D (Eddystone-URL).
const EXPANSIONS: [&str; 14] = [
    ".com/", ".org/", ".edu/", ".net/", ".info/", ".biz/", ".gov/", ".com", ".org", ".edu", ".net",
    ".info", ".biz", ".gov",
];

/// Eddystone UID, URL or TLM.
pub fn eddystone(d: &[u8]) -> Result<Decoded, DecodeError> {
    let len = |format| DecodeError::Length {
        format,
        len: d.len(),
    };
    let text = |name, s: String| Measurement {
        name,
        value: Quantity::Text(s),
        unit: "",
    };
    let readings = match d.first() {
        Some(0x00) => {
            // UID: tx power at 0 m, namespace (10), instance (6), two reserved bytes optional.
            if !(18..=20).contains(&d.len()) {
                return Err(len("eddystone-uid"));
            }
            vec![
                text("namespace", hex::encode(&d[2..12])),
                text("instance", hex::encode(&d[12..18])),
                Measurement::number("tx_power", f64::from(d[1] as i8), "dBm"),
            ]
        }
        Some(0x10) => {
            if !(3..=20).contains(&d.len()) {
                return Err(len("eddystone-url"));
            }
            let scheme = SCHEMES
                .get(usize::from(d[2]))
                .ok_or(DecodeError::Unsupported("eddystone-url"))?;
            let mut url = String::from(*scheme);
            for &b in &d[3..] {
                match EXPANSIONS.get(usize::from(b)) {
                    Some(e) => url.push_str(e),
                    None if (0x21..0x7f).contains(&b) => url.push(char::from(b)),
                    None => return Err(DecodeError::Unsupported("eddystone-url")),
                }
            }
            vec![
                text("url", url),
                Measurement::number("tx_power", f64::from(d[1] as i8), "dBm"),
            ]
        }
        Some(0x20) => {
            // TLM version 0: battery mV, temperature 8.8 fixed point, PDU count, uptime in 0.1 s.
            if d.len() != 14 {
                return Err(len("eddystone-tlm"));
            }
            if d[1] != 0 {
                return Err(DecodeError::Unsupported("eddystone-tlm"));
            }
            let mut r = Vec::with_capacity(4);
            let mv = u16::from_be_bytes([d[2], d[3]]);
            if mv != 0 {
                r.push(Measurement::number(
                    "battery_voltage",
                    f64::from(mv) / 1000.0,
                    "V",
                ));
            }
            let t = i16::from_be_bytes([d[4], d[5]]);
            if t != i16::MIN {
                r.push(Measurement::number(
                    "temperature",
                    f64::from(t) / 256.0,
                    "Cel",
                ));
            }
            r.push(Measurement::number(
                "advertisements",
                f64::from(u32::from_be_bytes([d[6], d[7], d[8], d[9]])),
                "",
            ));
            r.push(Measurement::number(
                "uptime",
                f64::from(u32::from_be_bytes([d[10], d[11], d[12], d[13]])) / 10.0,
                "s",
            ));
            r
        }
        Some(_) => return Err(DecodeError::Unsupported("eddystone")),
        None => return Err(len("eddystone")),
    };
    Ok(Decoded {
        format: Some(Format::Eddystone),
        readings,
        packet_id: None,
        raw: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(d: &Decoded, name: &str) -> String {
        match &d
            .readings
            .iter()
            .find(|r| r.name == name)
            .expect(name)
            .value
        {
            Quantity::Text(t) => t.clone(),
            other => panic!("{other:?}"),
        }
    }

    // Apple's AirLocate sample proximity UUID, major 1, minor 2, -59 dBm at 1 m.
    #[test]
    fn ibeacon_frame() {
        let d = hex::decode("0215E2C56DB5DFFB48D2B060D0F5A71096E000010002C5").expect("hex");
        let d = ibeacon(&d).expect("ibeacon");
        assert_eq!(text_of(&d, "uuid"), "e2c56db5-dffb-48d2-b060-d0f5a71096e0");
        assert_eq!(d.readings[1], Measurement::number("major", 1.0, ""));
        assert_eq!(d.readings[2], Measurement::number("minor", 2.0, ""));
        assert_eq!(
            d.readings[3],
            Measurement::number("measured_power", -59.0, "dBm")
        );
        assert!(ibeacon(&[0x02, 0x15]).is_err());
    }

    // Eddystone-URL: scheme 0x03 "https://", "goo.gl/S6zT6P" as in the
    // specification's example (no expansion bytes).
    #[test]
    fn eddystone_url_frame() {
        let mut frame = vec![0x10, 0xeb, 0x03];
        frame.extend_from_slice(b"goo.gl/S6zT6P");
        let d = eddystone(&frame).expect("url");
        assert_eq!(text_of(&d, "url"), "https://goo.gl/S6zT6P");
        let d = eddystone(&[0x10, 0x00, 0x00, b'x', 0x07]).expect("url with an expansion");
        assert_eq!(text_of(&d, "url"), "http://www.x.com");
    }

    #[test]
    fn eddystone_uid_and_tlm_frames() {
        let uid = hex::decode("00E8EDD26B3B0E4F5E79A0C9AA0000000000000100").expect("hex");
        let d = eddystone(&uid[..20]).expect("uid");
        assert_eq!(text_of(&d, "namespace"), "edd26b3b0e4f5e79a0c9");
        assert_eq!(text_of(&d, "instance"), "aa0000000000");
        // TLM: 3000 mV, 25.5 °C (0x1980), 1000 PDUs, 3600.0 s.
        let tlm = hex::decode("20000BB81980000003E800008CA0").expect("hex");
        let d = eddystone(&tlm).expect("tlm");
        assert_eq!(
            d.readings[0],
            Measurement::number("battery_voltage", 3.0, "V")
        );
        assert_eq!(
            d.readings[1],
            Measurement::number("temperature", 25.5, "Cel")
        );
        assert_eq!(
            d.readings[2],
            Measurement::number("advertisements", 1000.0, "")
        );
        assert_eq!(d.readings[3], Measurement::number("uptime", 3600.0, "s"));
    }
}
