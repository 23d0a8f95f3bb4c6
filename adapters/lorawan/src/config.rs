//! `[lorawan]`: where the packet forwarders send, the region, the
//! network's identity, device profiles (which function decodes their
//! payloads) and the devices themselves, OTAA or ABP.

use crate::keys::{Eui64, Key, SecretText, parse_hex};
use crate::region::Region;
use serde::Deserialize;
use sluice_adapter_common::HumanDuration;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The `[lorawan]` section.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LorawanConfig {
    /// UDP address the packet forwarders send to.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// `eu868` or `us915` (sub-band 2).
    #[serde(default)]
    pub region: Region,
    /// NetID, 6 hex digits; its low 7 bits are the NwkID of every DevAddr given out.
    #[serde(default = "default_net_id")]
    pub net_id: String,
    /// How long copies of one frame from several gateways are gathered at
    /// most; the window closes early once every live concentrator reported it.
    #[serde(default = "default_dedup_window")]
    pub dedup_window: HumanDuration,
    /// RX1 delay of data downlinks (RECEIVE_DELAY1), 1 to 15 s; sent in JoinAccepts.
    #[serde(default = "default_rx1_delay")]
    pub rx1_delay: HumanDuration,
    /// Downlink power in dBm (default: the region's).
    pub tx_power: Option<u8>,
    /// Ask each device for its battery and margin (DevStatusReq) every this
    /// many uplinks; 0 never.
    #[serde(default)]
    pub dev_status_every: u32,
    /// Application downlinks waiting per device before more are refused.
    #[serde(default = "default_downlink_queue")]
    pub downlink_queue: usize,
    /// `[lorawan.profiles.<name>]`: settings shared by devices.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// `[[lorawan.devices]]`.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// The packet forwarder's usual port, on every address.
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 1700))
}

/// NetID 000000: the experimental/private network id, NwkID 0.
fn default_net_id() -> String {
    "000000".into()
}

/// 200 ms: copies from gateways on one LAN arrive within tens of ms, and
/// RX1 (1 s) leaves time to answer after the window.
fn default_dedup_window() -> HumanDuration {
    HumanDuration::millis(200)
}

/// 1 s: the LoRaWAN default RECEIVE_DELAY1.
fn default_rx1_delay() -> HumanDuration {
    HumanDuration::secs(1)
}

/// Eight downlinks per device: a Class A device takes one per uplink.
fn default_downlink_queue() -> usize {
    8
}

/// `[lorawan.profiles.<name>]`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// A `[[functions]]` name that decodes these devices' payloads (for
    /// example the standard `cayenne-lpp`): it is subscribed to their
    /// `lorawan/<dev_eui>/up` events.
    pub decoder: Option<String>,
}

/// How a device joins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Over the air: JoinEUI and AppKey.
    Otaa,
    /// By personalisation: DevAddr and session keys.
    Abp,
}

/// `[[lorawan.devices]]`: one device. Keys are 32 hex digits, EUIs 16,
/// DevAddr 8, most significant byte first.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// DevEUI: the device id in events and subjects.
    pub dev_eui: String,
    /// `otaa` or `abp`.
    pub activation: Activation,
    /// A profile name.
    pub profile: Option<String>,
    /// OTAA: JoinEUI (AppEUI).
    pub join_eui: Option<String>,
    /// OTAA: AppKey.
    pub app_key: Option<SecretText>,
    /// ABP: DevAddr.
    pub dev_addr: Option<String>,
    /// ABP: NwkSKey.
    pub nwk_skey: Option<SecretText>,
    /// ABP: AppSKey.
    pub app_skey: Option<SecretText>,
}

/// A device as the network server uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// DevEUI.
    pub dev_eui: Eui64,
    /// How it joins, with its keys.
    pub keys: DeviceKeys,
}

/// A device's root keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceKeys {
    /// OTAA.
    Otaa {
        /// JoinEUI.
        join_eui: Eui64,
        /// AppKey.
        app_key: Key,
    },
    /// ABP.
    Abp {
        /// DevAddr.
        dev_addr: u32,
        /// NwkSKey.
        nwk_skey: Key,
        /// AppSKey.
        app_skey: Key,
    },
}

