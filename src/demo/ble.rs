//! The simulated Bluetooth site: a script of advertisements, written to a
//! replay file that the real BLE adapter reads (`source = "replay"`,
//! looped), through its real decoders, de-duplication and device map. A
//! Ruuvi tag (RAWv2) advertises each measurement twice a second; a BTHome
//! sensor encrypts its readings with its bind key (AES-CCM, as the
//! device's firmware does) and repeats each packet three times.

use sluice_ble::advertisement::{Advertisement, uuid16};
use sluice_ble::decode::bthome;
use sluice_ble::mac::Mac;
use sluice_ble::replay;
use std::path::{Path, PathBuf};

/// The Ruuvi tag (`ble/ruuvi-greenhouse` in `demo.toml`).
pub const RUUVI: Mac = Mac([0xc7, 0x3b, 0x0a, 0x11, 0x22, 0x33]);
/// The encrypted BTHome sensor (`ble/bthome-porch`).
pub const BTHOME: Mac = Mac([0x54, 0x48, 0xe6, 0x8f, 0x80, 0xa5]);
/// The BTHome sensor's bind key (also in `demo.toml`; demo key only).
const BIND_KEY: [u8; 16] = [
    0x23, 0x1d, 0x39, 0xc1, 0xd7, 0xcc, 0x1a, 0xb1, 0xae, 0xe2, 0x24, 0xcd, 0x09, 0x6d, 0xb9, 0x32,
];
/// The script's file name in the demo's data folder.
pub const SCRIPT_FILE: &str = "ble-advertisements.jsonl";
/// Seconds of advertisements in the script; the adapter loops it.
const SCRIPT_SECS: u32 = 120;

/// Writes the script to `dir/ble-advertisements.jsonl`; returns its path.
pub fn write_script(dir: &Path) -> std::io::Result<PathBuf> {
    let path = dir.join(SCRIPT_FILE);
    let mut text = String::new();
    let mut counter = 0u32;
    for tick in 0..SCRIPT_SECS * 2 {
        let t = f64::from(tick) * 0.5;
        // One Ruuvi measurement per second, advertised twice.
        let sequence = (tick / 2) as u16;
        text.push_str(&replay::to_line(t, &ruuvi(sequence)));
        text.push('\n');
        // A BTHome packet every two seconds, three copies 100 ms apart.
        if tick % 4 == 0 {
            let packet = (tick / 4) as u8;
            for copy in 0..3 {
                counter += 1;
                text.push_str(&replay::to_line(
                    t + 0.1 * f64::from(copy) + 0.05,
                    &bthome(packet, counter),
                ));
                text.push('\n');
            }
        }
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

/// RAWv2: temperature swinging around 22 °C with the sequence, the rest steady.
fn ruuvi(sequence: u16) -> Advertisement {
    let temperature = (22.0 + 3.0 * (f64::from(sequence) / 10.0).sin()) / 0.005;
    let mut d = vec![0x05];
    d.extend_from_slice(&(temperature as i16).to_be_bytes());
    d.extend_from_slice(&((55.0 / 0.0025) as u16).to_be_bytes()); // 55 %RH
    d.extend_from_slice(&(101_325u32 - 50_000).to_be_bytes()[2..]); // 1013.25 hPa
    d.extend_from_slice(&[0x00, 0x04, 0xff, 0xfc, 0x04, 0x0c]); // acceleration
    d.extend_from_slice(&[0xac, 0x36]); // 2.977 V, +4 dBm
    d.push(0x42); // movement counter
    d.extend_from_slice(&sequence.to_be_bytes());
    d.extend_from_slice(&RUUVI.0);
    Advertisement {
        address: RUUVI,
        rssi: Some(-67),
        local_name: Some("Ruuvi 2233".into()),
        manufacturer_data: vec![(0x0499, d)],
        ..Advertisement::default()
    }
}

/// BTHome v2, encrypted: packet id, battery, temperature, humidity.
fn bthome(packet: u8, counter: u32) -> Advertisement {
    let temperature = (1800.0 + 150.0 * (f64::from(packet) / 5.0).cos()) as i16;
    let mut objects = vec![0x00, packet, 0x01, 93, 0x02];
    objects.extend_from_slice(&temperature.to_le_bytes());
    objects.push(0x03);
    objects.extend_from_slice(&6120u16.to_le_bytes());
    let info = 0x41; // version 2, encrypted
    let frame = [
        vec![info],
        bthome::encrypt(&objects, &BTHOME, info, counter, &BIND_KEY),
    ]
    .concat();
    Advertisement {
        address: BTHOME,
        rssi: Some(-78),
        service_data: vec![(uuid16(bthome::SERVICE), frame)],
        ..Advertisement::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_decodes_through_the_real_decoders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_script(dir.path()).expect("script");
        let text = std::fs::read_to_string(path).expect("read");
        let mut ruuvi = 0;
        let mut bthome = 0;
        for line in text.lines() {
            let ad = replay::parse_line(line).expect("line").advertisement;
            let key = (ad.address == BTHOME).then_some(&BIND_KEY);
            let d = sluice_ble::decode::decode(sluice_ble::decode::Format::Auto, &ad, key, None)
                .expect("decodes")
                .expect("a known format");
            assert!(!d.readings.is_empty());
            if ad.address == RUUVI {
                ruuvi += 1
            } else {
                bthome += 1
            }
        }
        assert_eq!((ruuvi, bthome), (240, 180));
    }
}
