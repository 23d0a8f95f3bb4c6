//! What a benchmark reading carries, both ways: the body a simulated device
//! sends (its sequence number and send time among the readings: JSON for
//! CoAP, Cayenne LPP for LoRaWAN), and how the subscriber finds them again
//! in an upstream batch (`docs/mqtt-api.md`, schema v2: readings are
//! `{ "name", "type", "value" }`).

use serde::Deserialize;
use std::borrow::Cow;
use std::io::Write;

/// Reading name of the device's sequence number (0, 1, 2, … per device).
pub const SEQ: &str = "seq";
/// Reading name of the device's send time, µs since the Unix epoch.
pub const SENT_US: &str = "sent_us";

/// Writes a device's JSON body (Content-Format 50) into `out`: every member
/// becomes a reading; `temperature` is the one the `scale` function changes.
/// Both numbers stay below 2^53, so they survive the trip as JSON doubles.
pub fn write_body(out: &mut Vec<u8>, seq: u64, sent_us: u64) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        r#"{{"seq":{seq},"sent_us":{sent_us},"temperature":21.5}}"#
    );
}

/// Cayenne LPP type of illuminance: 2 bytes unsigned, decoded as is, so
/// every 16-bit piece comes back exactly as a whole number.
const LPP_ILLUMINANCE: u8 = 0x65;
/// Cayenne LPP type of temperature (2 bytes signed, 0.1 °C).
const LPP_TEMPERATURE: u8 = 0x67;
/// LPP channels of the sequence number's 16-bit pieces, most significant first.
const LPP_SEQ_CHANNELS: [u8; 2] = [10, 11];
/// LPP channels of the send time's 16-bit pieces, most significant first.
const LPP_SENT_CHANNELS: [u8; 4] = [20, 21, 22, 23];
/// The decoder's names of those readings.
const LPP_SEQ_NAMES: [&str; 2] = ["illuminance_10", "illuminance_11"];
/// The decoder's names of those readings.
const LPP_SENT_NAMES: [&str; 4] = [
    "illuminance_20",
    "illuminance_21",
    "illuminance_22",
    "illuminance_23",
];

/// Writes a device's Cayenne LPP payload into `out`: `temperature_1` 21.5 °C,
/// then the sequence number (32 bits) and the send time (64 bits, Unix µs)
/// cut into 16-bit illuminance items (`illuminance_10`, `_11` and
/// `illuminance_20` … `_23`, most significant first), which the
/// `cayenne-lpp` decoder turns into whole-number readings, exactly. 28 bytes.
pub fn write_lpp(out: &mut Vec<u8>, seq: u64, sent_us: u64) {
    out.extend_from_slice(&[1, LPP_TEMPERATURE, 0, 215]);
    let seq = seq as u32;
    for (channel, piece) in LPP_SEQ_CHANNELS.iter().zip([seq >> 16, seq]) {
        out.extend_from_slice(&[*channel, LPP_ILLUMINANCE]);
        out.extend_from_slice(&(piece as u16).to_be_bytes());
    }
    for (i, channel) in LPP_SENT_CHANNELS.iter().enumerate() {
        out.extend_from_slice(&[*channel, LPP_ILLUMINANCE]);
        out.extend_from_slice(&((sent_us >> (48 - 16 * i)) as u16).to_be_bytes());
    }
}

/// One benchmark reading found upstream.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrival<'a> {
    /// The record's device.
    pub device: Cow<'a, str>,
    /// Its sequence number.
    pub seq: u64,
    /// When the device sent it, µs since the Unix epoch.
    pub sent_us: u64,
}

/// What one telemetry batch held.
#[derive(Debug, Default, PartialEq)]
pub struct BatchContent<'a> {
    /// Records carrying `seq` and `sent_us`.
    pub arrivals: Vec<Arrival<'a>>,
    /// Records without them (a readiness probe, say).
    pub others: u64,
}

#[derive(Deserialize)]
struct Batch<'a> {
    #[serde(borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    device: Cow<'a, str>,
    #[serde(borrow)]
    readings: Vec<ReadingValue<'a>>,
}

#[derive(Deserialize)]
struct ReadingValue<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    value: serde_json::Value,
}

impl ReadingValue<'_> {
    fn whole_number(&self) -> Option<u64> {
        let x = self.value.as_f64().filter(|_| self.kind == "number")?;
        (x >= 0.0 && x.fract() == 0.0 && x < 9.007_199_254_740_992e15).then_some(x as u64)
    }
}

