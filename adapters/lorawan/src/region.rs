//! Regional parameters (LoRaWAN Regional Parameters RP002-1.0.x): one
//! table per region with its data rates, receive windows, transmit power
//! and the channels a JoinAccept announces. `eu868` and `us915` (sub-band
//! 2: uplink channels 8-15 and 65, the common 8-channel gateway plan).

use serde::Deserialize;
use std::time::Duration;

/// A region the network server can run in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Europe, 863-870 MHz.
    #[default]
    Eu868,
    /// North America, 902-928 MHz, sub-band 2.
    Us915,
}

/// Spreading factor and bandwidth of a LoRa data rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modulation {
    /// Spreading factor, 7 to 12.
    pub sf: u8,
    /// Bandwidth in kHz.
    pub bw: u16,
}

impl Modulation {
    /// GWMP's `datr` string: `SF7BW125`.
    pub fn datr(self) -> String {
        format!("SF{}BW{}", self.sf, self.bw)
    }

    /// Parses `SF7BW125`.
    pub fn parse(datr: &str) -> Option<Modulation> {
        let rest = datr.strip_prefix("SF")?;
        let (sf, bw) = rest.split_once("BW")?;
        Some(Modulation {
            sf: sf.parse().ok()?,
            bw: bw.parse().ok()?,
        })
    }
}

/// Where and how a downlink goes out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    /// Centre frequency in Hz.
    pub freq_hz: u32,
    /// Data rate index of the region.
    pub dr: u8,
    /// Its modulation.
    pub modulation: Modulation,
}

/// EU868 data rates DR0..DR6, uplink and downlink alike.
const EU868_DR: [Modulation; 7] = [
    Modulation { sf: 12, bw: 125 },
    Modulation { sf: 11, bw: 125 },
    Modulation { sf: 10, bw: 125 },
    Modulation { sf: 9, bw: 125 },
    Modulation { sf: 8, bw: 125 },
    Modulation { sf: 7, bw: 125 },
    Modulation { sf: 7, bw: 250 },
];

/// US915 uplink data rates DR0..DR4.
const US915_UP_DR: [Modulation; 5] = [
    Modulation { sf: 10, bw: 125 },
    Modulation { sf: 9, bw: 125 },
    Modulation { sf: 8, bw: 125 },
    Modulation { sf: 7, bw: 125 },
    Modulation { sf: 8, bw: 500 },
];

/// US915 downlink data rates DR8..DR13.
const US915_DOWN_DR: [Modulation; 6] = [
    Modulation { sf: 12, bw: 500 },
    Modulation { sf: 11, bw: 500 },
    Modulation { sf: 10, bw: 500 },
    Modulation { sf: 9, bw: 500 },
    Modulation { sf: 8, bw: 500 },
    Modulation { sf: 7, bw: 500 },
];

/// The channels EU868 adds in a JoinAccept's CFList (Hz), after the three defaults.
pub const EU868_CFLIST: [u32; 5] = [
    867_100_000,
    867_300_000,
    867_500_000,
    867_700_000,
    867_900_000,
];

impl Region {
    /// JOIN_ACCEPT_DELAY1: RX1 of a JoinAccept opens this long after the uplink ends.
    pub fn join_accept_delay1(self) -> Duration {
        Duration::from_secs(5)
    }

    /// JOIN_ACCEPT_DELAY2: RX2 of a JoinAccept.
    pub fn join_accept_delay2(self) -> Duration {
        Duration::from_secs(6)
    }

    /// Transmit power of downlinks in dBm (EU868: 14 dBm, within the
    /// 869.525 MHz sub-band's limit; US915: 20 dBm).
    pub fn tx_power(self) -> u8 {
        match self {
            Region::Eu868 => 14,
            Region::Us915 => 20,
        }
    }

    /// The uplink data rate index of `m`, if the region has one.
    pub fn uplink_dr(self, m: Modulation) -> Option<u8> {
        let table: &[Modulation] = match self {
            Region::Eu868 => &EU868_DR,
            Region::Us915 => &US915_UP_DR,
        };
        table.iter().position(|x| *x == m).map(|i| i as u8)
    }

    /// The modulation of downlink data rate `dr`.
    pub fn downlink_modulation(self, dr: u8) -> Option<Modulation> {
        match self {
            Region::Eu868 => EU868_DR.get(dr as usize).copied(),
            Region::Us915 => dr
                .checked_sub(8)
                .and_then(|i| US915_DOWN_DR.get(i as usize).copied()),
        }
    }

