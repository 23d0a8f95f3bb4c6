//! One advertisement through the whole adapter logic, without I/O: mapped
//! to its device, decoded, judged (duplicate, too soon), and turned into
//! events (presence on appearing, the reading); silences turned into
//! presence events. Every source (BlueZ, a replay file, a test's script)
//! goes through exactly this.

use crate::advertisement::Advertisement;
use crate::config::BleConfig;
use crate::decode::{self, Decoded};
use crate::devices::DeviceMap;
use crate::event;
use crate::rejection::BleRejection;
use crate::tracker::{Tracker, Verdict};
use sluice_event::Event;
use std::sync::Arc;

/// What became of one advertisement.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Not from a configured device.
    Unmapped,
    /// From a device, in no format it is decoded with (`auto` found none).
    Unknown,
    /// A new reading.
    Accept(Decoded),
    /// Dropped, and why.
    Drop(BleRejection),
}

/// An advertisement judged.
#[derive(Debug, PartialEq)]
pub struct Heard {
    /// The device it is from (`None`: unmapped).
    pub device: Option<Arc<str>>,
    /// Whether the device just appeared.
    pub appeared: bool,
    /// What became of it.
    pub outcome: Outcome,
}

/// The devices and their memory.
#[derive(Debug)]
pub struct Pipeline {
    map: DeviceMap,
    tracker: Tracker,
}

impl Pipeline {
    /// A pipeline for the devices of `config`.
    pub fn new(config: &BleConfig) -> Pipeline {
        Pipeline {
            map: DeviceMap::new(config),
            tracker: Tracker::new(),
        }
    }

    /// Maps, decodes and judges `ad` (heard at `ad.time_ms`).
    pub fn hear(&mut self, ad: &Advertisement) -> Heard {
        let Some(index) = self.map.resolve(ad) else {
            return Heard {
                device: None,
                appeared: false,
                outcome: Outcome::Unmapped,
            };
        };
        let profile = self.map.profile(index);
        let (tracked, appeared) = self
            .tracker
            .heard(ad.address, index, ad.time_ms, || profile.id_of(&ad.address));
        let device = Some(tracked.id.clone());
        let decoded = decode::decode(
            profile.format,
            ad,
            profile.bind_key.as_ref(),
            profile.raw_source.as_ref(),
        );
        let outcome = match decoded {
            Ok(None) => Outcome::Unknown,
            Err(e) => Outcome::Drop(e.into()),
            Ok(Some(d)) => match tracked.judge(d.packet_id, ad.time_ms, profile.min_interval_ms) {
                Verdict::Accept => Outcome::Accept(d),
                Verdict::Duplicate => Outcome::Drop(BleRejection::Duplicate),
                Verdict::TooSoon => Outcome::Drop(BleRejection::TooSoon),
            },
        };
        Heard {
            device,
            appeared,
            outcome,
        }
    }

    /// The events of `ad` (a presence event if its device appeared, then
    /// its reading) and the reason it was dropped, if it was.
    pub fn events(&mut self, ad: &Advertisement) -> (Vec<Event>, Option<BleRejection>) {
        let heard = self.hear(ad);
        let Some(device) = heard.device else {
            return (Vec::new(), None);
        };
        let mut events = Vec::new();
        if heard.appeared {
            events.push(event::presence(&device, true, ad.time_ms, Some(ad)));
        }
        match heard.outcome {
            Outcome::Accept(d) => {
                events.push(event::reading(&device, d, ad));
                (events, None)
            }
            Outcome::Drop(why) => (events, Some(why)),
            Outcome::Unmapped | Outcome::Unknown => (events, None),
        }
    }

    /// Presence events of the devices silent for longer than their timeout at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Event> {
        let map = &self.map;
        self.tracker
            .expire(now_ms, |p| map.profile(p).presence_timeout_ms)
            .iter()
            .map(|id| event::presence(id, false, now_ms, None))
            .collect()
    }

    /// Devices remembered.
    pub fn tracked(&self) -> usize {
        self.tracker.len()
    }

    /// The device map.
    pub fn devices(&self) -> &DeviceMap {
        &self.map
    }
}
