//! The gateway's TOML configuration: typed, strict (unknown keys are errors),
//! in human units, with defaults that are safe on a Raspberry Pi.
//!
//! Syntax errors and type errors carry the byte span toml reports;
//! [`Config::validate`] collects every semantic problem with its key path, and
//! [`ConfigError`] renders all of them as `file:line:column: message`, finding
//! the line of a key path in the source text.

mod control;
mod diagnostics;
mod functions;

pub use control::{COMMANDS, ControlConfig, OperatorConfig, PublicKey};
pub use diagnostics::{ConfigError, Problem};
pub use functions::{Forward, FunctionConfig, MAX_CHAIN, PipelineConfig};
pub use sluice_adapter_common::units::{ByteSize, HumanDuration};

use sluice_adapter_common::Adapter;

use crate::subject::SubjectPattern;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Who this gateway is and where it keeps its data.
    #[serde(default)]
    pub gateway: GatewayConfig,
    /// The store-and-forward queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// The MQTT uplink to the cloud.
    #[serde(default)]
    pub uplink: UplinkConfig,
    /// What reaches the queue besides function outputs, and dead letters.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// WebAssembly functions run on matching events and on schedules.
    #[serde(default)]
    pub functions: Vec<FunctionConfig>,
    /// `[coap]`: the CoAP adapter (absent: off).
    pub coap: Option<sluice_coap::CoapConfig>,
    /// `[modbus]`: the Modbus adapter (absent: off).
    pub modbus: Option<sluice_modbus::ModbusConfig>,
    /// `[lorawan]`: the LoRaWAN adapter (absent: off).
    pub lorawan: Option<sluice_lorawan::LorawanConfig>,
    /// `[ble]`: the BLE adapter (absent: off).
    pub ble: Option<sluice_ble::BleConfig>,
    /// Remote (signed MQTT commands) and local (Unix socket) management.
    #[serde(default)]
    pub control: ControlConfig,
}

/// Every adapter Sluice has, one variant each, holding its config section.
// A handful of these exist per config; boxing the larger sections would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum AdapterConfig {
    /// `[coap]`.
    Coap(sluice_coap::CoapConfig),
    /// `[modbus]`.
    Modbus(sluice_modbus::ModbusConfig),
    /// `[lorawan]`.
    Lorawan(sluice_lorawan::LorawanConfig),
    /// `[ble]`.
    Ble(sluice_ble::BleConfig),
}

impl AdapterConfig {
    /// The adapter behind the section: validation, claims, opening.
    pub fn adapter(&self) -> &dyn Adapter {
        match self {
            AdapterConfig::Coap(c) => c,
            AdapterConfig::Modbus(c) => c,
            AdapterConfig::Lorawan(c) => c,
            AdapterConfig::Ble(c) => c,
        }
    }

    /// The adapter's name (its section).
    pub fn name(&self) -> &'static str {
        self.adapter().name()
    }
}

/// `[gateway]`: identity and storage location.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Gateway id: part of every MQTT topic and of the upstream records.
    #[serde(default = "default_gateway_id")]
    pub id: GatewayId,
    /// Folder for the queue database (relative paths are relative to the working directory).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            id: default_gateway_id(),
            data_dir: default_data_dir(),
        }
    }
}

/// The gateway id when none is configured: `sluice`.
fn default_gateway_id() -> GatewayId {
    GatewayId("sluice".into())
}

/// Where systemd's `StateDirectory=sluice` puts state.
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/sluice")
}

/// A gateway id: 1–64 characters of `A–Z a–z 0–9 - _ .`, safe inside an MQTT topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayId(String);

impl GatewayId {
    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GatewayId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if s.is_empty() || s.len() > 64 || !s.chars().all(ok_char) {
            return Err(format!(
                "gateway id `{s}` must be 1-64 characters of A-Z, a-z, 0-9, `-`, `_` or `.`"
            ));
        }
        Ok(GatewayId(s.to_owned()))
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GatewayId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How hard a commit tries to survive trouble.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Accepted events survive a crash or kill of the process, but the last
    /// commits before a power cut may be lost (SQLite WAL, `synchronous=NORMAL`:
    /// no fsync per commit).
    Process,
    /// Accepted events survive power loss too (`synchronous=FULL`: the WAL is
    /// fsynced on every commit). Costs one fsync per group commit and more SD wear.
    Power,
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::Process => "process",
            Durability::Power => "power",
        })
    }
}

