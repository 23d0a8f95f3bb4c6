//! `[coap]`: where the server listens, which paths and devices it takes,
//! its limits, and the devices to observe.

use crate::dtls::DtlsConfig;
use serde::Deserialize;
use sluice_adapter_common::device_id;
use sluice_adapter_common::{ByteSize, HumanDuration};
use std::net::SocketAddr;
use std::time::Duration;

/// The `[coap]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoapConfig {
    /// UDP addresses to listen on (IPv4 and IPv6).
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// First path segment of reading resources: devices send to `/<path>/<device>`.
    #[serde(default = "default_path")]
    pub path: String,
    /// If not empty, only these device ids are accepted (others get `4.03`).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Requests a device may make per second before getting `4.29`.
    #[serde(default = "default_rate")]
    pub rate_per_device: u32,
    /// Largest payload accepted, whole or assembled from Block1 blocks (`4.13` above).
    #[serde(default = "default_max_payload")]
    pub max_payload: ByteSize,
    /// How long an answered confirmable request is remembered, so a
    /// retransmission gets the same answer and is not ingested twice
    /// (RFC 7252 EXCHANGE_LIFETIME).
    #[serde(default = "default_exchange_lifetime")]
    pub exchange_lifetime: HumanDuration,
    /// Most exchanges remembered at once; the oldest are forgotten first.
    #[serde(default = "default_max_exchanges")]
    pub max_exchanges: usize,
    /// Commit each answered request's exchange with its events and reload
    /// the unexpired ones at start, so a retransmission after a crash or
    /// restart gets the original answer and is not ingested again. `false`
    /// keeps them in memory only (one row less per request).
    #[serde(default = "default_true")]
    pub durable_exchanges: bool,
    /// Max-Age sent with `5.03` when the queue refuses: when to retry.
    #[serde(default = "default_retry_after")]
    pub retry_after: HumanDuration,
    /// Devices whose readings are fetched rather than pushed.
    #[serde(default)]
    pub observe: Vec<ObserveConfig>,
    /// CoAP over DTLS (`coaps://`) on its own listener, if present.
    #[serde(default)]
    pub dtls: Option<DtlsConfig>,
}

/// `[[coap.observe]]`: a device that serves its readings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveConfig {
    /// Device id: events get subject `coap/<device>`.
    pub device: String,
    /// The resource, `coap://host:port/path`.
    pub uri: String,
    /// Register an Observe (RFC 7641); `false` polls with GET only.
    #[serde(default = "default_true")]
    pub observe: bool,
    /// Poll interval when the device does not support Observe, and the
    /// longest silence before an observation is registered again.
    #[serde(default = "default_poll")]
    pub poll: HumanDuration,
}

impl Default for CoapConfig {
    fn default() -> Self {
        CoapConfig {
            listen: default_listen(),
            path: default_path(),
            allow: Vec::new(),
            rate_per_device: default_rate(),
            max_payload: default_max_payload(),
            exchange_lifetime: default_exchange_lifetime(),
            max_exchanges: default_max_exchanges(),
            durable_exchanges: default_true(),
            retry_after: default_retry_after(),
            observe: Vec::new(),
            dtls: None,
        }
    }
}

/// The CoAP port on every IPv4 and IPv6 address.
fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 5683)),
        SocketAddr::from(([0u16; 8], 5683)),
    ]
}

/// `/r/<device>`.
fn default_path() -> String {
    "r".into()
}

/// Generous for sensors, which report every few seconds at most.
fn default_rate() -> u32 {
    20
}

/// A large SenML pack; Block1 brings it in pieces.
fn default_max_payload() -> ByteSize {
    ByteSize(64 << 10)
}

/// RFC 7252's EXCHANGE_LIFETIME with default transmission parameters.
fn default_exchange_lifetime() -> HumanDuration {
    HumanDuration(crate::timing::EXCHANGE_LIFETIME)
}

/// Bounds the memory of the exchange cache (about 100 bytes each).
fn default_max_exchanges() -> usize {
    10_000
}

/// Long enough for a full queue to drain somewhat.
fn default_retry_after() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// On: `observe` registers, and exchanges survive restarts.
fn default_true() -> bool {
    true
}

/// Thirty seconds.
fn default_poll() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl CoapConfig {
    /// Problems as (key below `coap`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.listen.is_empty() && self.observe.is_empty() && self.dtls.is_none() {
            problems.push((
                "listen".into(),
                "listens nowhere and observes nothing".into(),
            ));
        }
        if self.path.is_empty() || self.path.contains('/') {
            problems.push((
                "path".into(),
                "must be one path segment, without `/`".into(),
            ));
        }
        if self.rate_per_device == 0 {
            problems.push(("rate_per_device".into(), "must be at least 1".into()));
        }
        if !(64..=(16 << 20)).contains(&self.max_payload.bytes()) {
            problems.push((
                "max_payload".into(),
                "must be between 64 B and 16 MiB".into(),
            ));
        }
        if self.max_exchanges == 0 {
            problems.push(("max_exchanges".into(), "must be at least 1".into()));
        }
        if let Some(dtls) = &self.dtls {
            problems.extend(
                dtls.validate()
                    .into_iter()
                    .map(|(key, message)| (format!("dtls.{key}"), message)),
            );
        }
        for (i, device) in self.allow.iter().enumerate() {
            if let Err(e) = device_id::check(device) {
                problems.push((format!("allow[{i}]"), format!("device id {e}")));
            }
        }
        for (i, o) in self.observe.iter().enumerate() {
            if let Err(e) = device_id::check(&o.device) {
                problems.push((format!("observe[{i}].device"), format!("device id {e}")));
            }
            if let Err(e) = crate::observe::parse_uri(&o.uri) {
                problems.push((format!("observe[{i}].uri"), e));
            }
            if o.poll.get() < Duration::from_millis(100) {
                problems.push((
                    format!("observe[{i}].poll"),
                    "must be at least 100 ms".into(),
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_follow_the_one_id_rule() {
        let config = CoapConfig {
            allow: vec!["ok".into(), "a/b".into(), String::new()],
            observe: vec![ObserveConfig {
                device: "x+".into(),
                uri: "coap://127.0.0.1/r".into(),
                observe: true,
                poll: default_poll(),
            }],
            ..CoapConfig::default()
        };
        assert_eq!(
            config.validate(),
            vec![
                ("allow[1]".to_owned(), "device id contains `/`".to_owned()),
                ("allow[2]".to_owned(), "device id is empty".to_owned()),
                (
                    "observe[0].device".to_owned(),
                    "device id contains `+` or `#`".to_owned()
                ),
            ]
        );
    }
}
