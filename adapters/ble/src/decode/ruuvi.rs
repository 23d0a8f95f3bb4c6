//! Ruuvi data format 5, RAWv2
//! (<https://docs.ruuvi.com/communication/bluetooth-advertisements/data-format-5-rawv2>):
//! manufacturer data of company `0x0499`, 24 bytes, big-endian. A field at
//! its "not available" value (the largest unsigned, the smallest signed
//! value) gives no reading.

use super::{DecodeError, Decoded, Format, Measurement, scaled};

/// Ruuvi Innovations' company id.
pub const COMPANY: u16 = 0x0499;
/// Bytes of a RAWv2 payload.
const LEN: usize = 24;
/// Standard gravity: Ruuvi sends milli-g, SenML wants m/s².
const G: f64 = 9.806_65;

/// Decodes Ruuvi manufacturer data (format byte first).
pub fn decode(data: &[u8]) -> Result<Decoded, DecodeError> {
    match data.first() {
        Some(5) => {}
        Some(_) => return Err(DecodeError::Unsupported("ruuvi")),
        None => {
            return Err(DecodeError::Length {
                format: "ruuvi",
                len: 0,
            });
        }
    }
    let d: &[u8; LEN] = data.try_into().map_err(|_| DecodeError::Length {
        format: "ruuvi",
        len: data.len(),
    })?;
    let u16_at = |i: usize| u16::from_be_bytes([d[i], d[i + 1]]);
    let i16_at = |i: usize| i16::from_be_bytes([d[i], d[i + 1]]);
    let mut readings = Vec::with_capacity(10);
    let mut push = |name, value: Option<f64>, unit| {
        if let Some(v) = value {
            readings.push(Measurement::number(name, v, unit));
        }
    };
    let signed = |v: i16, f: f64| (v != i16::MIN).then(|| scaled(f64::from(v), f));
    push("temperature", signed(i16_at(1), 0.005), "Cel");
    push(
        "humidity",
        (u16_at(3) != u16::MAX).then(|| scaled(f64::from(u16_at(3)), 0.0025)),
        "%RH",
    );
    push(
        "pressure",
        (u16_at(5) != u16::MAX).then(|| f64::from(u16_at(5)) + 50_000.0),
        "Pa",
    );
    push("acceleration_x", signed(i16_at(7), G / 1000.0), "m/s2");
    push("acceleration_y", signed(i16_at(9), G / 1000.0), "m/s2");
    push("acceleration_z", signed(i16_at(11), G / 1000.0), "m/s2");
    let power = u16_at(13);
    let millivolts = power >> 5;
    let tx = power & 0x1f;
    push(
        "battery_voltage",
        (millivolts != 0x7ff).then(|| (f64::from(millivolts) + 1600.0) / 1000.0),
        "V",
    );
    push(
        "tx_power",
        (tx != 0x1f).then(|| f64::from(tx) * 2.0 - 40.0),
        "dBm",
    );
    push(
        "movement_counter",
        (d[15] != u8::MAX).then(|| f64::from(d[15])),
        "",
    );
    let sequence = u16_at(16);
    Ok(Decoded {
        format: Some(Format::Ruuvi),
        readings,
        packet_id: (sequence != u16::MAX).then_some(u32::from(sequence)),
        raw: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Quantity;

    fn values(hex: &str) -> (Vec<(&'static str, f64, &'static str)>, Option<u32>) {
        let data = hex::decode(hex).expect("hex");
        let d = decode(&data).expect(hex);
        let readings = d
            .readings
            .iter()
            .map(|r| match r.value {
                Quantity::Number(n) => (r.name, n, r.unit),
                _ => panic!("not a number"),
            })
            .collect();
        (readings, d.packet_id)
    }

    fn close(got: &[(&str, f64, &str)], want: &[(&str, f64)]) {
        assert_eq!(got.len(), want.len(), "{got:?}");
        for ((name, v, _), (wname, w)) in got.iter().zip(want) {
            assert_eq!(name, wname);
            assert!((v - w).abs() < 1e-6, "{name}: {v} != {w}");
        }
    }

    const MG: f64 = G / 1000.0;

    // The test vectors of the format's documentation ("Case: valid data",
    // "maximum values", "minimum values", "invalid values"); acceleration
    // in m/s² (the documentation gives g).
    #[test]
    fn valid_data() {
        let (r, seq) = values("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F");
        close(
            &r,
            &[
                ("temperature", 24.3),
                ("humidity", 53.49),
                ("pressure", 100_044.0),
                ("acceleration_x", 4.0 * MG),
                ("acceleration_y", -4.0 * MG),
                ("acceleration_z", 1036.0 * MG),
                ("battery_voltage", 2.977),
                ("tx_power", 4.0),
                ("movement_counter", 66.0),
            ],
        );
        assert_eq!(seq, Some(205));
        assert_eq!(r[0].2, "Cel");
    }

    #[test]
    fn maximum_values() {
        let (r, seq) = values("057FFFFFFEFFFE7FFF7FFF7FFFFFDEFEFFFECBB8334C884F");
        close(
            &r,
            &[
                ("temperature", 163.835),
                ("humidity", 163.835),
                ("pressure", 115_534.0),
                ("acceleration_x", 32_767.0 * MG),
                ("acceleration_y", 32_767.0 * MG),
                ("acceleration_z", 32_767.0 * MG),
                ("battery_voltage", 3.646),
                ("tx_power", 20.0),
                ("movement_counter", 254.0),
            ],
        );
        assert_eq!(seq, Some(65_534));
    }

    #[test]
    fn minimum_values() {
        let (r, seq) = values("058001000000008001800180010000000000CBB8334C884F");
        close(
            &r,
            &[
                ("temperature", -163.835),
                ("humidity", 0.0),
                ("pressure", 50_000.0),
                ("acceleration_x", -32_767.0 * MG),
                ("acceleration_y", -32_767.0 * MG),
                ("acceleration_z", -32_767.0 * MG),
                ("battery_voltage", 1.6),
                ("tx_power", -40.0),
                ("movement_counter", 0.0),
            ],
        );
        assert_eq!(seq, Some(0));
    }

    #[test]
    fn invalid_values_give_no_readings() {
        let (r, seq) = values("058000FFFFFFFF800080008000FFFFFFFFFFFFFFFFFFFFFF");
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(seq, None);
    }

    #[test]
    fn other_formats_and_lengths_are_refused() {
        assert_eq!(
            decode(&hex::decode("03291A1ECE1EFC18F94202CA0B53").expect("hex")),
            Err(DecodeError::Unsupported("ruuvi"))
        );
        assert_eq!(
            decode(&[5, 0, 1]),
            Err(DecodeError::Length {
                format: "ruuvi",
                len: 3
            })
        );
    }
}