impl LorawanConfig {
    /// Problems as (key below `lorawan`, message).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if let Err(e) = parse_hex::<3>(&self.net_id) {
            problems.push(("net_id".into(), e));
        }
        let rx1 = self.rx1_delay.get();
        if rx1 < Duration::from_secs(1) || rx1 > Duration::from_secs(15) || rx1.subsec_nanos() != 0
        {
            problems.push((
                "rx1_delay".into(),
                "must be whole seconds from 1 s to 15 s".into(),
            ));
        }
        if self.dedup_window.get() >= rx1 {
            problems.push((
                "dedup_window".into(),
                "must be shorter than rx1_delay".into(),
            ));
        }
        if self.downlink_queue == 0 {
            problems.push(("downlink_queue".into(), "must be at least 1".into()));
        }
        let mut euis: Vec<Eui64> = Vec::new();
        let mut addrs: Vec<u32> = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let key = |f: &str| format!("devices[{i}].{f}");
            match parse_hex::<8>(&d.dev_eui) {
                Ok(e) if euis.contains(&Eui64(e)) => {
                    problems.push((key("dev_eui"), "is listed twice".into()))
                }
                Ok(e) => euis.push(Eui64(e)),
                Err(e) => problems.push((key("dev_eui"), e)),
            }
            if let Some(p) = &d.profile
                && !self.profiles.contains_key(p)
            {
                problems.push((
                    key("profile"),
                    format!("no profile `{p}` in [lorawan.profiles]"),
                ));
            }
            let (needed, unwanted): (&[&str], &[&str]) = match d.activation {
                Activation::Otaa => (
                    &["join_eui", "app_key"],
                    &["dev_addr", "nwk_skey", "app_skey"],
                ),
                Activation::Abp => (
                    &["dev_addr", "nwk_skey", "app_skey"],
                    &["join_eui", "app_key"],
                ),
            };
            let given = |f: &str| match f {
                "join_eui" => d.join_eui.is_some(),
                "app_key" => d.app_key.is_some(),
                "dev_addr" => d.dev_addr.is_some(),
                "nwk_skey" => d.nwk_skey.is_some(),
                _ => d.app_skey.is_some(),
            };
            for f in needed.iter().filter(|f| !given(f)) {
                problems.push((
                    key(f),
                    format!("is required for {:?} activation", d.activation).to_lowercase(),
                ));
            }
            for f in unwanted.iter().filter(|f| given(f)) {
                problems.push((
                    key(f),
                    format!("does not apply to {:?} activation", d.activation).to_lowercase(),
                ));
            }
            if let Some(e) = &d.join_eui
                && let Err(m) = parse_hex::<8>(e)
            {
                problems.push((key("join_eui"), m));
            }
            if let Some(a) = &d.dev_addr {
                match parse_hex::<4>(a) {
                    Ok(b) if addrs.contains(&u32::from_be_bytes(b)) => {
                        problems.push((key("dev_addr"), "is used by another device".into()))
                    }
                    Ok(b) => addrs.push(u32::from_be_bytes(b)),
                    Err(m) => problems.push((key("dev_addr"), m)),
                }
            }
            for (f, k) in [
                ("app_key", &d.app_key),
                ("nwk_skey", &d.nwk_skey),
                ("app_skey", &d.app_skey),
            ] {
                if let Some(k) = k
                    && let Err(m) = k.key()
                {
                    problems.push((key(f), m));
                }
            }
        }
        problems
    }

    /// NetID as a number (000000 if invalid; `validate` reports it).
    pub fn net_id(&self) -> u32 {
        parse_hex::<3>(&self.net_id)
            .map(|b| u32::from_be_bytes([0, b[0], b[1], b[2]]))
            .unwrap_or(0)
    }

    /// The devices with their parsed keys (those that do not parse are left out; `validate` reports them).
    pub fn devices(&self) -> Vec<Device> {
        self.devices
            .iter()
            .filter_map(|d| {
                let dev_eui = Eui64(parse_hex::<8>(&d.dev_eui).ok()?);
                let keys = match d.activation {
                    Activation::Otaa => DeviceKeys::Otaa {
                        join_eui: Eui64(parse_hex::<8>(d.join_eui.as_deref()?).ok()?),
                        app_key: d.app_key.as_ref()?.key().ok()?,
                    },
                    Activation::Abp => DeviceKeys::Abp {
                        dev_addr: u32::from_be_bytes(parse_hex::<4>(d.dev_addr.as_deref()?).ok()?),
                        nwk_skey: d.nwk_skey.as_ref()?.key().ok()?,
                        app_skey: d.app_skey.as_ref()?.key().ok()?,
                    },
                };
                Some(Device { dev_eui, keys })
            })
            .collect()
    }

    /// For each decoder function, the subjects it must be subscribed to:
    /// `lorawan/<dev_eui>/up` of every device whose profile names it.
    pub fn decoder_subjects(&self) -> Vec<(String, String)> {
        self.devices
            .iter()
            .filter_map(|d| {
                let decoder = self.profiles.get(d.profile.as_deref()?)?.decoder.clone()?;
                let eui = parse_hex::<8>(&d.dev_eui).ok()?;
                Some((decoder, format!("lorawan/{}/up", Eui64(eui).hex())))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> LorawanConfig {
        toml::from_str(text).expect("parses")
    }

    #[test]
    fn keys_are_checked_for_length_and_hex_and_activation_fields() {
        let c = parse(
            r#"
            [[devices]]
            dev_eui = "0102030405060708"
            activation = "otaa"
            join_eui = "0000000000000000"
            app_key = "00112233445566778899aabbccddeeff00"
            [[devices]]
            dev_eui = "01020304050607zz"
            activation = "abp"
            dev_addr = "26011b01"
            nwk_skey = "00112233445566778899aabbccddeeff"
            "#,
        );
        let problems = c.validate();
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "devices[0].app_key",
                "devices[1].dev_eui",
                "devices[1].app_skey"
            ]
        );
        assert!(problems[0].1.contains("32 hex digits"));
        assert!(
            !format!("{c:?}").contains("00112233"),
            "keys never in Debug output"
        );
    }

    #[test]
    fn a_profile_decoder_subscribes_its_devices() {
        let c = parse(
            r#"
            profiles.sensor.decoder = "cayenne-lpp"
            [[devices]]
            dev_eui = "01-02-03-04-05-06-07-08"
            activation = "abp"
            profile = "sensor"
            dev_addr = "26011b01"
            nwk_skey = "00112233445566778899aabbccddeeff"
            app_skey = "00112233445566778899aabbccddeeff"
            "#,
        );
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!(
            c.decoder_subjects(),
            vec![(
                "cayenne-lpp".to_owned(),
                "lorawan/0102030405060708/up".to_owned()
            )]
        );
    }
}
