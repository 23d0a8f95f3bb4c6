//! The custom firmware formats for Xiaomi LYWSD03MMC thermometers
//! (<https://github.com/pvvx/ATC_MiThermometer#custom-format-all-data-little-endian>
//! and the original ATC1441 format), both service data of `0x181A`
//! (Environmental Sensing), told apart by length.

use super::{DecodeError, Decoded, Format, Measurement, scaled};

/// Environmental Sensing, the service both formats advertise under.
pub const SERVICE: u16 = 0x181a;
/// ATC1441: MAC, temperature, humidity, battery %, battery mV, counter.
const ATC_LEN: usize = 13;
/// pvvx: MAC, temperature, humidity, battery mV, battery %, counter, flags.
const PVVX_LEN: usize = 15;

/// ATC1441 or pvvx, by length.
pub fn decode_any(data: &[u8]) -> Result<Decoded, DecodeError> {
    match data.len() {
        ATC_LEN => atc1441(data),
        PVVX_LEN => pvvx(data),
        len => Err(DecodeError::Length {
            format: "atc1441/pvvx",
            len,
        }),
    }
}

/// ATC1441: big-endian; MAC as printed (6), temperature ×0.1 °C (i16),
/// humidity % (u8), battery % (u8), battery mV (u16), frame counter (u8).
pub fn atc1441(d: &[u8]) -> Result<Decoded, DecodeError> {
    let d: &[u8; ATC_LEN] = d.try_into().map_err(|_| DecodeError::Length {
        format: "atc1441",
        len: d.len(),
    })?;
    Ok(Decoded {
        format: Some(Format::Atc1441),
        readings: vec![
            Measurement::number(
                "temperature",
                scaled(f64::from(i16::from_be_bytes([d[6], d[7]])), 0.1),
                "Cel",
            ),
            Measurement::number("humidity", f64::from(d[8]), "%RH"),
            Measurement::number("battery", f64::from(d[9]), "%EL"),
            Measurement::number(
                "battery_voltage",
                f64::from(u16::from_be_bytes([d[10], d[11]])) / 1000.0,
                "V",
            ),
        ],
        packet_id: Some(u32::from(d[12])),
        raw: None,
    })
}

/// pvvx: little-endian; MAC reversed (6), temperature ×0.01 °C (i16),
/// humidity ×0.01 % (u16), battery mV (u16), battery % (u8), measurement
/// counter (u8), flags (u8: bit 1 the reed switch's state).
pub fn pvvx(d: &[u8]) -> Result<Decoded, DecodeError> {
    let d: &[u8; PVVX_LEN] = d.try_into().map_err(|_| DecodeError::Length {
        format: "pvvx",
        len: d.len(),
    })?;
    Ok(Decoded {
        format: Some(Format::Pvvx),
        readings: vec![
            Measurement::number(
                "temperature",
                scaled(f64::from(i16::from_le_bytes([d[6], d[7]])), 0.01),
                "Cel",
            ),
            Measurement::number(
                "humidity",
                scaled(f64::from(u16::from_le_bytes([d[8], d[9]])), 0.01),
                "%RH",
            ),
            Measurement::number(
                "battery_voltage",
                f64::from(u16::from_le_bytes([d[10], d[11]])) / 1000.0,
                "V",
            ),
            Measurement::number("battery", f64::from(d[12]), "%EL"),
        ],
        packet_id: Some(u32::from(d[13])),
        raw: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Frames laid out field by field as the firmware's README documents them.
    #[test]
    fn atc1441_frame() {
        let frame = [
            0xa4, 0xc1, 0x38, 0x8f, 0x80, 0xa5, // MAC A4:C1:38:8F:80:A5, as printed
            0x00, 0xd7, // 215 → 21.5 °C
            0x2f, // 47 %
            0x55, // battery 85 %
            0x0b, 0x8c, // 2956 mV
            0x2a, // frame counter 42
        ];
        let d = decode_any(&frame).expect("atc1441");
        assert_eq!(d.format, Some(Format::Atc1441));
        assert_eq!(
            d.readings,
            vec![
                Measurement::number("temperature", 21.5, "Cel"),
                Measurement::number("humidity", 47.0, "%RH"),
                Measurement::number("battery", 85.0, "%EL"),
                Measurement::number("battery_voltage", 2.956, "V"),
            ]
        );
        assert_eq!(d.packet_id, Some(42));
    }

    #[test]
    fn pvvx_frame() {
        let frame = [
            0xa5, 0x80, 0x8f, 0x38, 0xc1, 0xa4, // MAC A4:C1:38:8F:80:A5, reversed
            0x1a, 0xf8, // -2022 → -20.22 °C
            0x8e, 0x13, // 5006 → 50.06 %
            0x8c, 0x0b, // 2956 mV
            0x55, // battery 85 %
            0x07, // measurement counter 7
            0x04, // flags
        ];
        let d = decode_any(&frame).expect("pvvx");
        assert_eq!(d.format, Some(Format::Pvvx));
        assert_eq!(
            d.readings[0],
            Measurement::number("temperature", -20.22, "Cel")
        );
        assert_eq!(d.readings[1], Measurement::number("humidity", 50.06, "%RH"));
        assert_eq!(
            d.readings[2],
            Measurement::number("battery_voltage", 2.956, "V")
        );
        assert_eq!(d.readings[3], Measurement::number("battery", 85.0, "%EL"));
        assert_eq!(d.packet_id, Some(7));
    }

    #[test]
    fn other_lengths_are_refused() {
        assert!(matches!(
            decode_any(&[0; 14]),
            Err(DecodeError::Length { len: 14, .. })
        ));
        assert!(matches!(atc1441(&[0; 15]), Err(DecodeError::Length { .. })));
    }
}
