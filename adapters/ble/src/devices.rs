//! The configured devices, resolved for the hot path: who an advertisement
//! is from (by address first, then by name pattern), and how it is decoded.

use crate::advertisement::Advertisement;
use crate::config::{BleConfig, DeviceConfig, parse_key};
use crate::decode::{Format, RawSource};
use crate::mac::Mac;
use std::collections::HashMap;
use std::sync::Arc;

/// One `[[ble.devices]]` entry, ready to use.
#[derive(Clone, Debug)]
pub struct Profile {
    /// The device id, or its template with `{mac}` (name patterns).
    pub id: Arc<str>,
    /// The decoder.
    pub format: Format,
    /// The BTHome bind key.
    pub bind_key: Option<[u8; 16]>,
    /// Readings closer together are dropped, in ms.
    pub min_interval_ms: i64,
    /// Silence after which the device is gone, in ms.
    pub presence_timeout_ms: i64,
    /// What a `raw` device hands its function.
    pub raw_source: Option<RawSource>,
    /// The name pattern, for devices mapped by name.
    pattern: Option<glob::Pattern>,
}

impl Profile {
    /// The device id of `mac` under this profile.
    pub fn id_of(&self, mac: &Mac) -> Arc<str> {
        if self.id.contains("{mac}") {
            Arc::from(self.id.replace("{mac}", &mac.compact()))
        } else {
            self.id.clone()
        }
    }
}

/// Every configured device, by address and by name pattern.
#[derive(Clone, Debug, Default)]
pub struct DeviceMap {
    profiles: Vec<Profile>,
    by_mac: HashMap<Mac, usize>,
    by_name: Vec<usize>,
}

impl DeviceMap {
    /// Resolves a validated `[ble]` section (entries that do not validate are left out).
    pub fn new(config: &BleConfig) -> DeviceMap {
        let mut map = DeviceMap::default();
        for d in &config.devices {
            let Some(profile) = profile(d, config) else {
                continue;
            };
            let index = map.profiles.len();
            match d.mac.as_deref().map(str::parse::<Mac>) {
                Some(Ok(mac)) => {
                    map.by_mac.insert(mac, index);
                }
                Some(Err(_)) => continue,
                None => map.by_name.push(index),
            }
            map.profiles.push(profile);
        }
        map
    }

    /// The profile `ad` belongs to: its address's, else the first whose name pattern matches.
    pub fn resolve(&self, ad: &Advertisement) -> Option<u16> {
        if let Some(&i) = self.by_mac.get(&ad.address) {
            return Some(i as u16);
        }
        let name = ad.local_name.as_deref()?;
        self.by_name
            .iter()
            .find(|&&i| {
                self.profiles[i]
                    .pattern
                    .as_ref()
                    .is_some_and(|p| p.matches(name))
            })
            .map(|&i| i as u16)
    }

    /// The profile at `index`.
    pub fn profile(&self, index: u16) -> &Profile {
        &self.profiles[usize::from(index)]
    }

    /// The profiles, in config order.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The address and id of each device mapped by address.
    pub fn by_address(&self) -> impl Iterator<Item = (Mac, &Profile)> {
        self.by_mac.iter().map(|(m, &i)| (*m, &self.profiles[i]))
    }
}

fn profile(d: &DeviceConfig, config: &BleConfig) -> Option<Profile> {
    let bind_key = match &d.bind_key {
        Some(k) => Some(parse_key(k).ok()?),
        None => None,
    };
    let pattern = match &d.name {
        Some(p) => Some(glob::Pattern::new(p).ok()?),
        None => None,
    };
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Some(Profile {
        id: Arc::from(d.id.as_str()),
        format: d.format,
        bind_key,
        min_interval_ms: ms(d.min_interval.unwrap_or(config.min_interval).get()),
        presence_timeout_ms: ms(d.presence_timeout.unwrap_or(config.presence_timeout).get()),
        raw_source: d.raw_source(),
        pattern,
    })
}
