//! MQTT client options from the config: identity, last will, TLS with
//! client certificates. Only `src/uplink` knows topic names.

use crate::config::{Config, TlsConfig};
use rumqttc::{LastWill, MqttOptions, QoS, TlsConfiguration, Transport};
use serde::Serialize;
use std::time::Duration;

/// The topics of one gateway, under `<topic_root>/<gateway id>/`.
#[derive(Clone, Debug)]
pub struct Topics {
    /// Batches of upstream records (QoS 1).
    pub telemetry: String,
    /// Retained `online`/`offline` status, with the last will.
    pub status: String,
    /// Periodic counters (QoS 0).
    pub health: String,
    /// Commands to this gateway (subscribed, QoS 1).
    pub cmd: String,
    /// Commands to every gateway under the root (subscribed, QoS 1).
    pub fleet_cmd: String,
    /// Replies to commands (QoS 1).
    pub reply: String,
}

impl Topics {
    /// The topics for a config.
    pub fn new(config: &Config) -> Topics {
        Topics::of(&config.uplink.topic_root, config.gateway.id.as_str())
    }

    /// The topics of gateway `gateway` under `root`.
    pub fn of(root: &str, gateway: &str) -> Topics {
        let base = format!("{root}/{gateway}");
        Topics {
            telemetry: format!("{base}/telemetry"),
            status: format!("{base}/status"),
            health: format!("{base}/health"),
            cmd: format!("{base}/cmd"),
            fleet_cmd: fleet_cmd_topic(root),
            reply: format!("{base}/reply"),
        }
    }
}

/// The fleet's command topic under `root`.
pub fn fleet_cmd_topic(root: &str) -> String {
    format!("{root}/fleet/cmd")
}

/// The filter matching every gateway's replies under `root`.
pub fn all_replies_filter(root: &str) -> String {
    format!("{root}/+/reply")
}

/// What the retained `online` status says besides the state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Birth {
    /// SHA-256 of the running config's text.
    pub config_hash: String,
    /// Seconds since the process started.
    pub uptime_s: u64,
    /// Each adapter's state.
    pub adapters: std::collections::BTreeMap<String, String>,
}

/// The retained status payload.
#[derive(Serialize)]
pub struct Status<'a> {
    /// Schema version.
    pub v: u32,
    /// `online` or `offline`.
    pub state: &'a str,
    /// Gateway id.
    pub gateway: &'a str,
    /// Sluice version.
    pub version: &'a str,
    /// Why it went offline (`connection lost`, `shutdown`), if offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    /// When this status was produced (ms since the Unix epoch); absent in the last will.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    /// Config hash, uptime and adapters, when online.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub birth: Option<&'a Birth>,
}

/// Serialized status message.
pub fn status_payload(
    gateway: &str,
    state: &str,
    reason: Option<&str>,
    since_ms: Option<i64>,
) -> Vec<u8> {
    status_payload_with(gateway, state, reason, since_ms, None)
}

/// Serialized status message with what an `online` status adds.
pub fn status_payload_with(
    gateway: &str,
    state: &str,
    reason: Option<&str>,
    since_ms: Option<i64>,
    birth: Option<&Birth>,
) -> Vec<u8> {
    let status = Status {
        v: 1,
        state,
        gateway,
        version: env!("CARGO_PKG_VERSION"),
        reason,
        since_ms,
        birth,
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

/// Why the client options could not be built.
#[derive(Debug, thiserror::Error)]
#[error("uplink.tls.{key}: cannot read {path}: {source}")]
pub struct OptionsError {
    key: &'static str,
    path: String,
    #[source]
    source: std::io::Error,
}

/// rumqttc options for the configured broker.
pub fn mqtt_options(config: &Config, topics: &Topics) -> Result<MqttOptions, OptionsError> {
    let u = &config.uplink;
    let id = u
        .client_id
        .clone()
        .unwrap_or_else(|| config.gateway.id.to_string());
    let mut o = MqttOptions::new(id, u.url.host.clone(), u.url.port);
    o.set_keep_alive(u.keep_alive.get().max(Duration::from_secs(1)));
    // The queue resends what a lost session dropped; a clean session keeps the broker stateless.
    o.set_clean_session(true);
    o.set_inflight(u.max_inflight.saturating_add(2));
    let max_packet = u.batch_max_bytes.bytes() as usize + 4096;
    o.set_max_packet_size(64 << 10, max_packet);
    o.set_request_channel_capacity(u.max_inflight as usize + 8);
    let will = status_payload(
        config.gateway.id.as_str(),
        "offline",
        Some("connection lost"),
        None,
    );
    o.set_last_will(LastWill::new(&topics.status, will, QoS::AtLeastOnce, true));
    if let (Some(user), pass) = (&u.username, &u.password) {
        o.set_credentials(user.clone(), pass.clone().unwrap_or_default());
    }
    if let Some(tls) = &u.tls {
        o.set_transport(Transport::tls_with_config(tls_configuration(tls)?));
    }
    Ok(o)
}

fn tls_configuration(tls: &TlsConfig) -> Result<TlsConfiguration, OptionsError> {
    let read = |key: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| OptionsError {
            key,
            path: path.display().to_string(),
            source,
        })
    };
    let ca = read("ca", &tls.ca)?;
    let client_auth = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => Some((read("cert", cert)?, read("key", key)?)),
        _ => None,
    };
    Ok(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth,
    })
}
