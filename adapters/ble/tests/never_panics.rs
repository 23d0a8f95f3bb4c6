//! Any bytes into any decoder: an error or readings, never a panic.

use proptest::prelude::*;
use sluice_ble::advertisement::{Advertisement, uuid16};
use sluice_ble::decode::{self, Format, beacon, bthome, ruuvi, xiaomi};
use sluice_ble::mac::Mac;
use sluice_ble::replay;

const KEY: [u8; 16] = [7; 16];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64), mac in any::<[u8; 6]>()) {
        let mac = Mac(mac);
        let _ = bthome::decode(&data, &mac, None);
        let _ = bthome::decode(&data, &mac, Some(&KEY));
        let _ = ruuvi::decode(&data);
        let _ = xiaomi::decode_any(&data);
        let _ = xiaomi::atc1441(&data);
        let _ = xiaomi::pvvx(&data);
        let _ = beacon::ibeacon(&data);
        let _ = beacon::eddystone(&data);
    }

    #[test]
    fn bthome_shaped_frames_never_panic(objects in proptest::collection::vec(any::<u8>(), 0..40), info in prop::sample::select(vec![0x40u8, 0x41, 0x44, 0x45])) {
        let frame = [vec![info], objects].concat();
        let _ = bthome::decode(&frame, &Mac::default(), Some(&KEY));
    }

    #[test]
    fn any_advertisement_in_any_format_never_panics(
        company in any::<u16>(),
        data in proptest::collection::vec(any::<u8>(), 0..40),
        service in prop::sample::select(vec![0xfcd2u16, 0x181a, 0xfeaa, 0x1234]),
    ) {
        let ad = Advertisement {
            manufacturer_data: vec![(company, data.clone()), (0x0499, data.clone()), (0x004c, data.clone())],
            service_data: vec![(uuid16(service), data)],
            ..Advertisement::default()
        };
        for f in [Format::Auto, Format::Bthome, Format::Ruuvi, Format::Atc1441, Format::Pvvx, Format::Ibeacon, Format::Eddystone, Format::Raw] {
            let _ = decode::decode(f, &ad, Some(&KEY), None);
        }
    }

    #[test]
    fn any_replay_line_never_panics(line in ".{0,200}") {
        let _ = replay::parse_line(&line);
    }
}