/// `[queue]`: the SQLite store-and-forward queue.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Database file; defaults to `<data_dir>/queue.db`.
    pub path: Option<PathBuf>,
    /// Crash safety of an accepted event.
    #[serde(default = "default_durability")]
    pub durability: Durability,
    /// Most events committed in one transaction (group commit).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Submissions waiting for the writer before producers are made to wait.
    #[serde(default = "default_ingest_capacity")]
    pub ingest_capacity: usize,
    /// Streams, tried in order; an event goes to the first whose subjects match.
    #[serde(default = "default_streams")]
    pub streams: Vec<StreamConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            path: None,
            durability: default_durability(),
            max_batch: default_max_batch(),
            ingest_capacity: default_ingest_capacity(),
            streams: default_streams(),
        }
    }
}

/// `process`: survives crashes without an fsync per commit, which spares SD cards.
fn default_durability() -> Durability {
    Durability::Process
}

/// Large enough to amortize a commit over thousands of events, small enough to keep latency low.
fn default_max_batch() -> usize {
    8192
}

/// Bounds the memory held by producers waiting on the writer.
fn default_ingest_capacity() -> usize {
    256
}

/// One catch-all stream, `telemetry`.
fn default_streams() -> Vec<StreamConfig> {
    vec![StreamConfig::catch_all("telemetry")]
}

/// What to do when a stream is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// Make room by deleting the stream's oldest records: the cloud loses the
    /// oldest data, producers never wait. Every dropped record is counted.
    DropOldest,
    /// Refuse new events: the producer gets `QueueFull` and must slow down or
    /// retry (CoAP answers 5.03), so the device keeps the data. Every refusal is counted.
    RejectNew,
}

impl Overflow {
    /// The name used in config and stats.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropOldest => "drop_oldest",
            Overflow::RejectNew => "reject_new",
        }
    }
}

/// `[[queue.streams]]`: a class of records with its own bounds and priority.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Unique name, used in stats and upstream records.
    pub name: String,
    /// Subject patterns that route events to this stream.
    pub subjects: Vec<SubjectPattern>,
    /// Lower drains first (alerts before bulk telemetry).
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Most records the stream holds.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Most bytes (encoded events) the stream holds.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// What happens when either bound is reached.
    #[serde(default = "default_overflow")]
    pub overflow: Overflow,
    /// Records older than this are expired instead of sent (none by default).
    pub ttl: Option<HumanDuration>,
}

impl StreamConfig {
    /// A stream that takes every subject, with default bounds.
    pub fn catch_all(name: &str) -> StreamConfig {
        StreamConfig {
            name: name.to_owned(),
            subjects: vec![SubjectPattern::from_str("#").unwrap_or_else(|_| unreachable!())],
            priority: default_priority(),
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            overflow: default_overflow(),
            ttl: None,
        }
    }
}

/// Middle priority, so alerts can go before and bulk after.
fn default_priority() -> u8 {
    100
}

/// A million records: days of telemetry from dozens of devices.
fn default_max_records() -> u64 {
    1_000_000
}

/// 256 MiB: a small share of a typical 16-32 GB SD card.
fn default_max_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

/// Field telemetry usually prefers fresh data over old.
fn default_overflow() -> Overflow {
    Overflow::DropOldest
}

/// `[uplink]`: the MQTT connection to the cloud.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// Broker address, `mqtt://host:port` or `mqtts://host:port`.
    #[serde(default = "default_broker")]
    pub url: BrokerUrl,
    /// First level of every topic; `<topic_root>/<gateway id>/…`.
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
    /// MQTT client id; defaults to the gateway id.
    pub client_id: Option<String>,
    /// Username and password, if the broker wants them.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<String>,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive")]
    pub keep_alive: HumanDuration,
    /// Most records in one published batch.
    #[serde(default = "default_batch_max_records")]
    pub batch_max_records: usize,
    /// Most bytes in one published batch payload.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: ByteSize,
    /// Upper bound on how long a record waits for its batch to fill while
    /// other batches are in flight; an idle uplink publishes at once.
    #[serde(default = "default_linger")]
    pub linger: HumanDuration,
    /// Batches published and not yet acknowledged, at most.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// First reconnect delay; doubles up to `reconnect_max`, with jitter.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: HumanDuration,
    /// Longest reconnect delay while the broker cannot be reached: fresh
    /// readings flow within this (plus the connection attempt) of the broker
    /// coming back. A broker that refuses the connection is retried at most
    /// every minute, or every `reconnect_max` if longer.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: HumanDuration,
    /// Interval of the health message (counters).
    #[serde(default = "default_health_interval")]
    pub health_interval: HumanDuration,
    /// TLS with X.509 client authentication, required for `mqtts://`.
    pub tls: Option<TlsConfig>,
}

