//! `[modbus]`: serial buses and their line settings, Modbus TCP
//! connections, reusable register maps (profiles) and the devices polled.

use crate::register::{PointType, WordOrder};
use serde::Deserialize;
use sluice_adapter_common::{HumanDuration, device_id};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Most registers one read may ask for (FC 3 and 4; Modbus application protocol §6.3).
pub const MAX_READ_REGISTERS: u16 = 125;
/// Most bits one read may ask for (FC 1 and 2).
pub const MAX_READ_BITS: u16 = 2000;
/// Most registers one write may carry (FC 16).
pub const MAX_WRITE_REGISTERS: u16 = 123;

/// The `[modbus]` section.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModbusConfig {
    /// `[[modbus.buses]]`: serial lines (RS-485, RS-232), one task each.
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    /// `[[modbus.tcp]]`: Modbus TCP connections, one task each.
    #[serde(default)]
    pub tcp: Vec<TcpConfig>,
    /// `[modbus.profiles.<name>]`: register maps named once, used by many devices.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// `[[modbus.devices]]`: what is polled, on which bus.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// Parity of a serial line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Parity {
    /// No parity bit.
    #[default]
    None,
    /// Even parity (the Modbus default for RTU, 8E1).
    Even,
    /// Odd parity.
    Odd,
}

/// `[[modbus.buses]]`: one serial line and how to talk on it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Name devices use to say they are on this bus.
    pub name: String,
    /// The serial device, e.g. `/dev/ttyUSB0` or `/dev/serial/by-id/…`.
    pub path: PathBuf,
    /// Bits per second.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `none`, `even` or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// 5 to 8 (RTU uses 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// 1 or 2.
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long a device has to answer a request.
    #[serde(default = "default_response_timeout")]
    pub response_timeout: HumanDuration,
    /// Silence kept between the end of one exchange and the next request,
    /// at least the 3.5 characters RTU requires (added automatically).
    #[serde(default = "default_inter_request_delay")]
    pub inter_request_delay: HumanDuration,
    /// Requests repeated after a timeout, a CRC error or a busy device.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Polls in a row without an answer before a device is reported offline.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    /// Longest wait between polls of an offline device.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: HumanDuration,
}

/// `[[modbus.tcp]]`: one Modbus TCP connection (a device or a gateway to a bus).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// Name devices use to say they are behind this connection.
    pub name: String,
    /// `host:port` (port 502 is the standard).
    pub address: String,
    /// How long a device has to answer a request (also the connect timeout).
    #[serde(default = "default_response_timeout")]
    pub response_timeout: HumanDuration,
    /// Silence kept between one exchange and the next request.
    #[serde(default = "default_tcp_inter_request_delay")]
    pub inter_request_delay: HumanDuration,
    /// Requests repeated after a timeout or a busy device.
    #[serde(default = "default_retries")]
    pub retries: u8,
    /// Polls in a row without an answer before a device is reported offline.
    #[serde(default = "default_offline_after")]
    pub offline_after: u32,
    /// Longest wait between polls of an offline device.
    #[serde(default = "default_backoff_max")]
    pub backoff_max: HumanDuration,
}

/// `[modbus.profiles.<name>]`: a register map.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// The points every device of this profile has.
    #[serde(default)]
    pub points: Vec<PointConfig>,
}

/// When a device's readings are published.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Publish {
    /// Every reading of every poll.
    #[default]
    EveryPoll,
    /// Only readings that changed by more than their point's `deadband`
    /// since they were last published (every reading on the first poll and
    /// after the device comes back online).
    OnChange,
}

