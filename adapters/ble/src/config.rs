//! `[ble]`: where advertisements come from (BlueZ or a replay file), the
//! devices they are mapped to, how each is decoded, de-duplicated and
//! watched for silence, and which GATT characteristics are read or written.

use crate::advertisement::uuid16;
use crate::decode::{Format, RawSource};
use crate::gatt_value::ValueType;
use crate::mac::Mac;
use serde::Deserialize;
use sluice_adapter_common::{HumanDuration, device_id};
use std::path::PathBuf;
use uuid::Uuid;

/// The `[ble]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BleConfig {
    /// `bluez` (the radio, through BlueZ over D-Bus) or `replay` (a file).
    #[serde(default)]
    pub source: SourceKind,
    /// The Bluetooth controller BlueZ scans with.
    #[serde(default = "default_controller")]
    pub controller: String,
    /// The JSON-lines file `source = "replay"` reads.
    pub replay: Option<PathBuf>,
    /// `recorded` (advertisements as far apart as their times) or `fast`.
    #[serde(default)]
    pub pace: Pace,
    /// Start the replay file again at its end (the demo's endless sensors).
    #[serde(default)]
    pub repeat: bool,
    /// A device silent for longer is reported gone.
    #[serde(default = "default_presence_timeout")]
    pub presence_timeout: HumanDuration,
    /// Readings of one device closer together than this are dropped (per device overridable).
    #[serde(default = "default_min_interval")]
    pub min_interval: HumanDuration,
    /// Longest wait between attempts to reach BlueZ or a GATT device again.
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// `[[ble.devices]]`: the devices listened to.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// Where advertisements come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The radio, through BlueZ (btleplug).
    #[default]
    Bluez,
    /// A JSON-lines file of captured advertisements.
    Replay,
}

/// How a replay file is paced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pace {
    /// As far apart as the times in the file say.
    #[default]
    Recorded,
    /// As fast as they are taken.
    Fast,
}

/// `[[ble.devices]]`: one device, by address or by name.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id (subject `ble/<id>`). With `name`, `{mac}` in it stands
    /// for the sender's address (`atc-{mac}` → `atc-a4c1388f80a5`).
    pub id: String,
    /// The device's address, `AA:BB:CC:DD:EE:FF`.
    pub mac: Option<String>,
    /// A name pattern (`*` and `?` wildcards) matched against the local name.
    pub name: Option<String>,
    /// The decoder; `auto` picks by what the advertisement carries.
    #[serde(default)]
    pub format: Format,
    /// BTHome bind key, 32 hex digits (encrypted BTHome only).
    pub bind_key: Option<String>,
    /// Overrides `[ble] min_interval` for this device.
    pub min_interval: Option<HumanDuration>,
    /// Overrides `[ble] presence_timeout` for this device.
    pub presence_timeout: Option<HumanDuration>,
    /// `format = "raw"`: the manufacturer data of this company id.
    pub company_id: Option<u16>,
    /// `format = "raw"`: the service data of this UUID (`"fcd2"` or a full UUID).
    pub service_uuid: Option<String>,
    /// `format = "raw"`: the function that decodes the raw data (subscribed to `ble/<id>`).
    pub decoder: Option<String>,
    /// GATT characteristics read on a schedule and written by downlinks.
    pub gatt: Option<GattConfig>,
}

/// `[ble.devices.gatt]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GattConfig {
    /// How often the device is connected to and read.
    #[serde(default = "default_gatt_every")]
    pub every: HumanDuration,
    /// Longest connect, read or write.
    #[serde(default = "default_gatt_timeout")]
    pub timeout: HumanDuration,
    /// Characteristics read each time.
    #[serde(default)]
    pub reads: Vec<CharacteristicConfig>,
    /// Characteristics downlinks may write, by resource name.
    #[serde(default)]
    pub writes: Vec<CharacteristicConfig>,
}

/// One characteristic and how its value is laid out.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CharacteristicConfig {
    /// Reading (or downlink resource) name.
    pub name: String,
    /// `"2a6e"` or a full UUID.
    pub uuid: String,
    /// Value layout: `u8`, `u16`, `u32`, `i8`, `i16`, `i32`, `f32`, `bool`, `utf8`, `bytes`.
    #[serde(rename = "type")]
    pub kind: ValueType,
    /// Multiplies a number read (and divides one written).
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// SenML unit of the reading.
    #[serde(default)]
    pub unit: String,
}

/// `hci0`: the first controller, the only one on most gateways.
fn default_controller() -> String {
    "hci0".to_owned()
}

/// Five minutes: sensors advertise every few seconds; a minute of radio
/// noise must not read as a device gone.
fn default_presence_timeout() -> HumanDuration {
    HumanDuration::secs(300)
}

/// None: every new measurement goes upstream.
fn default_min_interval() -> HumanDuration {
    HumanDuration::secs(0)
}