impl Default for UplinkConfig {
    fn default() -> Self {
        UplinkConfig {
            url: default_broker(),
            topic_root: default_topic_root(),
            client_id: None,
            username: None,
            password: None,
            keep_alive: default_keep_alive(),
            batch_max_records: default_batch_max_records(),
            batch_max_bytes: default_batch_max_bytes(),
            linger: default_linger(),
            max_inflight: default_max_inflight(),
            reconnect_min: default_reconnect_min(),
            reconnect_max: default_reconnect_max(),
            health_interval: default_health_interval(),
            tls: None,
        }
    }
}

/// A broker on the gateway itself.
fn default_broker() -> BrokerUrl {
    BrokerUrl {
        tls: false,
        host: "127.0.0.1".into(),
        port: 1883,
    }
}

/// `sluice`.
fn default_topic_root() -> String {
    "sluice".into()
}

/// Short enough to notice a dead link within a minute on cellular links.
fn default_keep_alive() -> HumanDuration {
    HumanDuration::secs(30)
}

/// 500 records: large enough to amortize a PUBACK, small enough for slow links.
fn default_batch_max_records() -> usize {
    500
}

/// 256 KiB: well under common broker packet limits.
fn default_batch_max_bytes() -> ByteSize {
    ByteSize(256 << 10)
}

/// One second: only an upper bound, reached when acknowledgements are slow;
/// an idle uplink publishes at once and batches form while others are in flight.
fn default_linger() -> HumanDuration {
    HumanDuration::secs(1)
}

/// Eight batches in flight keep a high-latency link busy.
fn default_max_inflight() -> u16 {
    8
}

/// Half a second.
fn default_reconnect_min() -> HumanDuration {
    HumanDuration::millis(500)
}

/// Five seconds: readings flow within seconds of a broker outage of any
/// length ending; the jitter spreads a fleet's reconnects over half of it.
fn default_reconnect_max() -> HumanDuration {
    HumanDuration::secs(5)
}

/// One minute.
fn default_health_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

/// `[uplink.tls]`: files in PEM format.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// CA certificate(s) that signed the broker's certificate.
    pub ca: PathBuf,
    /// The gateway's client certificate (chain).
    pub cert: Option<PathBuf>,
    /// The key of the client certificate (PKCS#1, PKCS#8 or SEC1).
    pub key: Option<PathBuf>,
}

/// What a PEM file named by `[uplink.tls]` must hold.
#[derive(Clone, Copy)]
enum PemKind {
    Certificates,
    PrivateKey,
}

impl PemKind {
    /// Reads the file and checks that it holds at least one item of this kind.
    fn check(self, file: &Path) -> Result<(), String> {
        use rustls_pki_types::pem::{self, PemObject};
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let describe = |e: pem::Error| match e {
            pem::Error::Io(io) => format!("cannot read: {io}"),
            other => format!("not valid PEM: {other:?}"),
        };
        match self {
            PemKind::Certificates => {
                let certs = CertificateDer::pem_file_iter(file)
                    .map_err(describe)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(describe)?;
                if certs.is_empty() {
                    return Err("holds no PEM certificate".into());
                }
            }
            PemKind::PrivateKey => {
                PrivateKeyDer::from_pem_file(file).map_err(|e| match e {
                    pem::Error::NoItemsFound => {
                        "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".into()
                    }
                    other => describe(other),
                })?;
            }
        }
        Ok(())
    }
}

/// A parsed broker URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
}