/// Reads a telemetry batch (schema v2) and finds each record's `seq` and
/// `sent_us` readings.
pub fn parse_batch(payload: &[u8]) -> serde_json::Result<BatchContent<'_>> {
    let batch: Batch = serde_json::from_slice(payload)?;
    let mut content = BatchContent::default();
    for record in batch.records {
        let find = |name: &str| {
            record
                .readings
                .iter()
                .find(|r| r.name == name)
                .and_then(ReadingValue::whole_number)
        };
        // From `cayenne-lpp` (see `write_lpp`): 16-bit pieces.
        let pieces = |names: &[&str]| {
            names.iter().try_fold(0u64, |acc, name| {
                let piece = find(name).filter(|&p| p <= 0xffff)?;
                Some((acc << 16) | piece)
            })
        };
        let lpp = || Some((pieces(&LPP_SEQ_NAMES)?, pieces(&LPP_SENT_NAMES)?));
        let found = match (find(SEQ), find(SENT_US)) {
            (Some(seq), Some(sent_us)) => Some((seq, sent_us)),
            _ => lpp(),
        };
        match found {
            Some((seq, sent_us)) => content.arrivals.push(Arrival {
                device: record.device,
                seq,
                sent_us,
            }),
            _ => content.others += 1,
        }
    }
    Ok(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_json_with_three_readings() {
        let mut out = Vec::new();
        write_body(&mut out, 123, 1_764_000_000_123_456);
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["seq"], 123);
        assert_eq!(v["sent_us"], 1_764_000_000_123_456u64);
        assert_eq!(v["temperature"], 21.5);
    }

    /// A batch as the uplink writes it (docs/mqtt-api.md, v2), after `scale`.
    const BATCH: &str = r#"{"v":2,"gateway":"bench","sent_ms":1764000000950,"records":[
      {"id":"000003000000002a","stream":"telemetry","subject":"fn/scale/bench-7","device":"bench-7",
       "device_time_ms":null,"gateway_time_ms":1764000000250,"queued_ms":1764000000252,
       "cause":"0000030000000029","function":"scale",
       "readings":[{"name":"seq","type":"number","value":41.0},
                   {"name":"sent_us","type":"number","value":1764000000123456.0},
                   {"name":"temperature","type":"number","value":70.7,"unit":"degF"}],
       "meta":{},"raw":null},
      {"id":"000003000000002b","stream":"telemetry","subject":"coap/warmup","device":"warmup",
       "device_time_ms":null,"gateway_time_ms":1,"queued_ms":1,"cause":null,"function":null,
       "readings":[{"name":"temperature","type":"number","value":1}],"meta":{},"raw":null}]}"#;

    #[test]
    fn batch_records_with_and_without_a_sequence_number() {
        let content = parse_batch(BATCH.as_bytes()).expect("batch");
        assert_eq!(
            content.arrivals,
            vec![Arrival {
                device: "bench-7".into(),
                seq: 41,
                sent_us: 1_764_000_000_123_456
            }]
        );
        assert_eq!(content.others, 1);
    }

    #[test]
    fn seq_of_another_type_is_not_a_benchmark_reading() {
        let batch = r#"{"records":[{"device":"d","readings":[
            {"name":"seq","type":"text","value":"1"},{"name":"sent_us","type":"number","value":5}]}]}"#;
        let content = parse_batch(batch.as_bytes()).expect("batch");
        assert_eq!((content.arrivals.len(), content.others), (0, 1));
    }

    #[test]
    fn fractional_or_negative_seq_is_not_a_benchmark_reading() {
        for seq in ["1.5", "-1", "null"] {
            let batch = format!(
                r#"{{"records":[{{"device":"d","readings":[
                {{"name":"seq","type":"number","value":{seq}}},{{"name":"sent_us","type":"number","value":5}}]}}]}}"#
            );
            let content = parse_batch(batch.as_bytes()).expect("batch");
            assert_eq!(content.others, 1, "{seq}");
        }
    }

    #[test]
    fn lpp_pieces_are_put_back_together() {
        let mut lpp = Vec::new();
        write_lpp(&mut lpp, 0x0001_0002, 1_764_000_000_123_456);
        assert_eq!(lpp.len(), 28);
        // The readings as `cayenne-lpp` names them: `<type>_<channel>`.
        let mut readings = vec![
            r#"{"name":"temperature_1","type":"number","value":21.5,"unit":"Cel"}"#.to_owned(),
        ];
        for item in lpp[4..].chunks(4) {
            assert_eq!(item[1], LPP_ILLUMINANCE);
            let value = u16::from_be_bytes([item[2], item[3]]);
            readings.push(format!(
                r#"{{"name":"illuminance_{}","type":"number","value":{value}.0,"unit":"lx"}}"#,
                item[0]
            ));
        }
        let batch = format!(
            r#"{{"records":[{{"device":"5e00000000000007","readings":[{}]}}]}}"#,
            readings.join(",")
        );
        let content = parse_batch(batch.as_bytes()).expect("batch");
        assert_eq!(
            content.arrivals,
            vec![Arrival {
                device: "5e00000000000007".into(),
                seq: 0x0001_0002,
                sent_us: 1_764_000_000_123_456
            }]
        );
        // One piece missing: not a benchmark reading.
        let short = batch.replace(r#""name":"illuminance_23""#, r#""name":"illuminance_24""#);
        assert_eq!(parse_batch(short.as_bytes()).expect("batch").others, 1);
    }

    #[test]
    fn not_a_batch_is_an_error() {
        assert!(parse_batch(b"{\"v\":1}").is_err());
        assert!(parse_batch(b"online").is_err());
    }
}