    /// RX2: fixed frequency and data rate.
    pub fn rx2(self) -> Window {
        let (freq_hz, dr) = match self {
            Region::Eu868 => (869_525_000, 0),
            Region::Us915 => (923_300_000, 8),
        };
        Window {
            freq_hz,
            dr,
            modulation: self
                .downlink_modulation(dr)
                .unwrap_or(Modulation { sf: 12, bw: 125 }),
        }
    }

    /// RX1 for an uplink at `up_freq_hz` with data rate `up_dr`, with the
    /// RX1 data-rate offset `offset` (0 here: DLSettings says so).
    /// `None` if the uplink's channel or data rate is not in the region.
    pub fn rx1(self, up_freq_hz: u32, up_dr: u8, offset: u8) -> Option<Window> {
        let (freq_hz, dr) = match self {
            Region::Eu868 => {
                if !(863_000_000..=870_000_000).contains(&up_freq_hz) || up_dr > 6 {
                    return None;
                }
                (up_freq_hz, up_dr.saturating_sub(offset))
            }
            Region::Us915 => {
                let channel = us915_channel(up_freq_hz)?;
                let base = match up_dr {
                    0..=3 => 10 + up_dr,
                    4 => 13,
                    _ => return None,
                };
                let dr = base.saturating_sub(offset).max(8);
                (923_300_000 + 600_000 * (channel % 8), dr)
            }
        };
        Some(Window {
            freq_hz,
            dr,
            modulation: self.downlink_modulation(dr)?,
        })
    }

    /// The CFList a JoinAccept carries: EU868's five extra channels; none
    /// for US915 (LoRaWAN 1.0.2 has no CFList there; devices are
    /// provisioned for sub-band 2).
    pub fn cflist(self) -> Option<[u32; 5]> {
        match self {
            Region::Eu868 => Some(EU868_CFLIST),
            Region::Us915 => None,
        }
    }

    /// The RX2 data rate announced in a JoinAccept's DLSettings.
    pub fn dl_settings(self) -> u8 {
        self.rx2().dr & 0x0f
    }
}

/// The US915 uplink channel index of a frequency: 0-63 at 125 kHz from
/// 902.3 MHz every 200 kHz, 64-71 at 500 kHz from 903.0 MHz every 1.6 MHz.
fn us915_channel(freq_hz: u32) -> Option<u32> {
    let near = |f: u32, base: u32, step: u32, n: u32| -> Option<u32> {
        let off = f.checked_sub(base)?;
        let ch = (off + step / 2) / step;
        let exact = base + ch * step;
        (ch < n && exact.abs_diff(f) < 5_000).then_some(ch)
    };
    near(freq_hz, 902_300_000, 200_000, 64)
        .or_else(|| near(freq_hz, 903_000_000, 1_600_000, 8).map(|c| c + 64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eu868_rx1_is_the_uplink_channel_and_data_rate_rx2_is_869_525_sf12() {
        let w = Region::Eu868.rx1(868_100_000, 5, 0).expect("in region");
        assert_eq!(
            (w.freq_hz, w.dr, w.modulation.datr()),
            (868_100_000, 5, "SF7BW125".into())
        );
        let rx2 = Region::Eu868.rx2();
        assert_eq!(
            (rx2.freq_hz, rx2.modulation.datr()),
            (869_525_000, "SF12BW125".into())
        );
        assert_eq!(
            Region::Eu868.uplink_dr(Modulation::parse("SF9BW125").expect("datr")),
            Some(3)
        );
        assert!(Region::Eu868.rx1(915_000_000, 0, 0).is_none());
    }

    #[test]
    fn us915_sub_band_2_maps_uplink_channels_to_the_500_khz_downlink_channels() {
        // Channel 8 (903.9 MHz) answers on downlink channel 0 (923.3 MHz), 15 on 7.
        let w = Region::Us915.rx1(903_900_000, 0, 0).expect("channel 8");
        assert_eq!(
            (w.freq_hz, w.dr, w.modulation.datr()),
            (923_300_000, 10, "SF10BW500".into())
        );
        let w = Region::Us915.rx1(905_300_000, 3, 0).expect("channel 15");
        assert_eq!((w.freq_hz, w.dr), (927_500_000, 13));
        // Channel 65 (904.6 MHz, SF8BW500) answers on 923.9 MHz at DR13.
        let w = Region::Us915.rx1(904_600_000, 4, 0).expect("channel 65");
        assert_eq!((w.freq_hz, w.dr), (923_900_000, 13));
        assert_eq!(Region::Us915.rx2().modulation.datr(), "SF12BW500");
        assert_eq!(
            Region::Us915.uplink_dr(Modulation::parse("SF8BW500").expect("datr")),
            Some(4)
        );
    }
}