impl FromStr for BrokerUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = s.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(format!(
                "broker url `{s}` must start with mqtt:// or mqtts://"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("broker url `{s}`: unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("broker url `{s}` has no valid host"));
        }
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| format!("broker url `{s}`: bad port `{p}`"))?,
            None => default_port,
        };
        Ok(BrokerUrl {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl<'de> Deserialize<'de> for BrokerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// Reads, parses and validates a config file, and checks that the files it names can be read.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, |_| Vec::new())
    }

    /// Like [`Config::load`], then, if that found nothing wrong, runs
    /// `more`: checks that belong to other modules (`sluice check` compiles
    /// the function modules against the ABI). Their problems are rendered
    /// like the config's own, at `file:line:column` of their key paths.
    pub fn load_with(
        path: &Path,
        more: impl FnOnce(&Config) -> Vec<Problem>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        let origin = path.display().to_string();
        let mut config = Config::parse(&text, &origin)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for f in &mut config.functions {
            if f.module.is_relative() {
                f.module = dir.join(&f.module);
            }
        }
        let mut problems = config.environment_problems();
        if problems.is_empty() {
            problems = more(&config);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::new(&origin, &text, problems))
        }
    }

    /// Parses and validates config text; `origin` names it in error messages.
    /// Pure: looks at nothing but the text.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let syntax = diagnostics::syntax_problems(text);
        if !syntax.is_empty() {
            return Err(ConfigError::new(origin, text, syntax));
        }
        let config: Config = toml::from_str(text).map_err(|e| {
            ConfigError::new(origin, text, vec![Problem::at_span(e.span(), e.message())])
        })?;
        let mut config = config;
        config.subscribe_decoders();
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::new(origin, text, problems))
        }
    }

    /// Subscribes each LoRaWAN profile's decoder function to the uplinks
    /// of the profile's devices (`lorawan/<dev_eui>/up`), and each raw BLE
    /// device's decoder to its events (`ble/<device>`).
    fn subscribe_decoders(&mut self) {
        let lorawan = self.lorawan.iter().flat_map(|l| l.decoder_subjects());
        let ble = self.ble.iter().flat_map(|b| b.decoder_subjects());
        let subjects: Vec<(String, String)> = lorawan.chain(ble).collect();
        // Thousands of devices: look up what is there in a set, not a list.
        let mut present: std::collections::HashSet<(String, String)> = self
            .functions
            .iter()
            .flat_map(|f| f.subscribe.iter().map(|p| (f.name.clone(), p.to_string())))
            .collect();
        for (function, subject) in subjects {
            let Ok(pattern) = subject.parse::<SubjectPattern>() else {
                continue;
            };
            if let Some(f) = self.functions.iter_mut().find(|f| f.name == function)
                && present.insert((function, subject))
            {
                f.subscribe.push(pattern);
            }
        }
    }

    /// Every semantic problem that parsing cannot see, each with its key path.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut at = |key: String, msg: String| problems.push(Problem::at_key(key, msg));
        let q = &self.queue;
        if q.max_batch == 0 {
            at("queue.max_batch".into(), "must be at least 1".into());
        }
        if q.ingest_capacity == 0 {
            at("queue.ingest_capacity".into(), "must be at least 1".into());
        }
        if q.streams.is_empty() {
            at(
                "queue.streams".into(),
                "at least one stream is needed".into(),
            );
        }
        for (i, s) in q.streams.iter().enumerate() {
            let key = |field: &str| format!("queue.streams[{i}].{field}");
            if q.streams[..i].iter().any(|o| o.name == s.name) {
                at(key("name"), format!("stream `{}` is defined twice", s.name));
            }
            if s.name.is_empty() {
                at(key("name"), "must not be empty".into());
            }
            if s.subjects.is_empty() {
                at(
                    key("subjects"),
                    format!("stream `{}` subscribes no subjects", s.name),
                );
            }
            if s.max_records == 0 {
                at(key("max_records"), "must be at least 1".into());
            }
            if s.max_bytes.bytes() < 1024 {
                at(key("max_bytes"), "must be at least 1 KiB".into());
            }
        }
        let catch_all = q
            .streams
            .iter()
            .any(|s| s.subjects.iter().any(|p| p.as_str() == "#"));
        if !q.streams.is_empty() && !catch_all {
            at(
                "queue.streams".into(),
                "no stream subscribes `#`, so some events would have nowhere to go; \
                 add a last stream with subjects = [\"#\"]"
                    .into(),
            );
        }

        let u = &self.uplink;
        if u.topic_root.is_empty()
            || u.topic_root.contains(['+', '#'])
            || u.topic_root.starts_with('/')
        {
            at(
                "uplink.topic_root".into(),
                "must be non-empty, without `+`, `#` or a leading `/`".into(),
            );
        }
        if u.batch_max_records == 0 {
            at(
                "uplink.batch_max_records".into(),
                "must be at least 1".into(),
            );
        }
        if !(1024..=(64 << 20)).contains(&u.batch_max_bytes.bytes()) {
            at(
                "uplink.batch_max_bytes".into(),
                "must be between 1 KiB and 64 MiB".into(),
            );
        }
        if !(1..=1000).contains(&u.max_inflight) {
            at(
                "uplink.max_inflight".into(),
                "must be between 1 and 1000".into(),
            );
        }
        if u.reconnect_min.get() < std::time::Duration::from_millis(10) {
            // Zero would retry a refused connection in a busy loop.
            at(
                "uplink.reconnect_min".into(),
                "must be at least 10 ms".into(),
            );
        }
        if u.reconnect_min > u.reconnect_max {
            at(
                "uplink.reconnect_min".into(),
                "must not exceed uplink.reconnect_max".into(),
            );
        }
        if u.keep_alive.get() < std::time::Duration::from_secs(1) {
            at("uplink.keep_alive".into(), "must be at least 1 s".into());
        }
        match (&u.tls, u.url.tls) {
            (None, true) => at(
                "uplink.url".into(),
                "is mqtts:// but [uplink.tls] is missing (it needs at least `ca`)".into(),
            ),
            (Some(_), false) => at(
                "uplink.url".into(),
                "is mqtt:// but [uplink.tls] is set; use mqtts://".into(),
            ),
            _ => {}
        }
        if let Some(tls) = &u.tls
            && tls.cert.is_some() != tls.key.is_some()
        {
            at("uplink.tls".into(), "`cert` and `key` go together".into());
        }
        if u.password.is_some() && u.username.is_none() {
            at("uplink.password".into(), "needs uplink.username".into());
        }
        problems.extend(functions::validate(&self.functions, &self.pipeline));
        problems.extend(control::validate(&self.control));
        let adapters = self.adapters();
        for a in &adapters {
            let name = a.name();
            for (key, message) in a.adapter().validate() {
                problems.push(Problem::at_key(format!("{name}.{key}"), message));
            }
        }
        problems.extend(claim_collisions(&adapters));
        if let Some(ble) = &self.ble {
            for (i, d) in ble.devices.iter().enumerate() {
                if let Some(decoder) = &d.decoder
                    && !self.functions.iter().any(|f| &f.name == decoder)
                {
                    problems.push(Problem::at_key(
                        format!("ble.devices[{i}].decoder"),
                        format!("no [[functions]] entry is named `{decoder}`"),
                    ));
                }
            }
        }
        if let Some(lorawan) = &self.lorawan {
            for (name, profile) in &lorawan.profiles {
                if let Some(decoder) = &profile.decoder
                    && !self.functions.iter().any(|f| &f.name == decoder)
                {
                    problems.push(Problem::at_key(
                        format!("lorawan.profiles.{name}.decoder"),
                        format!("no [[functions]] entry is named `{decoder}`"),
                    ));
                }
            }
        }
        problems
    }

    /// Problems of the machine rather than the text: files the config names
    /// that cannot be read, or TLS files that hold no usable PEM data.
    pub fn environment_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let Some(tls) = &self.uplink.tls {
            let mut check = |name: &str, file: &Path, what: PemKind| {
                if let Err(e) = what.check(file) {
                    problems.push(Problem::at_key(
                        format!("uplink.tls.{name}"),
                        format!("{}: {e}", file.display()),
                    ));
                }
            };
            check("ca", &tls.ca, PemKind::Certificates);
            if let Some(cert) = &tls.cert {
                check("cert", cert, PemKind::Certificates);
            }
            if let Some(key) = &tls.key {
                check("key", key, PemKind::PrivateKey);
            }
        }
        if let Some(file) = self.ble.as_ref().and_then(|b| b.replay.as_ref())
            && let Err(e) = std::fs::File::open(file)
        {
            problems.push(Problem::at_key(
                "ble.replay".into(),
                format!("cannot read {}: {e}", file.display()),
            ));
        }
        for (i, f) in self.functions.iter().enumerate() {
            if let Err(e) = std::fs::File::open(&f.module) {
                problems.push(Problem::at_key(
                    format!("functions[{i}].module"),
                    format!("cannot read {}: {e}", f.module.display()),
                ));
            }
        }
        problems
    }

    /// Every configured adapter, in a fixed order.
    pub fn adapters(&self) -> Vec<AdapterConfig> {
        let coap = self.coap.clone().map(AdapterConfig::Coap);
        let modbus = self.modbus.clone().map(AdapterConfig::Modbus);
        let lorawan = self.lorawan.clone().map(AdapterConfig::Lorawan);
        let ble = self.ble.clone().map(AdapterConfig::Ble);
        coap.into_iter()
            .chain(modbus)
            .chain(lorawan)
            .chain(ble)
            .collect()
    }

    /// The queue database file.
    pub fn queue_path(&self) -> PathBuf {
        self.queue
            .path
            .clone()
            .unwrap_or_else(|| self.gateway.data_dir.join("queue.db"))
    }

    /// A short human summary, printed by `sluice check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "gateway {} (data in {})",
            self.gateway.id,
            self.gateway.data_dir.display()
        );
        let _ = writeln!(
            out,
            "queue {} ({} durability)",
            self.queue_path().display(),
            self.queue.durability
        );
        for s in &self.queue.streams {
            let subjects: Vec<&str> = s.subjects.iter().map(SubjectPattern::as_str).collect();
            let ttl = s.ttl.map(|t| format!(", ttl {t}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  stream {} [{}] priority {}, up to {} records / {}, {}{ttl}",
                s.name,
                subjects.join(", "),
                s.priority,
                s.max_records,
                s.max_bytes,
                s.overflow.as_str()
            );
        }
        for f in &self.functions {
            let subjects: Vec<&str> = f.subscribe.iter().map(SubjectPattern::as_str).collect();
            let every = f.every.map(|t| format!(", every {t}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "function {} ({}) on [{}]{every}, fuel {}, memory {}, state {}",
                f.name,
                f.module.display(),
                subjects.join(", "),
                f.fuel,
                f.memory_max,
                f.state_max
            );
        }
        for a in self.adapters() {
            let _ = writeln!(out, "{}", a.adapter().summary());
        }
        let u = &self.uplink;
        let _ = writeln!(
            out,
            "uplink {} as {}, topics under {}/{}/, batches of up to {} records / {}, linger {}",
            u.url,
            u.client_id.as_deref().unwrap_or(self.gateway.id.as_str()),
            u.topic_root,
            self.gateway.id,
            u.batch_max_records,
            u.batch_max_bytes,
            u.linger
        );
        out
    }
}