/// A minute: a gateway without a working controller asks BlueZ once a minute.
fn default_retry_max() -> HumanDuration {
    HumanDuration::secs(60)
}

/// Five minutes: a connection costs a battery device far more than an advertisement.
fn default_gatt_every() -> HumanDuration {
    HumanDuration::secs(300)
}

/// Ten seconds: BlueZ's own connection attempts take a few.
fn default_gatt_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

/// Values as read.
fn default_scale() -> f64 {
    1.0
}

/// `"2a6e"` (a 16-bit SIG UUID) or a full UUID.
pub fn parse_uuid(s: &str) -> Result<Uuid, String> {
    if s.len() == 4 {
        return u16::from_str_radix(s, 16)
            .map(uuid16)
            .map_err(|_| format!("`{s}` is not a 16-bit UUID"));
    }
    Uuid::parse_str(s).map_err(|_| {
        format!("`{s}` is not a UUID (`2a6e` or `0000fcd2-0000-1000-8000-00805f9b34fb`)")
    })
}

/// A bind key from 32 hex digits.
pub fn parse_key(s: &str) -> Result<[u8; 16], String> {
    let bytes = hex::decode(s).map_err(|_| "bind_key must be hex digits".to_owned())?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        format!(
            "bind_key must be 32 hex digits (16 bytes), not {}",
            2 * b.len()
        )
    })
}

impl DeviceConfig {
    /// The raw data a `raw` device hands its function.
    pub fn raw_source(&self) -> Option<RawSource> {
        if let Some(c) = self.company_id {
            return Some(RawSource::Company(c));
        }
        self.service_uuid
            .as_deref()
            .and_then(|u| parse_uuid(u).ok())
            .map(RawSource::Service)
    }
}