/// `[[modbus.devices]]`: one device polled by its register map.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Device id: events get subject `modbus/<id>`.
    pub id: String,
    /// Name of the bus (`[[modbus.buses]]`) or connection (`[[modbus.tcp]]`) it is on.
    pub bus: String,
    /// Unit id (slave address): 1 to 247 on a serial bus, 0 to 255 over TCP.
    pub unit: u8,
    /// How often it is polled.
    #[serde(default = "default_poll")]
    pub poll: HumanDuration,
    /// A profile whose points it has (before its own `points`).
    pub profile: Option<String>,
    /// Points of its own.
    #[serde(default)]
    pub points: Vec<PointConfig>,
    /// `every_poll` or `on_change`.
    #[serde(default)]
    pub publish: Publish,
    /// Largest run of unwanted registers (or 16 × as many bits) read to
    /// join two points into one request; 0 joins only adjacent points.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
}

/// The four Modbus tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    /// Read-write bits (FC 1, 5, 15).
    Coil,
    /// Read-only bits (FC 2).
    DiscreteInput,
    /// Read-write registers (FC 3, 6, 16).
    Holding,
    /// Read-only registers (FC 4).
    Input,
}

impl Table {
    /// Whether the table holds bits rather than registers.
    pub fn is_bits(self) -> bool {
        matches!(self, Table::Coil | Table::DiscreteInput)
    }

    /// Whether the table can be written.
    pub fn is_writable(self) -> bool {
        matches!(self, Table::Coil | Table::Holding)
    }

    /// The read function code.
    pub fn read_function(self) -> u8 {
        match self {
            Table::Coil => 1,
            Table::DiscreteInput => 2,
            Table::Holding => 3,
            Table::Input => 4,
        }
    }

    /// The name used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Coil => "coil",
            Table::DiscreteInput => "discrete_input",
            Table::Holding => "holding",
            Table::Input => "input",
        }
    }
}

/// Which write function a writable point uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteFunction {
    /// FC 5 for a coil, FC 6 for one register, FC 16 for more.
    #[default]
    Single,
    /// FC 15 for coils, FC 16 for registers, even for one (for devices
    /// that implement only the "multiple" functions).
    Multiple,
}

/// One named value on a device.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PointConfig {
    /// Reading name.
    pub name: String,
    /// `coil`, `discrete_input`, `holding` or `input`.
    pub table: Table,
    /// Protocol (zero-based) address of its first register or bit.
    pub address: u16,
    /// Value type; `bool` for coils and discrete inputs, `u16` for registers if absent.
    #[serde(rename = "type")]
    pub kind: Option<PointType>,
    /// Registers of a `string`.
    pub length: Option<u16>,
    /// Word and byte order of multi-register values (`ABCD`, `CDAB`, `BADC`, `DCBA`).
    #[serde(default)]
    pub order: WordOrder,
    /// One bit (0–15) of a register, for a `bool` in `holding` or `input`.
    pub bit: Option<u8>,
    /// Multiplies the raw value.
    #[serde(default = "default_scale")]
    pub scale: f64,
    /// Added after scaling.
    #[serde(default)]
    pub offset: f64,
    /// Unit of the reading (SenML symbols preferred: `V`, `A`, `W`, `Wh`, `Cel`).
    #[serde(default)]
    pub unit: String,
    /// Smallest change (scaled) published with `publish = "on_change"`.
    #[serde(default)]
    pub deadband: f64,
    /// Whether downlinks may write it (coils and holding registers only).
    #[serde(default)]
    pub writable: bool,
    /// `single` or `multiple`: which write function code to use.
    #[serde(default)]
    pub write_function: WriteFunction,
}

impl PointConfig {
    /// The type, with the table's default.
    pub fn kind(&self) -> PointType {
        self.kind.unwrap_or(if self.table.is_bits() {
            PointType::Bool
        } else {
            PointType::U16
        })
    }

    /// Registers (or bits) it spans.
    pub fn span(&self) -> u16 {
        if self.table.is_bits() {
            1
        } else {
            self.kind().registers(self.length.unwrap_or(0))
        }
    }
}

/// 9600 baud: the Modbus default and what most meters ship with.
fn default_baud() -> u32 {
    9600
}

/// Eight data bits, as RTU requires.
fn default_data_bits() -> u8 {
    8
}

/// One stop bit.
fn default_stop_bits() -> u8 {
    1
}