/// Two claims on one resource (a port, a serial device, a controller),
/// whether by two adapters or twice by one: a problem at each key, each
/// naming the other.
fn claim_collisions(adapters: &[AdapterConfig]) -> Vec<Problem> {
    let claims: Vec<(String, sluice_adapter_common::Claim)> = adapters
        .iter()
        .flat_map(|a| {
            let name = a.name();
            a.adapter()
                .claims()
                .into_iter()
                .map(move |c| (format!("{name}.{}", c.key), c))
        })
        .collect();
    collisions(&claims)
}

/// The pure part of [`claim_collisions`]: claims keyed by their full config key.
fn collisions(claims: &[(String, sluice_adapter_common::Claim)]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, (key_a, a)) in claims.iter().enumerate() {
        for (key_b, b) in &claims[i + 1..] {
            if a.resource.collides_with(&b.resource) {
                problems.push(Problem::at_key(
                    key_a.clone(),
                    format!("{} is also claimed by `{key_b}`", a.resource),
                ));
                problems.push(Problem::at_key(
                    key_b.clone(),
                    format!("{} is also claimed by `{key_a}`", b.resource),
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod claim_tests {
    use super::*;
    use sluice_adapter_common::{Claim, Resource};

    fn claim(key: &str, resource: Resource) -> (String, Claim) {
        (
            key.to_owned(),
            Claim {
                key: key.to_owned(),
                resource,
            },
        )
    }

    #[test]
    fn two_adapters_on_one_port_are_both_named() {
        let claims = [
            claim(
                "coap.listen[0]",
                Resource::Udp("0.0.0.0:1700".parse().expect("addr")),
            ),
            claim(
                "lorawan.listen",
                Resource::Udp("127.0.0.1:1700".parse().expect("addr")),
            ),
            claim(
                "modbus.buses[0].path",
                Resource::Serial("/dev/ttyUSB0".into()),
            ),
            claim(
                "modbus.buses[1].path",
                Resource::Serial("/dev/ttyUSB1".into()),
            ),
        ];
        let problems = collisions(&claims);
        let text: Vec<String> = problems.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(problems.len(), 2, "{text:?}");
        assert!(
            text[0].contains("coap.listen[0]") && text[0].contains("lorawan.listen"),
            "{text:?}"
        );
        assert!(
            text[1].contains("lorawan.listen") && text[1].contains("coap.listen[0]"),
            "{text:?}"
        );
    }
}