impl BleConfig {
    /// Problems as (key below `ble`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut at = |key: String, message: String| problems.push((key, message));
        match self.source {
            SourceKind::Bluez => {
                if self.replay.is_some() {
                    at("replay".into(), "only with source = \"replay\"".into());
                }
                let c = &self.controller;
                if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_alphanumeric()) {
                    at(
                        "controller".into(),
                        format!("`{c}` is not a controller name like `hci0`"),
                    );
                }
            }
            SourceKind::Replay => {
                if self.replay.is_none() {
                    at(
                        "replay".into(),
                        "source = \"replay\" needs the file to read".into(),
                    );
                }
            }
        }
        if self.devices.is_empty() {
            at("devices".into(), "no device to listen to".into());
        }
        let mut ids: Vec<&str> = Vec::new();
        let mut macs: Vec<Mac> = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let key = |k: &str| format!("devices[{i}].{k}");
            let id_checked = d.id.replace("{mac}", "000000000000");
            if let Err(e) = device_id::check(&id_checked) {
                at(key("id"), format!("device id {e}"));
            }
            if d.id.contains("{mac}") && d.name.is_none() {
                at(key("id"), "`{mac}` only with a `name` pattern".into());
            }
            if ids.contains(&d.id.as_str()) {
                at(key("id"), format!("device `{}` is defined twice", d.id));
            }
            ids.push(&d.id);
            match (&d.mac, &d.name) {
                (Some(_), Some(_)) | (None, None) => {
                    at(key("mac"), "give either `mac` or `name`".into())
                }
                (Some(mac), None) => match mac.parse::<Mac>() {
                    Ok(m) if macs.contains(&m) => at(key("mac"), format!("{m} is mapped twice")),
                    Ok(m) => macs.push(m),
                    Err(e) => at(key("mac"), e.to_string()),
                },
                (None, Some(pattern)) => {
                    if let Err(e) = glob::Pattern::new(pattern) {
                        at(key("name"), format!("bad name pattern: {e}"));
                    }
                }
            }
            if let Some(k) = &d.bind_key {
                if let Err(e) = parse_key(k) {
                    at(key("bind_key"), e);
                }
                if !matches!(d.format, Format::Auto | Format::Bthome) {
                    at(
                        key("bind_key"),
                        "only BTHome devices have a bind key".into(),
                    );
                }
            }
            if let Some(m) = d.min_interval
                && m.get() > std::time::Duration::from_secs(86_400)
            {
                at(key("min_interval"), "must be at most a day".into());
            }
            if let Some(t) = d.presence_timeout
                && t.get().is_zero()
            {
                at(key("presence_timeout"), "must be more than zero".into());
            }
            let raw_keys =
                d.company_id.is_some() || d.service_uuid.is_some() || d.decoder.is_some();
            if raw_keys && d.format != Format::Raw {
                at(
                    key("format"),
                    "company_id, service_uuid and decoder go with format = \"raw\"".into(),
                );
            }
            if d.company_id.is_some() && d.service_uuid.is_some() {
                at(
                    key("service_uuid"),
                    "give either company_id or service_uuid".into(),
                );
            }
            if let Some(u) = &d.service_uuid
                && let Err(e) = parse_uuid(u)
            {
                at(key("service_uuid"), e);
            }
            if let Some(f) = &d.decoder
                && let Err(e) = device_id::check(f)
            {
                at(key("decoder"), format!("function name {e}"));
            }
            if let Some(g) = &d.gatt {
                if self.source == SourceKind::Replay {
                    at(
                        key("gatt"),
                        "GATT needs source = \"bluez\" (a replay has no devices to connect to)"
                            .into(),
                    );
                }
                if d.mac.is_none() {
                    at(key("gatt"), "GATT needs the device's `mac`".into());
                }
                if g.every.get() < std::time::Duration::from_secs(1) {
                    at(key("gatt.every"), "must be at least 1 s".into());
                }
                if g.timeout.get().is_zero() {
                    at(key("gatt.timeout"), "must be more than zero".into());
                }
                if g.reads.is_empty() && g.writes.is_empty() {
                    at(key("gatt"), "no characteristic to read or write".into());
                }
                for (list, chars) in [("reads", &g.reads), ("writes", &g.writes)] {
                    let mut names: Vec<&str> = Vec::new();
                    for (j, c) in chars.iter().enumerate() {
                        let ckey = |k: &str| key(&format!("gatt.{list}[{j}].{k}"));
                        if let Err(e) = device_id::check(&c.name) {
                            at(ckey("name"), format!("name {e}"));
                        }
                        if names.contains(&c.name.as_str()) {
                            at(ckey("name"), format!("`{}` is listed twice", c.name));
                        }
                        names.push(&c.name);
                        if let Err(e) = parse_uuid(&c.uuid) {
                            at(ckey("uuid"), e);
                        }
                        if !c.scale.is_finite() || c.scale == 0.0 {
                            at(
                                ckey("scale"),
                                "must be a finite number other than zero".into(),
                            );
                        }
                    }
                }
            }
        }
        if self.presence_timeout.get().is_zero() {
            at("presence_timeout".into(), "must be more than zero".into());
        }
        if self.retry_max.get() < std::time::Duration::from_secs(1) {
            at("retry_max".into(), "must be at least 1 s".into());
        }
        problems
    }

    /// (function, subject) for each `raw` device with a `decoder`.
    pub fn decoder_subjects(&self) -> Vec<(String, String)> {
        self.devices
            .iter()
            .filter_map(|d| {
                let f = d.decoder.as_ref()?;
                let id = d.id.replace("{mac}", "+");
                Some((f.clone(), format!("ble/{id}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BleConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn a_good_section_has_no_problems() {
        let c = parse(
            r#"
source = "replay"
replay = "ads.jsonl"
[[devices]]
id = "kitchen"
mac = "C7:3B:0A:11:22:33"
bind_key = "231d39c1d7cc1ab1aee224cd096db932"
[[devices]]
id = "atc-{mac}"
name = "ATC_*"
format = "atc1441"
[[devices]]
id = "custom"
mac = "00:11:22:33:44:55"
format = "raw"
company_id = 0x1234
decoder = "my-decoder"
"#,
        );
        assert_eq!(c.validate(), Vec::<(String, String)>::new());
        assert_eq!(
            c.decoder_subjects(),
            vec![("my-decoder".to_owned(), "ble/custom".to_owned())]
        );
    }

    #[test]
    fn bad_keys_macs_and_missing_pieces_are_named() {
        let c = parse(
            r#"
controller = "hci 0"
[[devices]]
id = "a"
mac = "C7:3B:0A:11:22"
bind_key = "231d39c1"
[[devices]]
id = "a"
[[devices]]
id = "b"
mac = "00:11:22:33:44:55"
format = "ruuvi"
bind_key = "231d39c1d7cc1ab1aee224cd096db932"
[devices.gatt]
reads = [{ name = "t", uuid = "zz", type = "i16" }]
"#,
        );
        let keys: Vec<String> = c.validate().into_iter().map(|(k, _)| k).collect();
        for k in [
            "controller",
            "devices[0].mac",
            "devices[0].bind_key",
            "devices[1].id",
            "devices[1].mac",
            "devices[2].bind_key",
            "devices[2].gatt.reads[0].uuid",
        ] {
            assert!(keys.contains(&k.to_owned()), "{k} not in {keys:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(
            toml::from_str::<BleConfig>(
                "[[devices]]\nid = \"a\"\nmac = \"00:11:22:33:44:55\"\ncolour = 1\n"
            )
            .is_err()
        );
    }

    #[test]
    fn short_and_full_uuids() {
        assert_eq!(parse_uuid("2a6e").expect("short"), uuid16(0x2a6e));
        assert!(parse_uuid("0000fcd2-0000-1000-8000-00805f9b34fb").is_ok());
        assert!(parse_uuid("2a6").is_err());
        assert!(parse_key("00").is_err());
    }
}
