//! What a benchmark reading carries, both ways: the JSON body a simulated
//! device sends (its sequence number and send time among the readings), and
//! how the subscriber finds them again in an upstream batch (`docs/mqtt-api.md`,
//! schema v2: readings are `{ "name", "type", "value" }`).

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
        match (find(SEQ), find(SENT_US)) {
            (Some(seq), Some(sent_us)) => content.arrivals.push(Arrival {
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
    fn not_a_batch_is_an_error() {
        assert!(parse_batch(b"{\"v\":1}").is_err());
        assert!(parse_batch(b"online").is_err());
    }
}
