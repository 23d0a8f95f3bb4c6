//! `[control]`: remote and local management. Who may send signed commands
//! (operator keys, each optionally limited to some commands), how fresh a
//! command must be, where the gateway's own key and the local socket live.

use super::{HumanDuration, Problem};
use serde::{Deserialize, Deserializer};
use std::path::{Path, PathBuf};

/// Every command name the control plane knows, in `docs/mqtt-api.md` order.
pub const COMMANDS: &[&str] = &[
    "ping",
    "status",
    "config.get",
    "config.apply",
    "function.deploy",
    "function.remove",
    "function.list",
    "function.resume",
    "device.downlink",
    "queue.stats",
    "queue.purge",
    "adapter.restart",
    "log.level",
];

/// `[control]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// How far a command's timestamp may be from the gateway's clock.
    #[serde(default = "default_max_skew")]
    pub max_skew: HumanDuration,
    /// The local control socket; defaults to `<data_dir>/control.sock`.
    pub socket: Option<PathBuf>,
    /// The gateway's own Ed25519 key (replies are signed with it); created
    /// on first start if absent. Defaults to `<data_dir>/gateway.key`.
    pub key_file: Option<PathBuf>,
    /// Replies kept for repeated command ids.
    #[serde(default = "default_reply_cache")]
    pub reply_cache: usize,
    /// Keys allowed to sign commands.
    #[serde(default)]
    pub operators: Vec<OperatorConfig>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            max_skew: default_max_skew(),
            socket: None,
            key_file: None,
            reply_cache: default_reply_cache(),
            operators: Vec::new(),
        }
    }
}

/// Two minutes: NTP-synced clocks agree far better, and a captured command
/// is useless after this (its nonce is remembered at least as long).
fn default_max_skew() -> HumanDuration {
    HumanDuration::secs(120)
}

/// 256 replies: an operator's retries of recent commands, a few KiB each.
fn default_reply_cache() -> usize {
    256
}

/// `[[control.operators]]`: one operator key.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Who holds the key (in logs and replies).
    pub name: String,
    /// The Ed25519 public key, base64 (`sluice keygen` prints it).
    pub public_key: PublicKey,
    /// The commands this key may send; absent: all of them.
    pub commands: Option<Vec<String>>,
}

impl OperatorConfig {
    /// Whether this key may send `command`.
    pub fn permits(&self, command: &str) -> bool {
        self.commands
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == command))
    }
}

/// An Ed25519 public key: 32 bytes, written in base64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses the base64 form.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("public key is not base64: {e}"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("public key has {} bytes, Ed25519 has 32", b.len()))?;
        Ok(PublicKey(key))
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PublicKey::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl ControlConfig {
    /// The local socket's path.
    pub fn socket_path(&self, data_dir: &Path) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| data_dir.join("control.sock"))
    }

    /// The gateway key file's path.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("gateway.key"))
    }
}

/// Problems of `[control]`, each at its key path.
pub(super) fn validate(c: &ControlConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    if c.reply_cache == 0 {
        problems.push(Problem::at_key(
            "control.reply_cache".into(),
            "must be at least 1".into(),
        ));
    }
    if c.max_skew.get() < std::time::Duration::from_secs(1) {
        problems.push(Problem::at_key(
            "control.max_skew".into(),
            "must be at least 1 s".into(),
        ));
    }
    for (i, o) in c.operators.iter().enumerate() {
        if o.name.is_empty() {
            problems.push(Problem::at_key(
                format!("control.operators[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if c.operators[..i]
            .iter()
            .any(|p| p.public_key == o.public_key)
        {
            problems.push(Problem::at_key(
                format!("control.operators[{i}].public_key"),
                format!("the key of `{}` is listed twice", o.name),
            ));
        }
        for (j, command) in o.commands.iter().flatten().enumerate() {
            if !COMMANDS.contains(&command.as_str()) {
                problems.push(Problem::at_key(
                    format!("control.operators[{i}].commands[{j}]"),
                    format!(
                        "unknown command `{command}`; known: {}",
                        COMMANDS.join(", ")
                    ),
                ));
            }
        }
    }
    problems
}