/// Half a second: a slow meter at 9600 baud answers within 100 ms.
fn default_response_timeout() -> HumanDuration {
    HumanDuration::millis(500)
}

/// Nothing beyond the 3.5 characters RTU requires.
fn default_inter_request_delay() -> HumanDuration {
    HumanDuration::millis(0)
}

/// None: TCP frames are delimited by their header.
fn default_tcp_inter_request_delay() -> HumanDuration {
    HumanDuration::millis(0)
}

/// Two: a lost frame on a noisy line does not cost a reading.
fn default_retries() -> u8 {
    2
}

/// Three polls in a row without an answer.
fn default_offline_after() -> u32 {
    3
}

/// A minute: an offline device costs the bus one timeout a minute at most.
fn default_backoff_max() -> HumanDuration {
    HumanDuration::secs(60)
}

/// Ten seconds.
fn default_poll() -> HumanDuration {
    HumanDuration::secs(10)
}

/// Eight registers: joins the usual small holes in a meter's map.
fn default_max_gap() -> u16 {
    8
}

/// Raw values as they are.
fn default_scale() -> f64 {
    1.0
}

impl ModbusConfig {
    /// Problems as (key below `modbus`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut at = |key: String, message: &str| problems.push((key, message.to_owned()));
        if self.devices.is_empty() {
            at("devices".into(), "no device to poll");
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, b) in self.buses.iter().enumerate() {
            let key = |k: &str| format!("buses[{i}].{k}");
            if let Err(e) = device_id::check(&b.name) {
                at(key("name"), &format!("bus name {e}"));
            }
            if names.contains(&b.name.as_str()) {
                at(key("name"), &format!("bus `{}` is defined twice", b.name));
            }
            names.push(&b.name);
            if b.path.as_os_str().is_empty() {
                at(key("path"), "must name a serial device");
            }
            if !(50..=4_000_000).contains(&b.baud) {
                at(key("baud"), "must be between 50 and 4000000");
            }
            if !(5..=8).contains(&b.data_bits) {
                at(key("data_bits"), "must be 5, 6, 7 or 8");
            }
            if !(1..=2).contains(&b.stop_bits) {
                at(key("stop_bits"), "must be 1 or 2");
            }
            line_problems(
                &mut at,
                &key,
                b.response_timeout,
                b.retries,
                b.offline_after,
                b.backoff_max,
            );
        }
        for (i, t) in self.tcp.iter().enumerate() {
            let key = |k: &str| format!("tcp[{i}].{k}");
            if let Err(e) = device_id::check(&t.name) {
                at(key("name"), &format!("connection name {e}"));
            }
            if names.contains(&t.name.as_str()) {
                at(
                    key("name"),
                    &format!("`{}` already names a bus or connection", t.name),
                );
            }
            names.push(&t.name);
            if let Err(e) = crate::tcp::split_address(&t.address) {
                at(key("address"), &e);
            }
            line_problems(
                &mut at,
                &key,
                t.response_timeout,
                t.retries,
                t.offline_after,
                t.backoff_max,
            );
        }
        for (name, profile) in &self.profiles {
            let key = format!("profiles.{name}");
            if let Err(e) = device_id::check(name) {
                at(key.clone(), &format!("profile name {e}"));
            } else if name.contains('.') {
                at(key.clone(), "profile name contains `.`");
            }
            points_problems(&mut at, &key, &profile.points, &[]);
        }
        let mut ids: Vec<&str> = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let key = |k: &str| format!("devices[{i}].{k}");
            if let Err(e) = device_id::check(&d.id) {
                at(key("id"), &format!("device id {e}"));
            }
            if ids.contains(&d.id.as_str()) {
                at(key("id"), &format!("device `{}` is defined twice", d.id));
            }
            ids.push(&d.id);
            let serial = self.buses.iter().any(|b| b.name == d.bus);
            let tcp = self.tcp.iter().any(|t| t.name == d.bus);
            if !serial && !tcp {
                at(
                    key("bus"),
                    &format!("no [[modbus.buses]] or [[modbus.tcp]] is named `{}`", d.bus),
                );
            }
            if serial && !(1..=247).contains(&d.unit) {
                at(key("unit"), "must be 1 to 247 on a serial bus");
            }
            let others = self.devices[..i]
                .iter()
                .any(|o| o.bus == d.bus && o.unit == d.unit);
            if others {
                at(
                    key("unit"),
                    &format!("another device on `{}` has unit {}", d.bus, d.unit),
                );
            }
            if d.poll.get() < Duration::from_millis(1) {
                at(key("poll"), "must be at least 1 ms");
            }
            let inherited: &[PointConfig] = match &d.profile {
                Some(p) => match self.profiles.get(p) {
                    Some(profile) => &profile.points,
                    None => {
                        at(key("profile"), &format!("no profile `{p}`"));
                        &[]
                    }
                },
                None => &[],
            };
            if inherited.is_empty() && d.points.is_empty() {
                at(key("points"), "the device has no points");
            }
            points_problems(&mut at, &format!("devices[{i}]"), &d.points, inherited);
        }
        problems
    }
}

