//! `[coap.dtls]`: CoAP over DTLS 1.2 (`coaps://`, RFC 7252 §9) on its own
//! listener, and how devices prove who they are: pre-shared keys by
//! identity, or certificates signed by a device CA.

use serde::Deserialize;
use sluice_adapter_common::{HumanDuration, device_id};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The `[coap.dtls]` section. Present means the DTLS listener runs.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DtlsConfig {
    /// UDP addresses for `coaps://` (IPv4 and IPv6).
    #[serde(default = "default_listen")]
    pub listen: Vec<SocketAddr>,
    /// Pre-shared keys: device identity → key (text, or `hex:` and hex digits).
    #[serde(default)]
    pub psk: BTreeMap<String, Secret>,
    /// A TOML file of more `identity = "key"` lines, read when the listener
    /// opens (so keys can live outside the main config, readable by the
    /// gateway only).
    #[serde(default)]
    pub psk_file: Option<PathBuf>,
    /// The gateway's certificate chain (PEM), for certificate handshakes.
    #[serde(default)]
    pub certificate: Option<PathBuf>,
    /// The private key (PEM) of `certificate`.
    #[serde(default)]
    pub private_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign device certificates. A device that
    /// presents one is known by its certificate's Common Name.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Whether a device may post readings for a device id other than its
    /// DTLS identity (a concentrator speaking for others). Off: the path's
    /// device must be the identity, or the request gets `4.03`.
    #[serde(default)]
    pub any_device: bool,
    /// Most sessions at once; handshakes beyond it are dropped.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A session without traffic this long is closed; the device shakes hands again.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// A handshake must finish within this. A wrong pre-shared key shows
    /// only here: DTLS drops records that fail to decrypt without a word.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            listen: default_listen(),
            psk: BTreeMap::new(),
            psk_file: None,
            certificate: None,
            private_key: None,
            client_ca: None,
            any_device: false,
            max_sessions: default_max_sessions(),
            idle_timeout: default_idle_timeout(),
            handshake_timeout: default_handshake_timeout(),
        }
    }
}

/// The `coaps` port on every IPv4 and IPv6 address.
fn default_listen() -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], 5684)),
        SocketAddr::from(([0u16; 8], 5684)),
    ]
}

/// A session holds about 20 KiB in OpenSSL: 1000 is 20 MiB at most.
fn default_max_sessions() -> usize {
    1000
}

/// Ten minutes: longer than most reporting intervals, short enough to
/// reclaim the sessions of devices that went away.
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

/// Room for a handshake whose flights are lost a few times (DTLS
/// retransmits after 1, 2, 4, 8 s).
fn default_handshake_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(20))
}

/// Longest pre-shared key taken (OpenSSL's limit is 256 bytes).
pub const MAX_PSK_BYTES: usize = 64;

/// A pre-shared key: its bytes, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The key's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Reads `text`, or `hex:` and an even number of hex digits.
    pub fn parse(text: &str) -> Result<Secret, String> {
        let bytes = match text.strip_prefix("hex:") {
            Some(digits) => decode_hex(digits)?,
            None => text.as_bytes().to_vec(),
        };
        if bytes.is_empty() || bytes.len() > MAX_PSK_BYTES {
            return Err(format!(
                "a pre-shared key must be 1 to {MAX_PSK_BYTES} bytes"
            ));
        }
        Ok(Secret(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Secret::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn decode_hex(digits: &str) -> Result<Vec<u8>, String> {
    if !digits.len().is_multiple_of(2) {
        return Err("hex key has an odd number of digits".into());
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            digits
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| format!("`{digits}` is not hex"))
        })
        .collect()
}

/// The contents of a `psk_file`.
pub type PskFile = BTreeMap<String, Secret>;

impl DtlsConfig {
    /// Problems as (key below `coap.dtls`, message). Files are checked when
    /// the listener opens, where a failure names the file.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.listen.is_empty() {
            problems.push(("listen".into(), "must name at least one address".into()));
        }
        for identity in self.psk.keys() {
            if let Err(e) = device_id::check(identity) {
                problems.push((format!("psk.{identity}"), format!("identity {e}")));
            }
        }
        let with_certs = [&self.certificate, &self.private_key, &self.client_ca]
            .iter()
            .filter(|p| p.is_some())
            .count();
        if with_certs != 0 && with_certs != 3 {
            problems.push((
                "certificate".into(),
                "`certificate`, `private_key` and `client_ca` go together".into(),
            ));
        }
        if self.psk.is_empty() && self.psk_file.is_none() && with_certs == 0 {
            problems.push((
                "psk".into(),
                "no way for a device to authenticate: give `psk`, `psk_file` or `certificate`, `private_key` and `client_ca`".into(),
            ));
        }
        if self.max_sessions == 0 {
            problems.push(("max_sessions".into(), "must be at least 1".into()));
        }
        if self.idle_timeout.get() < Duration::from_secs(1) {
            problems.push(("idle_timeout".into(), "must be at least 1 s".into()));
        }
        if self.handshake_timeout.get() < Duration::from_millis(100) {
            problems.push(("handshake_timeout".into(), "must be at least 100 ms".into()));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_text_or_hex() {
        assert_eq!(Secret::parse("secret").map(|s| s.0), Ok(b"secret".to_vec()));
        assert_eq!(Secret::parse("hex:0aFF").map(|s| s.0), Ok(vec![0x0a, 0xff]));
        assert!(Secret::parse("hex:0a0").is_err(), "odd digits");
        assert!(Secret::parse("hex:zz").is_err(), "not hex");
        assert!(Secret::parse("").is_err(), "empty");
        assert!(Secret::parse(&"k".repeat(65)).is_err(), "too long");
        assert_eq!(
            format!("{:?}", Secret(b"secret".to_vec())),
            "Secret(6 bytes)"
        );
    }

    #[test]
    fn a_section_needs_a_way_to_authenticate_and_whole_certificate_settings() {
        let keys =
            |c: &DtlsConfig| -> Vec<String> { c.validate().into_iter().map(|(k, _)| k).collect() };
        assert_eq!(keys(&DtlsConfig::default()), ["psk"]);
        let psk = DtlsConfig {
            psk: [("sensor-1".to_owned(), Secret(b"k".to_vec()))].into(),
            ..DtlsConfig::default()
        };
        assert!(keys(&psk).is_empty());
        let half = DtlsConfig {
            certificate: Some("gw.pem".into()),
            ..psk.clone()
        };
        assert_eq!(keys(&half), ["certificate"]);
        let bad_identity = DtlsConfig {
            psk: [("a/b".to_owned(), Secret(b"k".to_vec()))].into(),
            ..DtlsConfig::default()
        };
        assert_eq!(keys(&bad_identity), ["psk.a/b"]);
    }
}