/// Problems of the settings buses and TCP connections share.
fn line_problems(
    at: &mut impl FnMut(String, &str),
    key: &impl Fn(&str) -> String,
    response_timeout: HumanDuration,
    retries: u8,
    offline_after: u32,
    backoff_max: HumanDuration,
) {
    if !(Duration::from_millis(1)..=Duration::from_secs(60)).contains(&response_timeout.get()) {
        at(key("response_timeout"), "must be between 1 ms and 60 s");
    }
    if retries > 10 {
        at(key("retries"), "must be at most 10");
    }
    if offline_after == 0 {
        at(key("offline_after"), "must be at least 1");
    }
    if backoff_max.get() < Duration::from_millis(1) {
        at(key("backoff_max"), "must be at least 1 ms");
    }
}

/// Problems of a list of points (under `key`), with `inherited` points
/// (a profile's) whose names they must not repeat.
fn points_problems(
    at: &mut impl FnMut(String, &str),
    key: &str,
    points: &[PointConfig],
    inherited: &[PointConfig],
) {
    for (j, p) in points.iter().enumerate() {
        let key = |k: &str| format!("{key}.points[{j}].{k}");
        if let Err(e) = device_id::check(&p.name) {
            at(key("name"), &format!("point name {e}"));
        }
        let repeated = points[..j]
            .iter()
            .chain(inherited)
            .any(|o| o.name == p.name);
        if repeated {
            at(key("name"), &format!("point `{}` is defined twice", p.name));
        }
        let kind = p.kind();
        if p.table.is_bits() && kind != PointType::Bool {
            at(
                key("type"),
                &format!("a {} holds bits: the type must be bool", p.table.as_str()),
            );
        }
        match (kind, p.length) {
            (PointType::String, None) => {
                at(key("length"), "a string needs its length in registers")
            }
            (PointType::String, Some(n)) if !(1..=MAX_READ_REGISTERS).contains(&n) => {
                at(key("length"), "must be 1 to 125 registers")
            }
            (PointType::String, Some(_)) | (_, None) => {}
            (_, Some(_)) => at(key("length"), "only a string has a length"),
        }
        if let Some(bit) = p.bit {
            if kind != PointType::Bool || p.table.is_bits() {
                at(key("bit"), "only a bool in a register has a bit");
            } else if bit > 15 {
                at(key("bit"), "must be 0 to 15");
            }
        }
        if u32::from(p.address) + u32::from(p.span()) > 65_536 {
            at(key("address"), "the point runs past address 65535");
        }
        if !p.scale.is_finite() || p.scale == 0.0 {
            at(key("scale"), "must be a finite number other than 0");
        }
        if !p.offset.is_finite() {
            at(key("offset"), "must be finite");
        }
        if !kind.is_numeric() && (p.scale != 1.0 || p.offset != 0.0) {
            at(key("scale"), "scale and offset apply to numbers only");
        }
        if !(p.deadband.is_finite() && p.deadband >= 0.0) {
            at(key("deadband"), "must be a number, 0 or more");
        }
        if p.writable && !p.table.is_writable() {
            at(
                key("writable"),
                &format!("a {} cannot be written", p.table.as_str()),
            );
        }
        if p.writable && p.bit.is_some() {
            at(key("writable"), "one bit of a register cannot be written");
        }
        if p.writable && p.span() > MAX_WRITE_REGISTERS {
            at(key("writable"), "a write carries at most 123 registers");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModbusConfig {
        toml::from_str(text).unwrap_or_else(|e| panic!("{e}"))
    }

    const GOOD: &str = r#"
        [[buses]]
        name = "rs485"
        path = "/dev/ttyUSB0"
        baud = 19200
        parity = "even"

        [[tcp]]
        name = "plc"
        address = "192.0.2.10:502"

        [profiles.em]
        points = [
            { name = "voltage", table = "input", address = 0, type = "f32", unit = "V" },
            { name = "model", table = "holding", address = 100, type = "string", length = 4 },
        ]

        [[devices]]
        id = "meter-1"
        bus = "rs485"
        unit = 1
        profile = "em"

        [[devices]]
        id = "pump"
        bus = "plc"
        unit = 0
        points = [{ name = "run", table = "coil", address = 3, writable = true }]
    "#;

    #[test]
    fn a_good_section_has_no_problems() {
        let config = parse(GOOD);
        assert_eq!(config.validate(), Vec::<(String, String)>::new());
        assert_eq!(config.buses[0].parity, Parity::Even);
        assert_eq!(config.devices[1].points[0].kind(), PointType::Bool);
        assert_eq!(config.profiles["em"].points[1].span(), 4);
    }

    #[test]
    fn every_problem_is_named_by_its_key() {
        let config = parse(
            r#"
            [[buses]]
            name = "a"
            path = "/dev/ttyS0"
            stop_bits = 3
            retries = 11

            [[devices]]
            id = "d/1"
            bus = "b"
            unit = 0
            points = [
                { name = "x", table = "coil", address = 0, type = "u16" },
                { name = "x", table = "holding", address = 65535, type = "u32" },
                { name = "s", table = "holding", address = 0, type = "string" },
                { name = "f", table = "input", address = 0, writable = true, scale = 0.0 },
                { name = "b", table = "holding", address = 0, type = "bool", bit = 16 },
            ]
            "#,
        );
        let keys: Vec<String> = config.validate().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "buses[0].stop_bits",
                "buses[0].retries",
                "devices[0].id",
                "devices[0].bus",
                "devices[0].points[0].type",
                "devices[0].points[1].name",
                "devices[0].points[1].address",
                "devices[0].points[2].length",
                "devices[0].points[3].scale",
                "devices[0].points[3].writable",
                "devices[0].points[4].bit",
            ]
        );
    }

    #[test]
    fn units_are_checked_per_bus_and_profiles_must_exist() {
        let config = parse(
            r#"
            [[buses]]
            name = "a"
            path = "/dev/ttyS0"
            [[devices]]
            id = "one"
            bus = "a"
            unit = 5
            points = [{ name = "x", table = "holding", address = 0 }]
            [[devices]]
            id = "two"
            bus = "a"
            unit = 5
            profile = "nope"
            "#,
        );
        let problems = config.validate();
        assert_eq!(
            problems,
            [
                (
                    "devices[1].unit".to_owned(),
                    "another device on `a` has unit 5".to_owned()
                ),
                (
                    "devices[1].profile".to_owned(),
                    "no profile `nope`".to_owned()
                ),
                (
                    "devices[1].points".to_owned(),
                    "the device has no points".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<ModbusConfig>(
            "[[buses]]\nname = \"a\"\npath = \"/dev/x\"\nspeed = 9600\n",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("speed"), "{err}");
    }
}
